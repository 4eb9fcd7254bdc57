"""A real vLLM (CPU build, tiny model) served across two ssh hosts with the mp backend, from a control host.

The slow tier's tensor-parallel test across two hosts (it had a twin over plain TCP endpoints; those are
proven by every other two-host test): `vllmgen apply --all` on the control host
reaches each node's dockerd over its sshd (`docker_host: ssh://root@ADDR`); node 1 runs
`vllm serve --headless`; verify's chat completion goes straight from the control host to the head.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .support import VLLM_READY_S, SshCluster, apply_args, cpu_vllm_tp_spec, ok_stderr, seed_kept_caches, write_spec

pytestmark = pytest.mark.slow


def test_real_vllm_mp_across_two_ssh_hosts(ssh_hosts: SshCluster, tmp_path: Path, python_prefix: str,
                                           vllm: tuple[str, str]) -> None:
    head, worker = ssh_hosts.servers
    nodes = [
        {"name": "node-0", "role": "head", "address": head.address, "gpus": 1, "docker_host": head.endpoint},
        {"name": "node-1", "role": "worker", "address": worker.address, "gpus": 1, "docker_host": worker.endpoint},
    ]
    spec = write_spec(tmp_path, cpu_vllm_tp_spec("vg-sshmp", vllm, python_prefix, tmp_path, nodes, ipc_host=False,
                                      backend="mp", nic="vg0"))
    seed_kept_caches("vg-sshmp", [server.home for server in ssh_hosts.servers], vllm)
    try:
        log = ok_stderr(ssh_hosts.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", str(VLLM_READY_S))))
        assert "node-0: cluster: ok (2 node(s), /health 200)" in log
        assert "verify: /v1/models lists tiny" in log and "verify: chat completion answered" in log
        cmd = ssh_hosts.daemons[1].client().containers.get("vg-sshmp-node-1").attrs["Config"]["Cmd"]
        assert cmd[-3:] == ["--node-rank", "1", "--headless"]
        again = ok_stderr(ssh_hosts.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", str(VLLM_READY_S))))
        assert "nothing changed" in again
        status = ssh_hosts.vllmgen("status", str(spec), "--all")
        assert status.returncode == 0 and "models: tiny" in status.stdout, status.stdout + status.stderr
    finally:
        ok_stderr(ssh_hosts.vllmgen("down", str(spec), "--all"))
    assert all(d.client().containers.list(all=True) == [] for d in ssh_hosts.daemons)
