"""Multi-host Ray: two namespace hosts, each with its own dockerd, joined over a veth pair.

`vllmgen apply --all` runs on host 0 (the control machine is the head's host) and reaches each
node's engine through its docker_host. Real: Ray 2.60 from PyPI (bind-mounted venv) in head and
worker containers started with the generated `ray start` flags, joining across the namespace
network, with the spec's GPU count declared through `--num-gpus`. vLLM on CPU refuses the Ray
executor, so the serve step execs a stand-in `vllm serve` in the head, exactly as serve.sh does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from infra import cache

from .support import Cluster, apply_args, ray_spec, wait_for, write_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_venv(infra_ready: None) -> str:
    return str(cache.ray_venv())


def _ok(result) -> str:  # noqa: ANN001
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stderr


def test_apply_all_forms_the_ray_cluster_and_serves(two_hosts: Cluster, tmp_path: Path, python_prefix: str,
                                                    ray_venv: str, fake_vllm: str) -> None:
    spec = write_spec(tmp_path, ray_spec(two_hosts, python_prefix, ray_venv, fake_vllm, tmp_path))
    log = _ok(two_hosts.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", "120")))
    assert "2 Ray node(s) with 8 GPU(s): ok after" in log
    assert "head: cluster: ok (2 node(s), 8 GPU(s))" in log
    assert "head: serve: started" in log and "verify: chat completion answered" in log

    head = two_hosts.daemons[0].client().containers.get("vg-ray-head")
    worker = two_hosts.daemons[1].client().containers.get("vg-ray-worker-1")
    assert worker.attrs["Config"]["Cmd"] == [
        "start", "--block", "--address=10.77.0.1:6379", "--node-ip-address=10.77.0.2", "--num-gpus=4",
        "--disable-usage-stats"]
    assert "VLLM_HOST_IP=10.77.0.2" in worker.attrs["Config"]["Env"]
    assert "GLOO_SOCKET_IFNAME=vg0" in worker.attrs["Config"]["Env"]
    # the serve command ran inside the head, its output in the head's log (as serve.sh does it)
    logs = head.logs().decode()
    assert ('fake vllm argv: ["serve", "/models/tiny", "--config", "/etc/vllmgen/serve-config.yaml", '
            '"--host", "10.77.0.1"]') in logs  # where the server listens is each node's (vllmgen.plan.exposure)
    # Ray's autoscaler view lags the cluster vLLM already sees (ray.nodes() lists both nodes while
    # `ray status` still says "No cluster status"): wait for it, with a deadline
    ray_status = wait_for(lambda: head.exec_run(["ray", "status"]).output.decode(), lambda out: "0.0/8.0 GPU" in out,
                          timeout=60, every=1)
    assert "0.0/8.0 GPU" in ray_status, ray_status

    status = json.loads(two_hosts.vllmgen("status", str(spec), "--all", "--output", "json").stdout)
    assert status["cluster"]["nodes"] == ["head", "worker-1"] and status["cluster"]["gpus"] == 8
    assert status["endpoint"]["health"] == 200

    again = _ok(two_hosts.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", "120")))
    assert "nothing changed" in again and "serve: unchanged (vllm serve is running in the head)" in again

    down = two_hosts.vllmgen("down", str(spec), "--all")
    _ok(down)
    removed = down.stderr
    assert removed.index("worker-1: down: removed vg-ray-worker-1") < removed.index("head: down: removed vg-ray-head")
    for daemon in two_hosts.daemons:
        assert daemon.client().containers.list(all=True) == []


def test_a_worker_with_a_wrong_address_is_named(two_hosts: Cluster, tmp_path: Path, python_prefix: str,
                                                ray_venv: str, fake_vllm: str) -> None:
    spec = write_spec(tmp_path, ray_spec(two_hosts, python_prefix, ray_venv, fake_vllm, tmp_path, name="vg-lost",
                                         worker_address="10.77.0.9"))
    result = two_hosts.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", "45"))
    assert result.returncode == 4, result.stderr
    error = result.stderr[result.stderr.index("error: "):]
    assert error.startswith("error: node worker-1, step cluster: ")
    assert "worker-1 (10.77.0.9)" in error
    _ok(two_hosts.vllmgen("down", str(spec), "--all"))
