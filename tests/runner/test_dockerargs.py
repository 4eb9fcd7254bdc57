"""What `apply --dry-run` prints for a container is what the Docker executor hands the engine.

For every node of every spec in specs/: the dry run's printed `docker run` line, read back as a
shell would read it (``${HOME}`` expanded, the secret passed by name from the environment), gives
the same Engine API create request as DockerSdkExecutor sends for that container.
"""

from __future__ import annotations

import io
import shlex
from pathlib import Path

import pytest

from vllmgen.render.compile import compile_file
from vllmgen.targets.docker import dockerargs
from vllmgen.runner.dryrun import FreshHost, Printing, Recorder, printing
from vllmgen.runner.executor import RunRequest
from vllmgen.runner.host import LocalHost
from vllmgen.targets.docker.sdk import DockerSdkExecutor

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
HOME = "/home/ops"


def _printed_argv(executor: Printing, stream: io.StringIO, request: RunRequest) -> list[str]:
    stream.seek(0)
    stream.truncate()
    executor.run(request)
    lines = [line for line in stream.getvalue().splitlines() if line and not line.startswith(("#", "export "))]
    assert len(lines) == 1, lines
    words = shlex.split(lines[0].replace("${HOME}", HOME))
    if executor.endpoint:
        assert words[1:3] == ["--host", executor.endpoint]
        del words[1:3]
    return words


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
@pytest.mark.parametrize("gpus", [True, False], ids=["gpus", "no-gpus"])
def test_dry_run_prints_what_the_executor_creates(spec: Path, gpus: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = compile_file(spec).plan
    if plan.runtime == "process":
        pytest.skip("no docker run for a process (tests/test_process_runtime.py compares run.sh and the dry run)")
    host = LocalHost()
    monkeypatch.setattr(host, "home", lambda: HOME)
    stream = io.StringIO()
    for node in plan.nodes:
        secrets = {s.name: f"value-of-{s.name}" for s in node.container.secrets}
        request = RunRequest(node.container, f"/srv/deploy/{plan.name}", secrets, gpus)
        sdk = DockerSdkExecutor(node.name, "ssh://ops@192.0.2.10", host)  # what it runs, and what it says it runs
        dry = printing(FreshHost(node.name, "ssh://ops@192.0.2.10", host), sdk.commands, Recorder(stream=stream))
        printed = _printed_argv(dry, stream, request)
        assert dockerargs.create_request(printed, secrets) == sdk._create_request(request)
        # and every secret went by name only
        text = " ".join(printed)
        assert not any(value in text for value in secrets.values())


def test_an_option_without_translation_is_refused() -> None:
    with pytest.raises(ValueError, match="--privileged has no Engine API translation"):
        dockerargs.create_request(["docker", "run", "--detach", "--privileged", "x", "img"], {})
    with pytest.raises(ValueError, match="without --detach"):
        dockerargs.create_request(["docker", "run", "img"], {})


@pytest.mark.parametrize(("text", "size"), [("1g", 1 << 30), ("10.24g", 10995116277), ("512m", 512 << 20),
                                            ("64MiB", 64 << 20), ("100", 100), ("2 GB", 2 << 30)])
def test_shm_size_is_read_as_the_docker_cli_reads_it(text: str, size: int) -> None:
    _, body = dockerargs.create_request(["docker", "run", "--detach", "--shm-size", text, "img"], {})
    assert body["HostConfig"]["ShmSize"] == size
