"""GPU parsing and checks on the real H100's nvidia-smi output."""

from __future__ import annotations

from dataclasses import replace

from doctor_fixtures import H100, text

from vllmgen.doctor import gpu


def h100() -> list[gpu.Gpu]:
    return gpu.parse_gpu_query(text(H100 / "nvidia_smi_query.txt"))


def test_parse_query_reads_every_field_of_the_h100():
    [g] = h100()
    assert g == gpu.Gpu(
        index=0,
        name="NVIDIA H100 80GB HBM3",
        uuid="GPU-0acb4bda-f161-872d-0694-efac5b86b38a",
        memory_total_mib=81559,
        memory_used_mib=0,
        driver_version="580.159.04",
        compute_cap="9.0",
        pci_bus_id="00000000:00:06.0",
    )
    assert round(g.memory_total_gib, 2) == 79.65


def test_parse_query_with_other_fields():
    fields = ("index", "name", "memory.total", "driver_version")
    [g] = gpu.parse_gpu_query(text(H100 / "nvidia_smi_query4.txt"), fields)
    assert (g.name, g.memory_total_mib, g.driver_version) == ("NVIDIA H100 80GB HBM3", 81559, "580.159.04")


def test_parse_query_rejects_a_field_count_mismatch():
    try:
        gpu.parse_gpu_query(text(H100 / "nvidia_smi_query4.txt"))
    except ValueError as e:
        assert "expected 8 fields" in str(e)
    else:
        raise AssertionError("a 4-field row read as 8 fields")


def test_query_argv_matches_the_recorded_command():
    fields = "index,name,uuid,memory.total,memory.used,driver_version,compute_cap,pci.bus_id"
    assert gpu.QUERY_ARGV[1] == f"--query-gpu={fields}"


def test_cuda_version_from_plain_and_q_output():
    assert gpu.parse_cuda_version(text(H100 / "nvidia_smi.txt")) == "13.0"
    assert gpu.parse_cuda_version(text(H100 / "nvidia_smi_q_head40.txt")) == "13.0"
    assert gpu.parse_cuda_version("no header") is None


def test_nvidia_smi_ran():
    rc = int(text(H100 / "nvidia_smi_query.rc"))
    assert gpu.check_nvidia_smi(rc, text(H100 / "nvidia_smi_query.stderr")).status == "ok"


def test_nvidia_smi_missing_names_the_driver_fix():
    # What the live probe returns on a host without the driver (this CI machine, for one).
    r = gpu.check_nvidia_smi(127, "nvidia-smi: command not found")
    assert r.status == "fail" and "not found" in r.detail and "NVIDIA driver" in r.fix


def test_count():
    assert gpu.check_gpu_count(h100(), 1).status == "ok"
    short = gpu.check_gpu_count(h100(), 8)
    assert short.status == "fail" and short.detail == "1 GPU(s) visible, the spec expects 8"
    assert gpu.check_gpu_count(h100() * 2, 1).status == "warn"


def test_model():
    assert gpu.check_gpu_model(h100(), "H100").status == "ok"
    assert gpu.check_gpu_model(h100(), "h100").status == "ok"
    r = gpu.check_gpu_model(h100(), "A100")
    assert r.status == "fail" and "NVIDIA H100 80GB HBM3" in r.detail
    assert gpu.check_gpu_model([], "H100").status == "skip"


def test_uniform():
    r = gpu.check_gpu_uniform(h100())
    assert r.status == "ok" and r.detail == "1 x NVIDIA H100 80GB HBM3, 81559 MiB, driver 580.159.04"
    [g] = h100()
    mixed = [g, replace(g, index=1, name="NVIDIA A100-SXM4-80GB", memory_total_mib=81920)]
    assert gpu.check_gpu_uniform(mixed).status == "warn"


def test_free_memory():
    assert gpu.check_gpu_free_memory(h100(), 0.9).status == "ok"
    [g] = h100()
    busy = replace(g, memory_used_mib=20000)  # another process holds 20 GB
    r = gpu.check_gpu_free_memory([busy], 0.9)
    assert r.status == "fail" and "20000 of 81559 MiB used" in r.detail


def test_nodes_consistent():
    [g] = h100()
    assert gpu.check_nodes_consistent({"a": [g], "b": [g]}).status == "ok"
    r = gpu.check_nodes_consistent({"a": [g], "b": [replace(g, driver_version="570.124.06")]})
    assert r.status == "fail" and "570.124.06" in r.detail and "580.159.04" in r.detail
    assert gpu.check_nodes_consistent({"a": [g]}).status == "skip"


def test_inventory_line():
    out = gpu.format_inventory(h100(), "13.0")
    assert out.splitlines() == [
        "GPU 0: NVIDIA H100 80GB HBM3, 81559 MiB (0 used), driver 580.159.04, compute capability 9.0, "
        "bus 00000000:00:06.0",
        "driver supports CUDA up to 13.0",
    ]
