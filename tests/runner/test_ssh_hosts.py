"""apply/status/down from a control host to two node hosts over real OpenSSH (`docker_host: ssh://root@ADDR`).

The test bed (conftest ``ssh_hosts``): three namespaces on one bridge; the control host has no
Docker and reaches each node's own dockerd only through that node's sshd (key-only root login,
host keys pinned in a known_hosts the suite wrote, ssh options from a client config). Real: sshd,
the ssh client, `docker system dial-stdio` on each node, Ray 2.60 forming one cluster across
the two nodes with the spec's GPU count. The tests run in file order on one deployment.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from pathlib import Path

import pytest
from infra import cache

from vllmgen.runner.ssh import CONNECT_TIMEOUT

from .support import SshCluster, apply_args, ok_stderr, ray_spec, wait_for, write_spec

pytestmark = pytest.mark.slow
NAME = "vg-sshray"


def _containers(cluster: SshCluster, only: int | None = None) -> list[dict[str, tuple[str, str]]]:
    """Per node (or node ``only``): container name -> (id, status)."""
    daemons = cluster.daemons if only is None else [cluster.daemons[only]]
    return [{c.name: (c.id, c.status) for c in d.client().containers.list(all=True)} for d in daemons]


@pytest.fixture(scope="module")
def spec(ssh_hosts: SshCluster, tmp_path_factory: pytest.TempPathFactory, python_prefix: str, fake_vllm: str) -> Path:
    folder = tmp_path_factory.mktemp("sshray")
    spec = ray_spec(ssh_hosts, python_prefix, str(cache.ray_venv()), fake_vllm, folder, name=NAME)
    for node, server in zip(spec["nodes"], ssh_hosts.servers, strict=True):
        node["address"], node["docker_host"] = server.address, server.endpoint
    return write_spec(folder, spec)


def _apply(cluster: SshCluster, spec: Path, *extra: str):  # noqa: ANN202
    # --yes: these tests are about the transport; consent before replacing is tests/runner/test_plan_real.py's
    return cluster.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", "120", "--yes", *extra))


def test_ray_cluster_across_two_ssh_hosts(ssh_hosts: SshCluster, spec: Path) -> None:
    ssh_hosts.daemons[1].client().containers.run(  # a bystander: apply leaves it alone
        "local/vllmgen-rootfs:bookworm-v2", ["sleep", "3600"], name="not-ours", detach=True, network_mode="host")
    log = ok_stderr(_apply(ssh_hosts, spec))
    head_ip, worker_ip = ssh_hosts.node_addresses
    assert "head: preflight: ok (Docker 20.10" in log and "worker-1: preflight: ok" in log
    assert "2 Ray node(s) with 8 GPU(s): ok after" in log and "head: cluster: ok (2 node(s), 8 GPU(s))" in log
    assert "verify: chat completion answered" in log
    head = ssh_hosts.daemons[0].client().containers.get(f"{NAME}-head")
    ray_status = wait_for(lambda: head.exec_run(["ray", "status"]).output.decode(), lambda out: "0.0/8.0 GPU" in out,
                          timeout=60, every=1)  # Ray's autoscaler view lags the cluster (FACTS.md)
    assert "0.0/8.0 GPU" in ray_status, ray_status
    worker = ssh_hosts.daemons[1].client().containers.get(f"{NAME}-worker-1")
    assert f"--address={head_ip}:6379" in worker.attrs["Config"]["Cmd"]
    assert f"--node-ip-address={worker_ip}" in worker.attrs["Config"]["Cmd"]
    # the head's host got the deployment folder in its own home ($HOME over ssh), and mounts it from there
    folder = ssh_hosts.servers[0].home / ".vllmgen" / "deployments" / NAME
    assert (folder / "serve-config.yaml").is_file()
    assert any(m["Source"] == str(folder / "serve-config.yaml") for m in head.attrs["Mounts"])
    for server, container in zip(ssh_hosts.servers, (head, worker), strict=True):
        for mount in container.attrs["Mounts"]:
            assert "/.vllmgen/" not in mount["Source"] or mount["Source"].startswith(str(server.home))

    logins = [_logins(server) for server in ssh_hosts.servers]
    sockets = set(Path(tempfile.gettempdir()).glob("vllmgen-ssh-*"))
    again = ok_stderr(_apply(ssh_hosts, spec))
    assert "nothing changed" in again
    # one ssh connection per host for the whole run: every command and Docker API stream went over it
    assert [_logins(server) - before for server, before in zip(ssh_hosts.servers, logins, strict=True)] == [1, 1]
    assert set(Path(tempfile.gettempdir()).glob("vllmgen-ssh-*")) <= sockets  # its masters' folder is gone


def _logins(server) -> int:  # noqa: ANN001 - infra.sshd.Sshd
    """Logins that host's sshd accepted so far (one per ssh connection; sessions over one are not logins)."""
    return (server.dir / "sshd.log").read_text(errors="replace").count("Accepted publickey for ")


def test_status_over_ssh_table_and_json(ssh_hosts: SshCluster, spec: Path) -> None:
    report = json.loads(_ok_out := ssh_hosts.vllmgen("status", str(spec), "--all", "--output", "json").stdout)
    assert report["healthy"] is True and report["problems"] == []
    assert [n["endpoint"] for n in report["nodes"]] == [s.endpoint for s in ssh_hosts.servers]
    assert report["cluster"]["nodes"] == ["head", "worker-1"] and report["cluster"]["gpus"] == 8
    assert report["endpoint"]["health"] == 200
    table = ssh_hosts.vllmgen("status", str(spec), "--all")
    assert table.returncode == 0, table.stdout + table.stderr
    assert f"{NAME}-worker-1  running  current" in table.stdout
    assert "ray cluster: 2 of 2 nodes (head, worker-1), 8 of 8 GPUs" in table.stdout and "healthy" in table.stdout
    del _ok_out


