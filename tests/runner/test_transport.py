"""Where the runner acts and how it gets there, without a daemon: scope, endpoints, ssh argv, errors."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from vllmgen.cli.commands import cli, main
from vllmgen.spec.endpoints import EndpointError, parse
from vllmgen.runner import ssh, status, targets
from vllmgen.runner.executor import EngineError
from vllmgen.runner.host import HostError, SshHost
from vllmgen.targets.docker.sdk import DockerSdkExecutor

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[ssh.Connections]:
    """Each test its own run's ssh connections (as each vllmgen process has), closed after it."""
    fresh = ssh.Connections()
    monkeypatch.setattr(ssh, "CONNECTIONS", fresh)
    yield fresh
    fresh.close()


# A stand-in `ssh` for PATH: runs the remote command line here, and plays OpenSSH's connection sharing
# as far as vllmgen sees it: `-N -f` with ControlMaster=yes makes the ControlPath socket (a file here) and
# returns, `-O exit` removes it; it logs each call's kind to $SSH_LOG (master, exit, session, or direct when
# a session does not go through a master's socket).
FAKE_SSH = r"""#!/bin/sh
path=""; kind=direct
while [ "$1" != "--" ]; do
  case "$1" in
    ControlPath=*) path="${1#ControlPath=}" ;;
    ControlMaster=yes) kind=master ;;
    exit) kind=exit ;;
  esac
  shift
done
shift 2
if [ "$kind" = direct ] && [ -n "$path" ] && [ -e "$path" ]; then kind=session; fi
echo "$kind" >> "$SSH_LOG"
case "$kind" in
  master) [ -n "$SSH_MASTER_SAYS" ] && { echo "$SSH_MASTER_SAYS" >&2; exit 255; }
          : > "$path"; exit 0 ;;
  exit) rm -f "$path"; exit 0 ;;
esac
exec sh -c "$1"
"""


