"""vLLM's own data parallelism across two namespace hosts (CPU vLLM, tiny model), internal load balancing.

Node 0 runs `--data-parallel-size 2 --data-parallel-size-local 1` with the DP address and RPC port;
node 1 the same with `--data-parallel-start-rank 1 --headless`. `apply` starts both and verifies a
chat completion at node 0's single API endpoint.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from infra import cache

from .support import VLLM_READY_S, Cluster, apply_args, cpu_vllm_tp_spec, ok_stderr, write_spec

pytestmark = pytest.mark.slow


def test_real_vllm_dp2_across_two_hosts(two_hosts: Cluster, tmp_path: Path, python_prefix: str) -> None:
    venv = cache.vllm_venv()
    vllm = (str(venv), str(cache.tiny_model(venv / "bin" / "python")))
    head, worker = two_hosts.hosts.addresses
    nodes = [
        {"name": "dp-0", "role": "head", "address": head, "gpus": 1, "docker_host": two_hosts.daemons[0].endpoint},
        {"name": "dp-1", "role": "worker", "address": worker, "gpus": 1,
         "docker_host": two_hosts.daemons[1].endpoint},
    ]
    # private /dev/shm per container (ipc_host false), as separate machines have
    spec = cpu_vllm_tp_spec("vg-dp", vllm, python_prefix, tmp_path, nodes, ipc_host=False, backend="mp", nic="vg0")
    # one API server process (vLLM's default for internal LB is one per DP rank, each importing vLLM and torch
    # again): the head's own flag, which the headless node must not get (vLLM refuses it there)
    spec["serve"].update(tensor_parallel_size=1, data_parallel_size=2,
                         data_parallel={"rpc_port": 13345, "api_server_count": 1})
    spec = write_spec(tmp_path, spec)
    try:
        log = ok_stderr(two_hosts.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", str(VLLM_READY_S))))
        assert "verify: chat completion answered" in log
        client = two_hosts.daemons[1].client()
        worker_cmd = client.containers.get("vg-dp-dp-1").attrs["Config"]["Cmd"]
        assert worker_cmd[-5:] == ["--data-parallel-size-local", "1", "--data-parallel-start-rank", "1", "--headless"]
        head_cmd = two_hosts.daemons[0].client().containers.get("vg-dp-dp-0").attrs["Config"]["Cmd"]
        assert head_cmd[head_cmd.index("--api-server-count") + 1] == "1" and "--api-server-count" not in worker_cmd
        head_logs = two_hosts.daemons[0].client().containers.get("vg-dp-dp-0").logs().decode(errors="replace")
        worker_logs = client.containers.get("vg-dp-dp-1").logs().decode(errors="replace")
        # rank 0's engine beside the API server, rank 1's on the other host, joined through the DP coordinator
        assert "EngineCore_DP0" in head_logs and "EngineCore_DP1" not in head_logs
        assert "EngineCore_DP1" in worker_logs and "ApiServer" not in worker_logs
        print("head log tail:\n" + "\n".join(head_logs.splitlines()[-15:]))
        print("worker log tail:\n" + "\n".join(worker_logs.splitlines()[-15:]))
    finally:
        ok_stderr(two_hosts.vllmgen("down", str(spec), "--all"))



def test_real_vllm_dp4_hybrid_lb_behind_the_router(two_hosts: Cluster, tmp_path: Path, python_prefix: str) -> None:
    """Hybrid load balancing: two DP ranks and one API server per host; the router fronts both servers.
    (One rank per host is external LB to vLLM, which it refuses for a dense model: the rules say so.)"""
    from .test_router_e2e import ROUTER_BASE, _chats, _router_base, _served, router_venv_path

    venv = cache.vllm_venv()
    vllm = (str(venv), str(cache.tiny_model(venv / "bin" / "python")))
    _router_base(two_hosts.daemons[0].client())
    router_venv = router_venv_path()
    head, worker = two_hosts.hosts.addresses
    nodes = [
        {"name": "hy-0", "role": "head", "address": head, "gpus": 2, "docker_host": two_hosts.daemons[0].endpoint},
        {"name": "hy-1", "role": "worker", "address": worker, "gpus": 2,
         "docker_host": two_hosts.daemons[1].endpoint},
    ]
    spec = cpu_vllm_tp_spec("vg-hy", vllm, python_prefix, tmp_path, nodes, ipc_host=False, backend="mp", nic="vg0")
    # one API server process per node (vLLM's default for hybrid LB is one per local rank)
    spec["serve"].update(tensor_parallel_size=1, data_parallel_size=4,
                         data_parallel={"lb": "hybrid", "api_server_count": 1})
    spec["router"] = {"port": 18080, "health_check_interval_s": 2,
                      "volumes": [{"host": python_prefix, "container": python_prefix},
                                  {"host": router_venv, "container": router_venv}],
                      "extra_env": {"PATH": f"{router_venv}/bin:/usr/local/bin:/usr/bin:/bin"}}
    spec = write_spec(tmp_path, spec)
    clients = [d.client() for d in two_hosts.daemons]
    try:
        log = ok_stderr(two_hosts.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", str(VLLM_READY_S),
                                                "--router-base-image", ROUTER_BASE)))
        assert "hy-1: servers: ok" in log and "hy-0: router: created" in log
        cmd = clients[1].containers.get("vg-hy-hy-1").attrs["Config"]["Cmd"]
        # the rank flags, then where this server listens (its own address: the router is on the other host)
        assert cmd[-8:] == ["--data-parallel-size-local", "2", "--data-parallel-start-rank", "2",
                            "--api-server-count", "1", "--host", two_hosts.hosts.addresses[1]]
        before = [_served(c, f"vg-hy-hy-{i}") for i, c in enumerate(clients)]
        assert _chats(two_hosts, f"http://{head}:18080", 4) == [200] * 4
        after = [_served(c, f"vg-hy-hy-{i}") for i, c in enumerate(clients)]
        print(f"completions per node's API server: {[a - b for a, b in zip(after, before, strict=True)]}")
        assert all(a > b for a, b in zip(after, before, strict=True))
    finally:
        ok_stderr(two_hosts.vllmgen("down", str(spec), "--all"))