def test_a_killed_worker_is_named_by_status_and_restored_by_apply(ssh_hosts: SshCluster, spec: Path) -> None:
    worker = ssh_hosts.daemons[1].client().containers.get(f"{NAME}-worker-1")
    worker.kill()
    worker.wait(timeout=60)  # `docker kill` returns when the signal is sent, not when the container has exited
    result = ssh_hosts.vllmgen("status", str(spec), "--all")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"problem: node worker-1: {NAME}-worker-1 is exited (exit code 137)" in result.stdout
    assert "unhealthy" in result.stdout

    log = ok_stderr(_apply(ssh_hosts, spec))
    assert f"worker-1: workers: replaced ({NAME}-worker-1: it is exited (exit code 137))" in log
    assert "head: cluster: ok (2 node(s), 8 GPU(s))" in log
    assert ssh_hosts.vllmgen("status", str(spec), "--all").returncode == 0


def test_unknown_host_key_is_refused_with_how_to_add_it(ssh_hosts: SshCluster, spec: Path, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.touch()
    before = _containers(ssh_hosts)
    result = ssh_hosts.vllmgen(*apply_args(spec, "--all", "--no-gpus"), env=ssh_hosts.bed.env(empty))
    assert result.returncode == 4, result.stderr
    error = result.stderr[result.stderr.index("error: "):]
    assert "step preflight" in error and "Host key verification failed" in error
    assert "never accepts a host key silently" in error and "ssh-keyscan" in error
    assert empty.read_text() == ""  # nothing was accepted
    assert _containers(ssh_hosts) == before


def test_a_stopped_sshd_fails_preflight_fast_and_starts_nothing(ssh_hosts: SshCluster, spec: Path) -> None:
    ok_stderr(ssh_hosts.vllmgen("down", str(spec), "--all"))
    before = _containers(ssh_hosts)
    server = ssh_hosts.servers[1]
    server.stop()
    try:
        started = time.monotonic()
        result = _apply(ssh_hosts, spec)
        took = time.monotonic() - started
    finally:
        server.start()
    assert result.returncode == 4, result.stderr
    error = result.stderr[result.stderr.index("error: "):]
    assert error.startswith(f"error: node worker-1, step preflight: {server.endpoint}: cannot reach sshd")
    assert "Connection refused" in error
    assert took < CONNECT_TIMEOUT + 10, took
    assert "== daemon-json" not in result.stderr and _containers(ssh_hosts) == before


def test_head_dockerd_dying_mid_apply_is_a_step_error_and_removes_nothing(ssh_hosts: SshCluster,
                                                                          spec: Path) -> None:
    ok_stderr(_apply(ssh_hosts, spec))
    before = _containers(ssh_hosts)
    head = ssh_hosts.daemons[0]
    # a changed spec: this apply would replace both containers, if it got that far
    changed = spec.parent / "changed"
    data = json.loads(json.dumps(__import__("yaml").safe_load(spec.read_text())))
    data["runtime"]["env"]["VG_CHANGED"] = "1"
    changed_spec = write_spec(changed, data)
    process = ssh_hosts.popen(*apply_args(changed_spec, "--all", "--no-gpus", "--timeout", "60", "--yes"))
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if "head: preflight: ok" in line:
            os.kill(int((head.dir / "dockerd.pid").read_text()), signal.SIGKILL)  # the engine dies at once
            break
    rest = process.communicate(timeout=300)[1]
    log = "".join(lines) + rest
    try:
        assert process.returncode == 4, log
        error = log[log.index("error: "):]
        assert error.startswith("error: node head, step "), error
        assert "step preflight" not in error and ssh_hosts.servers[0].endpoint in error, error
        assert "the Docker engine there does not answer" in error and "connection refused" in error
        assert "removing" not in log  # nothing was taken down before the failure
        assert _containers(ssh_hosts, 1)[0] == before[1]  # the worker host: as before, its container running
    finally:
        head.ctl("stop")
        head.ctl("start")
    # the head's container survived (stopped with its engine), and apply brings it all back
    assert f"{NAME}-head" in _containers(ssh_hosts)[0]
    log = ok_stderr(_apply(ssh_hosts, changed_spec))
    assert "head: cluster: ok (2 node(s), 8 GPU(s))" in log


def test_down_removes_everything_apply_made_and_nothing_else(ssh_hosts: SshCluster, spec: Path) -> None:
    result = ssh_hosts.vllmgen("down", str(spec), "--all")
    assert ok_stderr(result) is not None and result.stdout.strip() == (
        f"removed 2 container(s): {NAME}-worker-1, {NAME}-head")
    assert _containers(ssh_hosts)[0] == {}
    assert list(_containers(ssh_hosts)[1]) == ["not-ours"]
    ssh_hosts.daemons[1].client().containers.get("not-ours").remove(force=True)
    gone = ssh_hosts.vllmgen("status", str(spec), "--all")
    assert gone.returncode == 1 and f"problem: node head: no container {NAME}-head" in gone.stdout
