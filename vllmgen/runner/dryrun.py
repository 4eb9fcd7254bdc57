"""The dry run: every engine verb recorded (for the tests) and, where it has one, the command the node's
target would run for it printed (``Commands``, the target's own words); nothing is changed, nothing reached.

``Printing`` wraps an engine: a mutating verb (run, remove, exec, build, daemon.json, the deployment folder)
prints the target's command and is performed only on the engine it wraps; a read is recorded and asked of that
engine. A dry run must never contact the spec's hosts, so the engine it wraps is ``FreshHost``: a node as a
first apply finds it (nothing of the deployment there yet, or what a test seeds), where what the dry run starts
counts as running. HTTP probes are the control side's: ``DryRunHttp`` prints the ``curl`` and answers as a
healthy deployment would.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from vllmgen.plan import label_names
from vllmgen.plan.plan import Plan, SecretEnv
from vllmgen.render.shell import curl_with_key, secret_expression
from vllmgen.runner import host as hosts
from vllmgen.runner.executor import (
    ClusterView,
    Commands,
    ContainerState,
    EngineInfo,
    ExecResult,
    RunRequest,
)
from vllmgen.runner.http import HttpResult
from vllmgen.runner.secrets import placeholders
from vllmgen.targets.docker.engine import DockerCommands


@dataclass(frozen=True)
class Call:
    node: str
    op: str
    detail: str = ""


@dataclass
class Recorder:
    """The calls of every dry-run engine (and HTTP client) that shares it, in order; and where their commands go."""

    stream: TextIO | None = None
    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _last_node: str | None = None
    endpoints: dict[str, str] = field(default_factory=dict)  # node -> where its commands go, for the headers

    def record(self, node: str, op: str, detail: str = "", command: str | None = None) -> None:
        with self._lock:
            self.calls.append(Call(node, op, detail))
            if command is None:
                return
            stream = self.stream or sys.stdout
            if node != self._last_node:
                where = self.endpoints.get(node)
                print(f"\n# --- node {node}" + (f" ({where})" if where else ""), file=stream)
                self._last_node = node
            print(command, file=stream, flush=True)


class DryHost:
    """The node's host as the dry run sees it: its paths and commands, but nothing that reaches it. ``$HOME``
    of a remote host is unknown without asking it, so it prints as ``~``; the GPU count is printed, not asked."""

    def __init__(self, host: hosts.Host, recorder: Recorder, node: str):
        self.real = host
        self.description = host.description
        self.daemon_json_path = host.daemon_json_path
        self.restart_command = host.restart_command
        self._recorder, self._node = recorder, node

    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 120) -> hosts.Completed:
        raise AssertionError(f"a dry run runs nothing on {self.description}: {shlex.join(argv)}")

    def home(self) -> str:
        return self.real.home() if hosts.is_local(self.real) else "~"

    def read_text(self, path: str) -> str | None:
        return self.real.read_text(path) if hosts.is_local(self.real) else None  # reading here changes nothing

    def replace_text(self, path: str, text: str, backup: str | None) -> None:
        raise AssertionError(f"a dry run writes nothing on {self.description}: {path}")

    def remove(self, path: str) -> None:
        raise AssertionError(f"a dry run removes nothing on {self.description}: {path}")

    def put_files(self, directory: str, files: dict[str, bytes]) -> None:
        raise AssertionError(f"a dry run copies nothing to {self.description}: {directory}")

    def gpu_count(self) -> int | None:
        argv = list(hosts.GPU_QUERY)
        command = shlex.join(self.real.ssh_argv(argv)) if isinstance(self.real, hosts.SshHost) else shlex.join(argv)
        self._recorder.record(self._node, "gpu-count", "", command)
        return None


class FreshHost:
    """A node as a first apply finds it, in memory: no container or image of the deployment (unless a test
    seeds ``containers`` / ``images``); what is run there counts as running, a detached ``vllm serve`` as
    serving, a build as built; Ray's view is ``cluster`` (the spec's whole cluster). One model for every
    target: the target shows in what ``Printing`` prints, not in what this answers."""

    def __init__(self, node: str, endpoint: str | None, host: hosts.Host, *, cluster: ClusterView | None = None,
                 containers: Mapping[str, ContainerState] | None = None,
                 images: Mapping[str, dict[str, str]] | None = None):
        self.node = node
        self.endpoint = endpoint
        self.host = host
        self.cluster = cluster
        self.containers = dict(containers or {})
        self.images = dict(images or {})
        self.served: set[str] = set()  # containers where a `vllm serve` was started

    def ping(self) -> EngineInfo:
        return EngineInfo("dry-run", "dry-run")

    def prepare_deploy_dir(self, local: Path, files: tuple[str, ...], remote: str) -> str:
        if hosts.is_local(self.host):
            return str(local.resolve())
        if not isinstance(self.host, hosts.SshHost):
            raise hosts.NoHostAccess(f"copying the deployment folder needs the host itself, and {self.endpoint} "
                                     "reaches only its Docker API; give the node an ssh:// docker_host")
        return remote

    def inspect(self, name: str) -> ContainerState | None:
        return self.containers.get(name)

    def run(self, request: RunRequest) -> None:
        container = request.planned()
        self.containers[container.name] = ContainerState(container.name, "running", None, request.labels,
                                                         container.image)

    def remove(self, name: str, stop_timeout: int = 10) -> None:
        self.containers.pop(name, None)

    def logs(self, name: str, tail: int | None = 30, timestamps: bool = False) -> str:
        return ""

    def follow(self, name: str) -> None:
        return None  # nothing runs: the waits poll

    def started_at(self, name: str) -> datetime | None:
        return None

    def exec(self, name: str, argv: tuple[str, ...], *, detach: bool = False,
             env: Mapping[str, str] | None = None) -> ExecResult:
        if detach and "vllm" in argv and "serve" in argv:
            self.served.add(name)
        return ExecResult(None if detach else 0, "")

    def list_containers(self, deployment: str) -> list[ContainerState]:
        return [state for state in self.containers.values() if state.labels.get(label_names.DEPLOYMENT) == deployment]

    def serving(self, name: str) -> bool:
        return name in self.served

    def image_labels(self, tag: str) -> dict[str, str] | None:
        return self.images.get(tag)

    def image_id(self, tag: str) -> str | None:
        return f"sha256:(the ID of {tag})" if tag in self.images else None

    def build_image(self, context: Path, tag: str, dockerfile: str, labels: dict[str, str]) -> None:
        self.images[tag] = dict(labels)

    def cluster_view(self, name: str) -> ClusterView | None:
        return self.cluster

    def read_daemon_json(self) -> str | None:  # this machine's file is read (the real merge); a remote one is not
        return self.host.read_text(self.host.daemon_json_path) if hosts.is_local(self.host) else None

    def validate_daemon_json(self, text: str) -> tuple[bool | None, str]:
        return None, ""

    def close(self) -> None:
        pass


class Printing:
    """An engine in a dry run (``runner.executor.Executor``): each verb recorded; a mutation printed as the
    target's ``commands`` say and performed only on ``engine``; a read printed where the target has a command
    for it and answered by ``engine``. ``secrets`` are the plan's: a printed command reads each from where
    the spec keeps it."""

    concurrent = False  # one node after another: the printed script reads top to bottom

    def __init__(self, engine: FreshHost, commands: Commands, recorder: Recorder,
                 secrets: tuple[SecretEnv, ...] = ()):
        self.engine = engine
        self.commands = commands
        self.recorder = recorder
        self.secrets = secrets
        self.node = engine.node
        self.endpoint = engine.endpoint
        self.host: hosts.Host = DryHost(engine.host, recorder, engine.node)
        recorder.endpoints[self.node] = commands.where

    def _record(self, op: str, detail: str = "", command: str | None = None) -> None:
        self.recorder.record(self.node, op, detail, command)

    def close(self) -> None:
        self.engine.close()

    def ping(self) -> EngineInfo:
        command = self.commands.ping()  # raises where the engine would refuse the endpoint: nothing printed
        self._record("ping", command=command)
        return self.engine.ping()

    def prepare_deploy_dir(self, local: Path, files: tuple[str, ...], remote: str) -> str:
        where = self.engine.prepare_deploy_dir(local, files, remote)
        command = self.commands.prepare_deploy_dir(local, files, remote)
        if command is not None:
            self._record("put-files", f"{remote}: {', '.join(sorted(files))}", command)
        return where

    def inspect(self, name: str) -> ContainerState | None:
        self._record("inspect", name)
        return self.engine.inspect(name)

    def run(self, request: RunRequest) -> None:
        container = request.planned()
        self._record("run", container.name, passes_note(container.secrets) + assignments(container.secrets)
                     + self.commands.run(request))
        self.engine.run(request)

    def remove(self, name: str, stop_timeout: int = 10) -> None:
        self._record("remove", name, self.commands.remove(name, stop_timeout))
        self.engine.remove(name, stop_timeout)

    def logs(self, name: str, tail: int | None = 30, timestamps: bool = False) -> str:
        self._record("logs", name + (" --timestamps" if timestamps else ""))
        return self.engine.logs(name, tail, timestamps)

    def follow(self, name: str) -> None:
        """Recorded, not printed (``docker logs --follow`` would not return): nothing runs, so the waits poll."""
        self._record("follow", name)
        return self.engine.follow(name)

    def started_at(self, name: str) -> datetime | None:
        self._record("started-at", name, self.commands.started_at(name))
        return self.engine.started_at(name)

    def exec(self, name: str, argv: tuple[str, ...], *, detach: bool = False,
             env: Mapping[str, str] | None = None) -> ExecResult:
        # a value the run holds stands for one of the spec's secrets: read the variable from where that one is
        sources = {value: secret for secret, value in zip(self.secrets, placeholders(self.secrets).values())}
        passed = tuple(SecretEnv(key, sources[value].from_env or sources[value].name, sources[value].from_file)
                       if value in sources else SecretEnv(key) for key, value in sorted((env or {}).items()))
        command = self.commands.exec(name, argv, detach, tuple(sorted(env or {})))
        self._record("exec-detached" if detach else "exec", f"{name}: {argv[0]}",
                     passes_note(passed) + assignments(passed) + command)
        return self.engine.exec(name, argv, detach=detach, env=env)

    def list_containers(self, deployment: str) -> list[ContainerState]:
        self._record("list", deployment, self.commands.list_containers(deployment))
        return self.engine.list_containers(deployment)

    def serving(self, name: str) -> bool:
        self._record("serving", name, self.commands.serving(name))
        return self.engine.serving(name)


class DockerPrinting(Printing):
    """``Printing`` of a Docker target's engine: its images, Ray's view and daemon.json too (``DockerEngine``)."""

    commands: DockerCommands

    def __init__(self, engine: FreshHost, commands: DockerCommands, recorder: Recorder,
                 secrets: tuple[SecretEnv, ...] = ()):
        super().__init__(engine, commands, recorder, secrets)

    def image_labels(self, tag: str) -> dict[str, str] | None:
        self._record("image-inspect", tag)
        return self.engine.image_labels(tag)

    def image_id(self, tag: str) -> str | None:
        return self.engine.image_id(tag)

    def build_image(self, context: Path, tag: str, dockerfile: str, labels: dict[str, str],
                    on_line: Callable[[str], None]) -> None:
        self._record("build", tag, self.commands.build_image(context, tag, dockerfile, labels))
        self.engine.build_image(context, tag, dockerfile, labels)

    def cluster_view(self, name: str) -> ClusterView | None:
        self._record("cluster-view", name, self.commands.cluster_view(name))
        return self.engine.cluster_view(name)

    def read_daemon_json(self) -> str | None:
        self._record("read-daemon-json", self.host.daemon_json_path)
        return self.engine.read_daemon_json()

    # daemon.json's write, restore and Docker's restart: printed; the fresh host keeps no state of them
    def write_daemon_json(self, text: str, backup: str | None) -> None:
        path = self.host.daemon_json_path
        self._record("write-daemon-json", path, self.commands.write_daemon_json(path, text, backup))

    def validate_daemon_json(self, text: str) -> tuple[bool | None, str]:
        self._record("validate-daemon-json", self.host.daemon_json_path, self.commands.validate_daemon_json())
        return self.engine.validate_daemon_json(text)

    def restore_daemon_json(self, original: str | None) -> None:
        path = self.host.daemon_json_path
        self._record("restore-daemon-json", path, self.commands.restore_daemon_json(path, original))

    def restart_daemon(self) -> None:
        self._record("restart-daemon", command=self.commands.restart_daemon(self.host.restart_command))


def printing(engine: FreshHost, commands: Commands, recorder: Recorder,
             secrets: tuple[SecretEnv, ...] = ()) -> Printing:
    """The dry run of a target's engine: it answers the verbs the target's engine answers (Docker's own when
    the target has their commands)."""
    if isinstance(commands, DockerCommands):
        return DockerPrinting(engine, commands, recorder, secrets)
    return Printing(engine, commands, recorder, secrets)


class DryRunHttp:
    """The dry run's HTTP client: records and prints the ``curl`` equivalent to each probe (the key read from
    where the spec keeps it, never on an argv), under the node whose server it asks, and answers as a healthy
    deployment would: with the spec's served model, and 401 to a request without the key (but /health)."""

    def __init__(self, recorder: Recorder, plan: Plan):
        self.recorder = recorder
        self.key = next((s for s in plan.secrets if s.name == "VLLM_API_KEY"), SecretEnv("VLLM_API_KEY"))
        self.served = plan.endpoint.served_name
        self.api_key = plan.endpoint.api_key is not None
        self.head = plan.head.name
        self.nodes = server_nodes(plan)

    def request(self, method: str, url: str, headers: Mapping[str, str] | None = None, body: Any = None,
                timeout: float = 10) -> HttpResult:
        words = ["-sS", "-X", method]
        authorized = any(key.lower() == "authorization" for key in (headers or {}))
        if body is not None:
            words += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
        if authorized:  # the key is a secret: curl reads the header from stdin, the key from where the spec says
            command = curl_with_key(secret_expression(self.key.name, self.key.from_env, self.key.from_file),
                                    [*words, url])
        else:
            command = shlex.join(["curl", *words, url])
        parts = urlsplit(url)
        path = url.split("/", 3)[-1] if url.count("/") >= 3 else ""
        unauthenticated = " (no key)" if self.api_key and not authorized else ""
        self.recorder.record(self.nodes.get(parts.netloc, self.head), "http", f"{method} /{path}{unauthenticated}",
                             command)
        if self.api_key and not authorized and path != "health":  # as through the front door
            return HttpResult(401, '{"error": "Unauthorized"}')
        if path == "v1/models":
            return HttpResult(200, json.dumps({"data": [{"id": self.served}]}))
        if path.startswith("v1/chat"):
            return HttpResult(200, json.dumps({"choices": [{"message": {"content": "(dry run)"}}]}))
        if path.startswith("v1/completions"):
            return HttpResult(200, json.dumps({"choices": [{"text": "(dry run)"}]}))
        return HttpResult(200, "")


