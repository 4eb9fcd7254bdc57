"""tcp:// Docker endpoints are refused, at validate and by the runner (a DOCKER_HOST too): nothing is
ever sent to one, and `apply --all --dry-run` on such a spec is an invalid spec (3), never 123."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from inprocess import run_vllmgen

from vllmgen.cli.commands import cli
from vllmgen.spec.endpoints import TCP_REFUSED
from vllmgen.errors import SpecError
from vllmgen.runner import host as hosts
from vllmgen.runner.dryrun import FreshHost, Recorder, printing
from vllmgen.runner.executor import EngineError
from vllmgen.targets.docker.sdk import DockerSdkExecutor

ROOT = Path(__file__).resolve().parents[2]


def _dry(node: str, endpoint: str | None):  # noqa: ANN202
    """The dry run of the Docker target's engine at ``endpoint``."""
    host = hosts.for_endpoint(endpoint)
    return printing(FreshHost(node, endpoint, host), DockerSdkExecutor(node, endpoint, host).commands, Recorder())
SPEC = """version: 1
name: tcpd
model: {source: Qwen/Qwen3-8B}
secrets: {api_key: {env: MY_KEY}}
nodes:
  - {name: a, address: 192.0.2.1, gpus: 1, docker_host: "tcp://192.0.2.1:2376"}
"""


def test_apply_all_dry_run_on_a_tcp_docker_host_exits_3_not_123(tmp_path):
    spec = tmp_path / "tcp.yaml"
    spec.write_text(SPEC)
    done = run_vllmgen("apply", spec, "--all", "--dry-run", cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "nodes[0].docker_host: tcp:// is refused" in done.stderr and "ssh://USER@HOST" in done.stderr


@pytest.mark.parametrize("command", [["plan", "--all", "--dry-run"], ["bench", "--dry-run"],
                                     ["down", "--all", "--dry-run"]])
def test_every_runner_command_refuses_the_spec_first(tmp_path, command):
    spec = tmp_path / "tcp.yaml"
    spec.write_text(SPEC)
    done = CliRunner().invoke(cli, [command[0], str(spec), *command[1:]])
    assert isinstance(done.exception, SpecError) and done.exception.exit_code == 3, done.output
    assert "tcp:// is refused" in str(done.exception)


@pytest.fixture
def listener():
    """A loopback port that counts the connections it gets."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            accepted.append(conn.recv(4096))
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1], accepted
    stop.set()
    thread.join(timeout=5)
    sock.close()


def test_the_sdk_executor_refuses_a_tcp_endpoint_and_sends_nothing(listener):
    port, accepted = listener
    executor = DockerSdkExecutor("a", f"tcp://127.0.0.1:{port}", hosts.LocalHost())
    with pytest.raises(EngineError, match="tcp:// is refused"):
        executor.ping()
    assert accepted == []


def test_a_tcp_docker_host_in_the_environment_is_refused_too(listener, monkeypatch):
    port, accepted = listener
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
    with pytest.raises(EngineError) as caught:
        DockerSdkExecutor("a", None, hosts.LocalHost()).ping()
    assert str(caught.value) == TCP_REFUSED and accepted == []
    with pytest.raises(EngineError):
        _dry("a", None).ping()


def test_the_dry_run_says_why_instead_of_crashing_on_a_tcp_endpoint():
    dry = _dry("a", "tcp://192.0.2.1:2376")
    with pytest.raises(EngineError, match="tcp:// is refused"):
        dry.ping()
    with pytest.raises(hosts.NoHostAccess, match="ssh:// docker_host"):
        dry.prepare_deploy_dir(ROOT / "build" / "qwen3-cn", ("compose.yaml",), "~/.vllmgen/deployments/x")
