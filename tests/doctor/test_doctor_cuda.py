"""Driver vs the image's CUDA, with the H100's real driver version."""

from __future__ import annotations

from doctor_fixtures import H100, text

from vllmgen.doctor import cuda, gpu

DRIVER = gpu.parse_gpu_query(text(H100 / "nvidia_smi_query.txt"))[0].driver_version


def test_recorded_driver():
    assert DRIVER == "580.159.04"


def test_h100_driver_runs_cuda_12_and_13_0():
    for image in ("12.4", "12.8.1", "12.9", "13.0"):
        assert cuda.check_driver_for_cuda(DRIVER, image).status == "ok", image


def test_newer_minor_of_the_same_major_is_minor_version_compat():
    r = cuda.check_driver_for_cuda(DRIVER, "13.2")
    assert r.status == "warn"
    assert "minor version compatibility" in r.detail and "595.45.04" in r.fix


def test_older_branch_too_old_for_a_new_major_mentions_cuda_compat():
    r = cuda.check_driver_for_cuda("535.104.05", "13.0")
    assert r.status == "fail"
    assert "too old for CUDA 13.0 (needs >= 580.65.06)" in r.detail
    assert "cuda-compat-13-0" in r.fix


def test_below_the_floor_of_the_major():
    assert cuda.check_driver_for_cuda("470.82.01", "12.8").status == "fail"
    assert cuda.check_driver_for_cuda("550.54.15", "12.8").status == "warn"


def test_unknown_rows_and_bad_input():
    assert cuda.check_driver_for_cuda(DRIVER, "14.0").status == "warn"
    assert cuda.check_driver_for_cuda("abc", "12.8").status == "warn"


def test_table_is_sorted_and_floors_are_in_it():
    versions = [cuda.version_tuple(v) for v in cuda.TOOLKIT_DRIVER.values()]
    assert versions == sorted(versions)
    for major, floor in cuda.MINOR_COMPAT_FLOOR.items():
        assert cuda.version_tuple(floor) <= cuda.version_tuple(cuda.TOOLKIT_DRIVER[(major, 0)]) or major == 11