def server_nodes(plan: Plan) -> dict[str, str]:
    """``host:port`` of every server vllmgen probes -> the node it runs on (the head's first)."""
    front = plan.gateway.node if plan.gateway else plan.head.name
    urls = [(plan.head.name, plan.direct_endpoint.url), *plan.server_urls, (front, plan.endpoint.url)]
    if plan.router:
        urls.append((plan.router.node, plan.router.url))
    if plan.gateway:
        urls.append((plan.gateway.node, plan.gateway.url))
    nodes: dict[str, str] = {}
    for node, url in urls:
        nodes.setdefault(urlsplit(url).netloc, node)
    return nodes


def passes_note(secrets: tuple[SecretEnv, ...]) -> str:
    """``# passes NAME (from $VAR), ...``: which secrets a printed command hands on, and from where."""
    if not secrets:
        return ""
    sources = ", ".join(f"{s.name} (from {'file ' + s.from_file if s.from_file else '$' + (s.from_env or s.name)})"
                        for s in secrets)
    return f"# passes {sources} by name; values are never printed or put on a command line\n"


def assignments(secrets: tuple[SecretEnv, ...]) -> str:
    """``export NAME="${VAR}"`` lines, as start.sh has them, for each secret read from another variable or
    a file: the next command (docker run --env NAME, setsid env ...) finds it in its environment, not on
    its argv."""
    return "".join(f"export {s.name}={secret_expression(s.name, s.from_env, s.from_file)}\n" for s in secrets
                   if s.from_file or (s.from_env and s.from_env != s.name))
