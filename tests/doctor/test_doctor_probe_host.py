"""The probes (live on this machine, recorded from the H100) and the host runner that uses them."""

from __future__ import annotations

import json
import shutil

import pytest
from doctor_fixtures import DOCKER, H100, live_tables, text

from vllmgen.doctor import host
from vllmgen.doctor.__main__ import main
from vllmgen.doctor.probe import LiveProbe, RecordedProbe, run_command

# Run A on the H100, as the record script passed it.
H100_EXPECT = host.HostExpectation(
    gpus=1,
    gpu_model="H100",
    gpu_memory_utilization=0.9,
    image_cuda="12.9",
    address="192.0.2.2",
    data_nic="eth0",
    subnet="192.0.2.0/24",
    ports=(8000, 6379, 29500),
    shm_bytes=int(10.24 * 1024**3),
    disk=(("/", 20 * 1024**3, ""),),
)


def test_replay_of_the_h100_matches_what_doctor_printed_there():
    results = host.check_host(RecordedProbe(H100), H100_EXPECT)
    replayed = [(r.status.upper(), r.name, r.detail) for r in results if not r.name.startswith("docker")]
    command, live_rows = live_tables()[0]
    assert "--image-cuda 12.9" in command
    assert replayed == [row for row in live_rows if not row[1].startswith("docker")]


def test_recorded_probe_reads_the_h100_folder():
    probe = RecordedProbe(H100)
    assert probe.nvidia_smi_query().returncode == 0
    assert probe.disk_space("/dev/shm").total == 137438953472
    assert probe.disk_space("/var/lib/docker").free == 68701421568  # on /
    assert probe.infiniband_devices() is None
    assert probe.list_dir("/data") is None


def test_recorded_probe_docker_side(tmp_path):
    shutil.copy(DOCKER / "docker_info_plain.json", tmp_path / "docker_info.json")
    for suffix in ("rc", "stderr"):
        shutil.copy(DOCKER / f"gpus_all.{suffix}", tmp_path / f"gpus_all.{suffix}")
    expect = host.HostExpectation(registry_mirrors=("https://docker.m.daocloud.io",))
    results = {r.name: r for r in host.docker_checks(RecordedProbe(tmp_path), expect)}
    assert results["docker.daemon"].status == "ok"
    assert results["docker.nvidia_runtime"].status == "warn"
    assert results["docker.registry_mirrors"].status == "fail"
    assert results["docker.gpus_all"].fix.startswith("install the NVIDIA Container Toolkit")


def test_recorded_probe_permission_denied(tmp_path):
    shutil.copy(DOCKER / "permission_denied.stderr", tmp_path / "docker_error.txt")
    results = {r.name: r for r in host.docker_checks(RecordedProbe(tmp_path), host.HostExpectation())}
    assert results["docker.socket_permission"].fix == "sudo usermod -aG docker $USER; newgrp docker"
    assert results["docker.daemon"].status == "skip"
    assert results["docker.gpus_all"].status == "skip"


def test_model_path_through_the_probe(tmp_path):
    (tmp_path / "listing.json").write_text(json.dumps({"/models/q": ["config.json", "model.safetensors.index.json"]}))
    (tmp_path / "files.json").write_text(json.dumps({"/models/q/model.safetensors.index.json": "index.json"}))
    (tmp_path / "index.json").write_text(json.dumps({"weight_map": {"a": "model-00001-of-00001.safetensors"}}))
    [r] = host.storage_checks(RecordedProbe(tmp_path), host.HostExpectation(model_path="/models/q"))
    assert r.status == "fail" and "model-00001-of-00001.safetensors" in r.detail


def test_live_probe_on_this_machine():
    probe = LiveProbe()
    addrs = probe.interfaces()
    assert "127.0.0.1/8" in addrs["lo"]
    assert probe.disk_space("/").total > 0
    assert probe.disk_space("/no/such/path") is None
    assert probe.list_dir("/no/such/path") is None
    assert run_command(["vllmgen-no-such-program"]).returncode == 127


def test_live_probe_docker_without_a_daemon(tmp_path, monkeypatch):
    pytest.importorskip("docker")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    info, error = LiveProbe(docker_timeout=2).docker_info()
    assert info is None and "FileNotFoundError(2" in error
    [daemon, permission, *_] = host.docker_checks(LiveProbe(docker_timeout=2), host.HostExpectation())
    assert daemon.status == "fail" and permission.status == "skip"


def test_main_replays_and_exits_nonzero_on_failure(capsys):
    code = main(["--replay", str(H100), "--gpus", "8", "--no-docker"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("GPU 0: NVIDIA H100 80GB HBM3, 81559 MiB")
    assert "FAIL    gpu.count" in out


def test_main_json(capsys):
    code = main(["--replay", str(H100), "--gpus", "1", "--no-docker", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["ok"] is True and doc["cuda_version"] == "13.0"
    assert doc["gpus"][0]["uuid"] == "GPU-0acb4bda-f161-872d-0694-efac5b86b38a"


def test_main_fit_on_the_recorded_h100(capsys):
    config = str(H100.parent / "models" / "qwen3-next-80b-a3b" / "config.json")
    main(["--replay", str(H100), "--no-docker", "--config", config, "--max-model-len", "16248"])
    out = capsys.readouterr().out
    assert "does not fit: needs 150.8 GiB, has 71.7 GiB" in out
    assert text(H100 / "doctor_live.txt").count("does not fit: needs 150.8 GiB, has 71.7 GiB") == 1