@pytest.fixture
def fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in ssh first on PATH; returns its log."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "ssh").write_text(FAKE_SSH)
    (folder / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    monkeypatch.setenv("SSH_LOG", str(tmp_path / "ssh.log"))
    return tmp_path / "ssh.log"


def _calls(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def _spec(tmp_path: Path, nodes: list[dict]) -> Path:
    spec = {"version": 1, "name": "vg-scope", "model": {"source": "test/tiny"},
            "cluster": {"backend": "mp", "nic": "eth0"},
            "nodes": [{"role": "worker", **node} for node in nodes], "serve": {"tensor_parallel_size": len(nodes)}}
    path = tmp_path / "vg-scope.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert CliRunner().invoke(cli, ["render", str(path), "-o", str(tmp_path / "build")]).exit_code == 0
    return path


def test_all_refuses_a_remote_node_without_docker_host(tmp_path: Path) -> None:
    spec = _spec(tmp_path, [
        {"name": "head", "role": "head", "address": "127.0.0.1", "gpus": 1},
        {"name": "gpu-2", "address": "203.0.113.2", "gpus": 1},
        {"name": "gpu-3", "address": "203.0.113.3", "gpus": 1, "docker_host": "ssh://root@203.0.113.3"},
    ])
    for command in (["apply", str(spec), "--all", "--dry-run", "--build-dir", str(tmp_path / "build")],
                    ["status", str(spec), "--all"], ["down", str(spec), "--all"], ["down", str(spec), "--all", "--dry-run"]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 2, result.output
        assert "gpu-2 (203.0.113.2) has none and is not this machine; nothing was done" in result.output
        assert "nodes[1].docker_host: ssh://USER@203.0.113.2" in result.output
        assert f"`vllmgen {command[0]} {spec} --node NAME`" in " ".join(result.output.split())
        assert "docker" not in result.output.split("Error")[0]  # nothing ran before the refusal


def test_all_drives_a_local_node_locally_and_shows_every_endpoint(tmp_path: Path) -> None:
    spec = _spec(tmp_path, [
        {"name": "head", "role": "head", "address": "127.0.0.1", "gpus": 1},
        {"name": "gpu-3", "address": "203.0.113.3", "gpus": 1, "docker_host": "ssh://root@203.0.113.3:2222"},
    ])
    result = CliRunner().invoke(cli, ["apply", str(spec), "--all", "--dry-run", "--build-dir", str(tmp_path / "build")],
                                env={"DOCKER_HOST": "unix:///run/test.sock"})
    assert result.exit_code == 0, result.output
    assert "# --- node head (local unix:///run/test.sock)" in result.output
    assert "# --- node gpu-3 (ssh://root@203.0.113.3:2222)" in result.output
    assert "docker --host ssh://root@203.0.113.3:2222 run" in result.output


def test_status_and_down_say_where_like_apply(tmp_path: Path) -> None:
    spec = _spec(tmp_path, [{"name": "head", "role": "head", "address": "127.0.0.1", "gpus": 1}])
    for command in ("status", "down"):
        result = CliRunner().invoke(cli, [command, str(spec)])
        assert result.exit_code == 2 and "--node NAME" in result.output and "--all" in result.output


def test_local_addresses() -> None:
    assert targets.is_local_address("127.0.0.1")
    assert not targets.is_local_address("203.0.113.1")  # documentation range: never this machine
    assert not targets.is_local_address("0.0.0.0")


@given(st.sampled_from(["root", "ops", "a.b-c_d"]), st.sampled_from(["203.0.113.1", "gpu-1", "[2001:db8::2]"]),
       st.one_of(st.none(), st.integers(1, 65535)))
def test_ssh_argv_takes_the_destination_after_double_dash(user: str, host: str, port: int | None) -> None:
    endpoint = parse(f"ssh://{user}@{host}" + (f":{port}" if port else ""))
    argv = ssh.ssh_argv(endpoint, "docker system dial-stdio")
    cut = argv.index("--")
    assert argv[cut + 1:] == [host.strip("[]"), "docker system dial-stdio"]
    assert all(word in ssh.OPTIONS or word in ("ssh", "-p", "-l", str(port), user) for word in argv[:cut])
    assert {"BatchMode=yes", "StrictHostKeyChecking=yes", "ConnectTimeout=10", "ServerAliveInterval=5"} <= set(argv)


@given(st.text(min_size=1, max_size=30))
def test_no_endpoint_value_becomes_an_ssh_option(text: str) -> None:
    try:
        endpoint = parse(f"ssh://{text}")
    except EndpointError:
        return
    argv = ssh.ssh_argv(endpoint, "true")
    cut = argv.index("--")
    assert not (endpoint.user or "").startswith("-") and not endpoint.host.startswith("-")
    assert argv[:cut].count("-l") <= 1 and argv[cut + 1] == endpoint.host


def test_ssh_errors_say_what_to_do() -> None:
    endpoint = parse("ssh://root@203.0.113.9:2222")
    unknown = ssh.explain(endpoint, "No ED25519 host key is known for [203.0.113.9]:2222 and you have requested "
                                    "strict checking.\r\nHost key verification failed.\r\n")
    assert "never accepts a host key silently" in unknown
    assert "ssh-keyscan -p 2222 203.0.113.9 >> ~/.ssh/known_hosts" in unknown
    assert "cannot reach sshd" in ssh.explain(endpoint, "ssh: connect to host 203.0.113.9 port 2222: Connection refused")
    assert "BatchMode" in ssh.explain(endpoint, "root@203.0.113.9: Permission denied (publickey).")
    assert ssh.transient("Connection reset by 203.0.113.9 port 22") and not ssh.transient("Connection refused")


def test_a_refused_ssh_engine_is_a_named_error_not_a_traceback() -> None:
    """Port 1 on loopback: refused at once; the error is ssh's, in words, and no paramiko is needed."""
    executor = DockerSdkExecutor("gpu-1", "ssh://root@127.0.0.1:1")
    with pytest.raises(EngineError, match=r"ssh://root@127\.0\.0\.1:1: cannot reach sshd \(.*Connection refused"):
        executor.ping()
    executor.close()
    assert "paramiko" not in sys.modules


def test_ssh_host_commands_time_out_as_host_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    host = SshHost(parse("ssh://root@203.0.113.9"))

    def hang(*args, **kwargs):  # noqa: ANN002, ANN003
        if "-N" in args[0]:  # the master's login: it ended without a word; the command then runs on its own
            return subprocess.CompletedProcess(args[0], 255)
        raise subprocess.TimeoutExpired(args[0], kwargs["timeout"])

    monkeypatch.setattr(subprocess, "run", hang)
    with pytest.raises(HostError, match=r"ssh://root@203\.0\.113\.9: `nvidia-smi` did not finish within 60s"):
        host.run(["nvidia-smi"], timeout=60)


def test_a_broken_pipe_is_a_runner_error_with_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    spec = _spec(tmp_path, [{"name": "head", "role": "head", "address": "127.0.0.1", "gpus": 1}])

    def broken(self):  # noqa: ANN001, ANN202
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("vllmgen.runner.steps.Apply.run", broken)
    monkeypatch.setattr("sys.argv", ["vllmgen", "apply", str(spec), "--all", "--dry-run",
                                     "--build-dir", str(tmp_path / "build")])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 4
    assert "the connection to a node broke: BrokenPipeError" in capsys.readouterr().err


def test_status_problems_name_nodes_and_keep_full_text() -> None:
    long_error = "ssh://root@203.0.113.9: cannot reach sshd (ssh: connect to host 203.0.113.9 port 22: Connection refused)"
    report = {"nodes": [{"node": "head", "role": "head", "endpoint": "ssh://root@203.0.113.8", "containers": [
                  {"name": "x-head", "status": "running", "exit_code": None, "current": True}]},
                        {"node": "w", "role": "worker", "endpoint": "ssh://root@203.0.113.9", "containers": [],
                         "error": long_error}],
              "cluster": None, "endpoint": {"url": "http://203.0.113.8:8000", "health": 200}}
    report["problems"] = status.problems(report)
    report["healthy"] = not report["problems"]
    assert report["problems"] == [f"node w (ssh://root@203.0.113.9): unreachable: {long_error}"]
    assert long_error in status.table(report) and "unhealthy: 1 problem(s)" in status.table(report)


def test_http_checks_ignore_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from vllmgen.runner.http import DirectHttp

    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    import http.server
    import threading

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"direct")

        def log_message(self, *args) -> None:  # noqa: ANN002
            pass

    server = http.server.HTTPServer(("127.0.0.2", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = DirectHttp().request("GET", f"http://127.0.0.2:{server.server_port}/health", timeout=5)
    finally:
        server.shutdown()
    assert (result.status, result.body) == (200, "direct")


def test_dry_run_needs_no_daemon(tmp_path: Path) -> None:
    spec = _spec(tmp_path, [{"name": "head", "role": "head", "address": "127.0.0.1", "gpus": 1,
                             "docker_host": "ssh://root@203.0.113.3"}])
    out = io.StringIO()
    result = CliRunner().invoke(cli, ["down", str(spec), "--all", "--dry-run"])
    out.write(result.output)
    assert result.exit_code == 0 and "docker --host ssh://root@203.0.113.3 ps --all" in result.output


def test_ssh_host_copies_the_deployment_files_in_one_session(tmp_path: Path, fake_ssh: Path) -> None:
    host = SshHost(parse("ssh://root@203.0.113.9"))
    target = tmp_path / "remote" / "deploy"
    host.put_files(str(target), {"serve-config.yaml": b"a: 1\n", "serve.sh": b"#!/bin/sh\n"})
    assert (target / "serve-config.yaml").read_bytes() == b"a: 1\n" and (target / "serve.sh").exists()
    assert _calls(fake_ssh) == ["master", "session"]
    out = host.run(["sh", "-c", "cat > \"$1\"", "x", str(tmp_path / "t")], input="text in\n")
    assert out.rc == 0 and (tmp_path / "t").read_text() == "text in\n"


def test_one_connection_per_host_per_run(fake_ssh: Path, connections: ssh.Connections) -> None:
    """Every command to a host after the first is a session over the first's master connection, from
    threads too; the masters' folder is private and is gone, with the masters, when the run ends."""
    hosts = [SshHost(parse("ssh://root@203.0.113.9")), SshHost(parse("ssh://ops@203.0.113.10:2222"))]
    connections.open([h.endpoint for h in hosts])  # both logins at once, in the background
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: hosts[i % 2].run(["echo", str(i)]).stdout, range(8)))
    assert answers == [f"{i}\n" for i in range(8)]
    calls = _calls(fake_ssh)
    assert calls.count("master") == 2 and calls.count("session") == 8 and "direct" not in calls
    folder = Path(connections.socket_folder())
    assert folder.stat().st_mode & 0o777 == 0o700 and len(list(folder.iterdir())) == 2
    connections.close()
    assert _calls(fake_ssh).count("exit") == 2 and not folder.exists()


def test_a_refused_login_is_reported_once_without_trying_again(fake_ssh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The master's login failed in a way ssh explains: every command on that host fails with ssh's words at
    once (not after a second connect timeout), and no other ssh is started."""
    monkeypatch.setenv("SSH_MASTER_SAYS", "ssh: connect to host 203.0.113.9 port 22: Connection refused")
    host = SshHost(parse("ssh://root@203.0.113.9"))
    for _ in range(2):
        with pytest.raises(HostError, match=r"cannot reach sshd \(ssh: connect to host .* Connection refused\)"):
            host.run(["echo", "a"])
    assert _calls(fake_ssh) == ["master"]


def test_a_master_that_fails_otherwise_leaves_ssh_to_say_why(fake_ssh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure ssh does not explain, or a dropped connection: each command runs as a plain ssh (with its
    own retries), the master not tried again in this run."""
    monkeypatch.setenv("SSH_MASTER_SAYS", "mux_client_request_session: something odd")
    host = SshHost(parse("ssh://root@203.0.113.9"))
    assert host.run(["echo", "a"]).stdout == "a\n" and host.run(["echo", "b"]).stdout == "b\n"
    assert _calls(fake_ssh) == ["master", "direct", "direct"]


def test_the_dry_run_prints_ssh_as_a_person_types_it(tmp_path: Path) -> None:
    spec = _spec(tmp_path, [{"name": "head", "role": "head", "address": "127.0.0.1", "gpus": 1,
                             "docker_host": "ssh://root@203.0.113.3"}])
    result = CliRunner().invoke(cli, ["apply", str(spec), "--all", "--dry-run", "--build-dir", str(tmp_path / "build")])
    assert result.exit_code == 0 and "ssh -o BatchMode=yes" in result.output and "Control" not in result.output


def test_the_early_logins_go_to_the_ssh_hosts_the_spec_names_and_no_other(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """apply/plan/status/down --all log in before validating: to the nodes' docker_host values only, as the
    bounded loader reads them (never one in a comment or inside another field's text), never for a dry run,
    --node, a non-Docker runtime or a file that is not YAML."""
    from vllmgen.cli import runner as cli_runner

    opened: list = []
    monkeypatch.setattr(ssh.CONNECTIONS, "open", lambda found, **kw: opened.append(list(found)))
    spec = tmp_path / "s.yaml"
    spec.write_text("nodes:\n  - name: a\n    docker_host: ssh://root@10.0.0.1\n"
                    "  - name: b\n    # docker_host: ssh://old@192.0.2.1\n    docker_host: 'ssh://ops@[fd00::1]:2222'  # b\n"
                    "  - name: c\n    docker_host: ssh://-oProxyCommand=x\n"
                    "serve:\n  extra_args:\n    - >-\n      docker_host: ssh://evil@198.51.100.9\n"
                    "other:\n  docker_host: ssh://evil@198.51.100.8\n")
    cli_runner.connect_early(spec, all_nodes=True)
    assert opened == [[parse("ssh://root@10.0.0.1"), parse("ssh://ops@[fd00::1]:2222")]]  # the bad one: validation's
    cli_runner.connect_early(spec, all_nodes=True, dry_run=True)
    cli_runner.connect_early(spec, all_nodes=False)
    cli_runner.connect_early(spec, all_nodes=True, node_name="a")  # a usage error follows: no login before it
    cli_runner.connect_early(tmp_path / "missing.yaml", all_nodes=True)
    process = tmp_path / "p.yaml"
    process.write_text("runtime:\n  kind: process\nnodes:\n  - name: a\n    docker_host: ssh://root@10.0.0.1\n")
    cli_runner.connect_early(process, all_nodes=True)
    broken = tmp_path / "b.yaml"
    broken.write_text("nodes: [\n  docker_host: ssh://root@10.0.0.1\n")
    cli_runner.connect_early(broken, all_nodes=True)
    assert len(opened) == 1
