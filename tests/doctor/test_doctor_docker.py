"""Docker checks on outputs recorded from a real dockerd 20.10 with the 28.2 CLI and the Python SDK."""

from __future__ import annotations

import json

import pytest
from doctor_fixtures import DOCKER, SEED_GPU_ERROR, SEED_PERMISSION_DENIED, text

from vllmgen.doctor import docker


def info(name: str) -> dict:
    return json.loads(text(DOCKER / name))


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("permission_denied.stderr", "permission_denied"),
        ("sdk_permission_denied.txt", "permission_denied"),
        ("no_daemon.stderr", "no_daemon"),
        ("sdk_no_daemon.txt", "no_daemon"),
        ("stale_socket.stderr", "no_daemon"),
        ("sdk_stale_socket.txt", "no_daemon"),
        ("gpus_all.stderr", "no_gpu_driver"),
        ("gpus_all_with_runtime.stderr", "no_gpu_driver"),
        ("sdk_gpus_all.txt", "no_gpu_driver"),
    ],
)
def test_classify_recorded_errors(source, kind):
    assert docker.classify_error(text(DOCKER / source)) == kind


def test_classify_the_seeds_own_texts():
    assert docker.classify_error(SEED_PERMISSION_DENIED) == "permission_denied"
    assert docker.classify_error(SEED_GPU_ERROR) == "no_gpu_driver"
    assert docker.classify_error("something else") == "other"


def test_permission_denied_gives_the_docker_group_fix():
    r = docker.check_socket_permission(text(DOCKER / "permission_denied.stderr"))
    assert r.status == "fail"
    assert r.fix == "sudo usermod -aG docker $USER; newgrp docker"
    assert r.detail.startswith("permission denied while trying to connect to the Docker daemon socket at unix://")
    seed = docker.check_socket_permission(SEED_PERMISSION_DENIED)
    assert seed.status == "fail" and seed.fix == r.fix


def test_permission_denied_through_the_sdk_skips_its_warning_lines():
    r = docker.check_socket_permission(text(DOCKER / "sdk_permission_denied.txt"))
    assert r.status == "fail"
    assert "PermissionError(13, 'Permission denied')" in r.detail
    assert docker.check_daemon(text(DOCKER / "sdk_permission_denied.txt"), None).status == "skip"


def test_daemon_reachable():
    r = docker.check_daemon(None, info("docker_info_plain.json"))
    assert r.status == "ok" and r.detail == "reachable, Docker 20.10.24+dfsg1"
    assert docker.check_socket_permission(None).status == "ok"


@pytest.mark.parametrize(
    "source", ["no_daemon.stderr", "sdk_no_daemon.txt", "stale_socket.stderr", "sdk_stale_socket.txt"]
)
def test_no_daemon(source):
    error = text(DOCKER / source)
    r = docker.check_daemon(error, None)
    assert r.status == "fail" and r.detail.startswith("no Docker daemon answers") and "systemctl" in r.fix
    assert docker.check_socket_permission(error).status == "skip"


def test_sdk_not_installed():
    r = docker.check_daemon("docker SDK not installed (pip install docker)", None)
    assert r.status == "fail" and "pip install docker" in r.fix


def test_nvidia_runtime():
    missing = docker.check_nvidia_runtime(info("docker_info_plain.json"))
    assert missing.status == "warn"
    assert missing.detail == (
        "no nvidia runtime: runtimes io.containerd.runc.v2, io.containerd.runtime.v1.linux, runc (default runc)"
    )
    assert "nvidia-container-toolkit" in missing.fix
    present = docker.check_nvidia_runtime(info("docker_info_nvidia_mirrors.json"))
    assert present.status == "ok" and "nvidia" in present.detail
    assert docker.check_nvidia_runtime(info("sdk_info_plain.json")).status == "warn"
    assert docker.check_nvidia_runtime(None).status == "skip"


@pytest.mark.parametrize("stem", ["gpus_all", "gpus_all_with_runtime"])
def test_gpus_all_smoke_maps_to_the_container_toolkit(stem):
    rc = int(text(DOCKER / f"{stem}.rc"))
    r = docker.check_gpu_smoke(rc, text(DOCKER / f"{stem}.stderr"))
    assert rc == 125 and r.status == "fail"
    assert r.detail == SEED_GPU_ERROR
    assert r.fix == docker.TOOLKIT_FIX


def test_gpus_all_smoke_through_the_sdk():
    r = docker.check_gpu_smoke(125, text(DOCKER / "sdk_gpus_all.txt"))
    assert r.status == "fail" and r.fix == docker.TOOLKIT_FIX
    assert 'could not select device driver "" with capabilities: [[gpu]]' in r.detail


def test_gpus_all_smoke_ok_and_not_run():
    assert docker.check_gpu_smoke(0, "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0acb)\n").status == "ok"
    assert docker.check_gpu_smoke(None, "no image to run").status == "skip"


def test_registry_mirrors():
    want = ["https://docker.m.daocloud.io"]  # the seed's mirror, without dockerd's trailing slash
    r = docker.check_registry_mirrors(info("docker_info_nvidia_mirrors.json"), want)
    assert r.status == "ok" and r.detail == "configured: https://docker.m.daocloud.io/"
    missing = docker.check_registry_mirrors(info("docker_info_plain.json"), want)
    assert missing.status == "fail" and "registry-mirrors" in missing.fix
    assert missing.detail == "missing https://docker.m.daocloud.io; configured: none"
    assert docker.check_registry_mirrors(info("sdk_info_plain.json"), []).status == "ok"
    assert docker.check_registry_mirrors(None, want).status == "skip"
