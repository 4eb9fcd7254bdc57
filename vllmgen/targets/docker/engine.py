"""What only the Docker target's engine does, beyond the verbs every engine answers (``runner.executor``):
images (inspect, build), daemon.json on its host and restarting Docker, and asking Ray inside the head's
container. The steps that need them are the Docker target's (daemon.json, image, the Ray cluster, the
router's image); they ask for this protocol with ``docker_engine``, so a process engine need not fake them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from vllmgen.runner.executor import ClusterView, Commands, EngineError, Executor


@runtime_checkable
class DockerEngine(Executor, Protocol):
    def image_labels(self, tag: str) -> dict[str, str] | None: ...
    def image_id(self, tag: str) -> str | None: ...
    def build_image(self, context: Path, tag: str, dockerfile: str, labels: dict[str, str],
                    on_line: Callable[[str], None]) -> None: ...
    def cluster_view(self, name: str) -> ClusterView | None: ...  # Ray's nodes and GPUs, from inside `name`
    # daemon.json on the engine's host (a Docker-only step), and the restart that applies it
    def read_daemon_json(self) -> str | None: ...
    def write_daemon_json(self, text: str, backup: str | None) -> None: ...
    def validate_daemon_json(self, text: str) -> tuple[bool | None, str]: ...  # None: no dockerd --validate
    def restore_daemon_json(self, original: str | None) -> None: ...  # None: remove the file
    def restart_daemon(self) -> None: ...


@runtime_checkable
class DockerCommands(Commands, Protocol):
    """The shell lines of the Docker-only verbs (``DockerEngine``'s), beside every engine's."""

    def build_image(self, context: Path, tag: str, dockerfile: str, labels: dict[str, str]) -> str: ...
    def cluster_view(self, name: str) -> str: ...
    def write_daemon_json(self, path: str, text: str, backup: str | None) -> str: ...
    def validate_daemon_json(self) -> str: ...
    def restore_daemon_json(self, path: str, original: str | None) -> str: ...
    def restart_daemon(self, command: tuple[str, ...]) -> str: ...


def docker_engine(executor: Executor) -> DockerEngine:
    """``executor`` as the Docker engine it must be here; EngineError (a step failure) when it is not."""
    if not isinstance(executor, DockerEngine):
        raise EngineError(f"node {executor.node}: this step needs a Docker engine, and this runtime has none")
    return executor


def has_images(executor: Executor) -> bool:
    return isinstance(executor, DockerEngine)
