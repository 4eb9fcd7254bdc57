"""The Executor: the verbs every target's engine answers on a node, and their data types.

Implementations: ``targets.docker.sdk.DockerSdkExecutor`` (a Docker engine through the docker SDK; it is
also a ``targets.docker.engine.DockerEngine``: images, daemon.json, Ray's view) and ``targets.process.procexec.
ProcessExecutor`` (host processes). Each engine's ``commands`` say what it would run for a verb, as a shell line:
a dry run (``runner.dryrun.Printing``) prints them and changes nothing. The node's files, commands and GPU count
are its ``host``'s (``runner.host``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from vllmgen.plan import label_names
from vllmgen.plan.plan import Container
from vllmgen.render.rayprobe import RAY_PROBE  # noqa: F401 - the runner's name for it
from vllmgen.runner import host as hosts

if TYPE_CHECKING:
    from vllmgen.runner.watch import Follow

IMAGE_HASH_LABEL = label_names.IMAGE_HASH
GPUS_LABEL = label_names.GPUS  # "none" on a container started with --no-gpus
FROM_LINE = re.compile(r"^FROM[ \t]+\S+", re.MULTILINE)  # the base a build swaps (--base-image)

# Run inside a container: the pids of `vllm serve` processes there.
SERVING_PROBE = (
    "import os\n"
    "def argv(pid):\n"
    "    try: return open(f\"/proc/{pid}/cmdline\", \"rb\").read().split(b\"\\0\")\n"
    "    except OSError: return []\n"
    "print(*[p for p in os.listdir(\"/proc\") if p.isdigit() and b\"serve\" in argv(p)[:4]"
    " and b\"vllm\" in [os.path.basename(a) for a in argv(p)[:2]]])"
)
# How ServeExec runs detached: its output goes to the container's, so `docker logs` shows it.
SERVE_WRAPPER = ("/bin/sh", "-c", 'exec "$@" >/proc/1/fd/1 2>/proc/1/fd/2', "vllmgen-serve")


class EngineError(Exception):
    """The Docker engine refused or failed an operation; the text is the engine's own."""


@dataclass(frozen=True)
class EngineInfo:
    version: str
    api_version: str
    runtimes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerState:
    name: str
    status: str  # created, running, exited, ...
    exit_code: int | None
    labels: Mapping[str, str]
    image: str = ""

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class RunRequest:
    """A planned container, ready to start: where ~/ and the deployment folder are, and secret values."""

    container: Container
    deploy_dir: str
    secrets: Mapping[str, str]
    gpus: bool = True
    run_labels: Mapping[str, str] = field(default_factory=dict)  # identity.run_labels: over the plan's

    @property
    def labels(self) -> dict[str, str]:
        labels = {**dict(self.container.labels), **self.run_labels}
        if not self.gpus:
            labels[GPUS_LABEL] = "none"
        return labels

    def planned(self) -> Container:
        """The container as it will start: plan labels plus ours, and no GPUs under --no-gpus."""
        return replace(self.container, labels=tuple(self.labels.items()), gpus=self.container.gpus if self.gpus else "")


@dataclass(frozen=True)
class ExecResult:
    rc: int | None
    output: str


@dataclass(frozen=True)
class ClusterView:
    gpus: float
    nodes: tuple[str, ...]  # addresses of the alive nodes


class Commands(Protocol):
    """What a target's engine would run for each verb, as one shell line: the words a dry run prints (and, where
    the engine runs words, the ones it runs). None: the verb has no command of its own (it reads what the
    engine keeps, as the process target reads its records)."""

    where: str  # where the commands go: the dry run's node header

    def ping(self) -> str | None: ...  # EngineError where the engine would refuse the endpoint
    def prepare_deploy_dir(self, local: Path, files: tuple[str, ...], remote: str) -> str | None: ...
    def run(self, request: RunRequest) -> str: ...  # secrets by name: the caller says where each is read
    def remove(self, name: str, stop_timeout: int) -> str: ...
    def exec(self, name: str, argv: tuple[str, ...], detach: bool, env: tuple[str, ...]) -> str: ...  # env: names
    def list_containers(self, deployment: str) -> str | None: ...
    def started_at(self, name: str) -> str | None: ...
    def serving(self, name: str) -> str | None: ...


class Executor(Protocol):
    """A target's engine on one node: the verbs every runtime answers (a container or a host process
    behind each name). What only Docker does is ``targets.docker.engine.DockerEngine``; the GPU count is
    the host's (``host.gpu_count``); HTTP probes are the control side's (``runner.http``)."""

    node: str
    endpoint: str | None  # None: the local default (DOCKER_HOST or /var/run/docker.sock)
    host: hosts.Host
    concurrent: bool  # may the steps drive several executors at once?
    commands: Commands  # what it would run for each verb (the dry run prints them)

    def ping(self) -> EngineInfo: ...
    def prepare_deploy_dir(self, local: Path, files: tuple[str, ...], remote: str) -> str: ...
    def inspect(self, name: str) -> ContainerState | None: ...
    def run(self, request: RunRequest) -> None: ...
    def remove(self, name: str, stop_timeout: int = 10) -> None: ...
    def logs(self, name: str, tail: int | None = 30, timestamps: bool = False) -> str: ...  # None: all
    def follow(self, name: str) -> Follow | None: ...  # its output from its start, and its end; None: cannot
    def started_at(self, name: str) -> datetime | None: ...  # when it (last) started; None: not known
    def exec(self, name: str, argv: tuple[str, ...], *, detach: bool = False,
             env: Mapping[str, str] | None = None) -> ExecResult: ...  # env: values never printed
    def list_containers(self, deployment: str) -> list[ContainerState]: ...
    def serving(self, name: str) -> bool: ...
    def close(self) -> None: ...


def dockerfile_for(context: Path, base: str | None) -> str:
    """The Dockerfile to build: the deployment's own, its FROM swapped when ``base`` is given."""
    text = (context / "Dockerfile").read_text(encoding="utf-8")
    if base:
        text, count = FROM_LINE.subn(f"FROM {base}", text, count=1)
        if not count:
            raise ValueError(f"{context / 'Dockerfile'} has no FROM line to swap")
    return text


def image_hash(dockerfile: str) -> str:
    return hashlib.sha256(dockerfile.encode()).hexdigest()[:16]


def parse_cluster_view(output: str) -> ClusterView | None:
    for line in reversed(output.strip().splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "gpus" in data:
            return ClusterView(float(data["gpus"]), tuple(data.get("nodes", ())))
    return None
