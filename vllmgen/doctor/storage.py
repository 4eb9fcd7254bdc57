"""Storage checks: /dev/shm size, free disk, and a model directory that vLLM can load."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vllmgen.doctor.checks import CheckResult, fail, ok, warn

GIB = 1024**3
INDEX = "model.safetensors.index.json"

# Docker's size units (--shm-size 10.24g): binary multiples, suffix optional and case-insensitive.
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([bkmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def parse_size(text: str) -> int:
    """'10.24g' -> 10995116277 bytes, as docker reads --shm-size."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def gib(n: int | float) -> str:
    return f"{n / GIB:.1f} GiB"


@dataclass(frozen=True)
class DfRow:
    filesystem: str
    size: int
    used: int
    available: int
    mount: str


def parse_df(text: str) -> list[DfRow]:
    """`df -B1 PATH...` -> rows (the header is skipped)."""
    rows = []
    for line in text.splitlines()[1:]:
        cols = line.split(maxsplit=5)
        if len(cols) < 6 or not cols[1].isdigit():
            continue
        rows.append(DfRow(cols[0], int(cols[1]), int(cols[2]), int(cols[3]), cols[5]))
    return rows


def check_shm(size_bytes: int | None, required_bytes: int) -> CheckResult:
    """NCCL and vLLM's workers pass tensors through /dev/shm; too small fails at the first all-reduce."""
    name = "storage.shm"
    if size_bytes is None:
        return fail(name, "/dev/shm is missing", "mount a tmpfs on /dev/shm")
    if size_bytes >= required_bytes:
        return ok(name, f"/dev/shm {gib(size_bytes)} >= {gib(required_bytes)}")
    return fail(
        name,
        f"/dev/shm {gib(size_bytes)} < {gib(required_bytes)} required",
        "run the container with --ipc=host or a larger --shm-size, or remount: "
        f"sudo mount -o remount,size={required_bytes // GIB + 1}G /dev/shm",
    )


def check_free_disk(path: str, free_bytes: int | None, required_bytes: int, what: str = "") -> CheckResult:
    name = "storage.free_disk"
    label = f"{path} ({what})" if what else path
    if free_bytes is None:
        return fail(name, f"{label} does not exist", f"create {path} or fix the path in the spec")
    if free_bytes >= required_bytes:
        return ok(name, f"{label}: {gib(free_bytes)} free >= {gib(required_bytes)}")
    return fail(
        name,
        f"{label}: {gib(free_bytes)} free < {gib(required_bytes)} needed",
        f"free space under {path} (docker system prune removes unused images) or use a larger disk",
    )


def check_model_path(
    path: str, entries: Sequence[str] | None, index: Mapping[str, object] | None = None, *, weights: bool = True
) -> CheckResult:
    """The directory exists and holds config.json plus weights; a safetensors index names no missing shard.
    ``weights=False``: vLLM reads no weights (``--load-format dummy``), so config.json is enough."""
    name = "storage.model_path"
    if entries is None:
        return fail(name, f"{path} does not exist on this node", "download the model there or fix the host path")
    files = set(entries)
    if "config.json" not in files:
        return fail(name, f"{path} has no config.json", "point the spec at the model's top directory")
    shards = sorted(f for f in files if f.endswith(".safetensors"))
    if INDEX in files:
        weight_map = (index or {}).get("weight_map") if index is not None else None
        if isinstance(weight_map, Mapping):
            missing = sorted(set(map(str, weight_map.values())) - files)
            if missing:
                return fail(
                    name,
                    f"{path}: {len(missing)} shard(s) named in {INDEX} are missing, e.g. {missing[0]}",
                    "finish the download (huggingface-cli download resumes)",
                )
            return ok(name, f"{path}: config.json, {INDEX}, {len(set(weight_map.values()))} shard(s)")
        return ok(name, f"{path}: config.json, {INDEX}, {len(shards)} shard(s)")
    if shards:
        return ok(name, f"{path}: config.json, {', '.join(shards)}")
    if any(f.endswith(".bin") for f in files):
        return warn(name, f"{path}: config.json and .bin weights only", "prefer safetensors weights (faster, safer)")
    if not weights:
        return ok(name, f"{path}: config.json (no weights, none read: --load-format dummy)")
    return fail(name, f"{path}: config.json but no weights", "download the weights (*.safetensors)")
