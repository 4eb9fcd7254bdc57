"""Which Linux driver a CUDA release needs, and the check of a host's driver against an image's CUDA.

The numbers come from NVIDIA's CUDA Toolkit release notes ("CUDA Toolkit and Corresponding Driver
Versions", Linux x86_64 column, GA release of each minor) and the CUDA Compatibility guide (minor
version compatibility floors: 11.x >= 450.80.02, 12.x >= 525.60.13, 13.x >= 580). Written out here
by hand; re-check both pages when a new CUDA minor appears.
"""

from __future__ import annotations

import re

from vllmgen.doctor.checks import CheckResult, fail, ok, warn

# CUDA major.minor -> the driver its toolkit shipped with (full feature set).
TOOLKIT_DRIVER: dict[tuple[int, int], str] = {
    (11, 0): "450.51.05",
    (11, 1): "455.23",
    (11, 2): "460.27.03",
    (11, 3): "465.19.01",
    (11, 4): "470.42.01",
    (11, 5): "495.29.05",
    (11, 6): "510.39.01",
    (11, 7): "515.43.04",
    (11, 8): "520.61.05",
    (12, 0): "525.60.13",
    (12, 1): "530.30.02",
    (12, 2): "535.54.03",
    (12, 3): "545.23.06",
    (12, 4): "550.54.14",
    (12, 5): "555.42.02",
    (12, 6): "560.28.03",
    (12, 8): "570.26",
    (12, 9): "575.51.03",
    (13, 0): "580.65.06",
    (13, 1): "590.44.01",
    (13, 2): "595.45.04",
}

# Any runtime of a major runs, with a limited feature set, on a driver at or above this floor.
MINOR_COMPAT_FLOOR: dict[int, str] = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}

_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?\s*$")


def version_tuple(text: str) -> tuple[int, ...]:
    """'580.159.04' -> (580, 159, 4); '12.8' -> (12, 8). Raises ValueError on anything else."""
    parts = text.strip().split(".")
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(p) for p in parts)


def cuda_major_minor(cuda: str) -> tuple[int, int]:
    """'12.8.1' or '12.8' -> (12, 8)."""
    m = _VERSION.match(cuda)
    if not m:
        raise ValueError(f"not a CUDA version: {cuda!r}")
    return int(m.group(1)), int(m.group(2))


def compat_package(cuda: tuple[int, int]) -> str:
    return f"cuda-compat-{cuda[0]}-{cuda[1]}"


def check_driver_for_cuda(driver_version: str, image_cuda: str, name: str = "gpu.driver_vs_cuda") -> CheckResult:
    """Is the host driver new enough for the CUDA runtime inside the image?"""
    try:
        driver = version_tuple(driver_version)
        cuda = cuda_major_minor(image_cuda)
    except ValueError as e:
        return warn(name, f"cannot compare: {e}")
    label = f"CUDA {cuda[0]}.{cuda[1]}"
    full = TOOLKIT_DRIVER.get(cuda)
    floor = MINOR_COMPAT_FLOOR.get(cuda[0])
    upgrade = f"upgrade the NVIDIA driver to >= {full or floor}"
    forward = (
        f"or, on data-center GPUs, install the forward-compatibility package {compat_package(cuda)} "
        f"in the image (libraries in /usr/local/cuda/compat on LD_LIBRARY_PATH)"
    )
    if full is None and floor is None:
        return warn(name, f"driver {driver_version}; no table row for {label}: check NVIDIA's release notes")
    if full is not None and driver >= version_tuple(full):
        return ok(name, f"driver {driver_version} >= {full} required by {label}")
    if floor is not None and driver >= version_tuple(floor):
        need = f", {full} for all features" if full else ""
        return warn(
            name,
            f"driver {driver_version} runs {label} only through minor version compatibility (>= {floor}{need})",
            f"{upgrade} for the full feature set (PTX newer than the driver will not JIT)",
        )
    return fail(
        name,
        f"driver {driver_version} is too old for {label} (needs >= {full or floor})",
        f"{upgrade}, {forward}",
    )
