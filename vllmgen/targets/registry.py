"""The one table of runtime targets: ``runtime.kind`` -> what that target owns.

Adding a runtime is one new folder under ``vllmgen/targets/`` and one line in ``TARGETS`` (and its runtime
model as one member of ``spec.model.Runtime``, the union the spec is validated with: the spec cannot import
this table, which imports the render side). The runner's engine is named by import path: the compile stage
(validate, render, ``--check``) never imports the runner or the Docker SDK. A target vllmgen does not run
(Kubernetes: applied by kubectl or GitOps) has ``engine=None`` and a ``manual`` function: apply, status and
down print what to run and do nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vllmgen.plan.plan import Container, Plan
from vllmgen.spec.runtime import RuntimeBase
from vllmgen.targets.docker import render as docker_render
from vllmgen.targets.docker.runtime import DockerRuntime
from vllmgen.targets.kit import File, RenderKit
from vllmgen.targets.kubernetes import render as kubernetes_render
from vllmgen.targets.kubernetes.spec import KubernetesRuntime
from vllmgen.targets.process import process as process_paths
from vllmgen.targets.process import render as process_render
from vllmgen.targets.process.runtime import ProcessRuntime


@dataclass(frozen=True)
class Target:
    kind: str  # runtime.kind
    runtime: type[RuntimeBase] | type[KubernetesRuntime]  # its part of the spec
    artifacts: Callable[[Plan, RenderKit], list[File]]  # its own files in build/<name>/ (beside the shared ones)
    engine: str | None  # "module:callable" -> the runner's engine for one node; None: nothing is run from
    # here, apply/status/down print the commands to run
    docker: bool  # a Docker daemon on every host: daemon.json, the image, endpoints (docker_host), doctor's Docker checks
    manual: str | None = None  # no engine: "module:callable", (command, plan, artifacts or None, build dir,
    # dry_run) -> an Answer (text, exit code): what a person runs instead of `vllmgen apply|plan|status|down|bench`
    # (kubectl); artifacts: the rendered files where the command compiled them (plan and apply do)
    host_files: bool = True  # render adds the hosts' shared files (serve-config.yaml, secrets.env.example,
    # README.md, the gateway's and monitoring's files); False: the target's artifacts are the whole folder
    exec_path: Callable[[str, Container, str], str] = lambda _deployment, _container, path: path
    # (deployment, container, path inside it) -> where a command the engine's ``exec`` runs finds that path
    # (vllm bench's tokenizer): a container's own exec sees its own paths; a process's, the host's


@dataclass(frozen=True)
class Answer:
    """What a target without an engine answers a runner command: printed, then the command exits with it."""

    text: str
    exit_code: int


TARGETS: dict[str, Target] = {target.kind: target for target in (
    Target("docker", DockerRuntime, docker_render.artifacts, "vllmgen.targets.docker.sdk:engine_for", docker=True),
    Target("process", ProcessRuntime, process_render.artifacts, "vllmgen.targets.process.procexec:engine_for", docker=False,
           exec_path=process_paths.exec_path),
    Target("kubernetes", KubernetesRuntime, kubernetes_render.target_artifacts, None, docker=False,
           manual="vllmgen.targets.kubernetes.runner:intercept", host_files=False),
)}


def target(kind: str) -> Target:
    """The target of ``runtime.kind`` (a plan's ``runtime``); validation refused any other kind."""
    return TARGETS[kind]
