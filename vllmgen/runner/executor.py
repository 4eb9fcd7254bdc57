"""The Executor: every operation the runner performs on a node, behind one protocol.

``DockerSdkExecutor`` talks to a Docker engine through the docker SDK at any endpoint the SDK
takes (``unix://``, ``ssh://user@host``, ``tcp://host:2376``), and to the node's host (daemon.json,
restart) through ``vllmgen.runner.host``. ``DryRunExecutor`` changes nothing: it prints the
equivalent ``docker`` commands (built by ``vllmgen.dockercli``, as the start scripts are), records
every call for the tests, and answers probes as a healthy deployment would.

The docker SDK is imported here, lazily, and nowhere else in vllmgen.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shlex
import sys
import tarfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from vllmgen.dockercli import run_argv
from vllmgen.plan import Container, Mount
from vllmgen.runner import host as hosts
from vllmgen.shell import Anchored, Word, join_words

IMAGE_HASH_LABEL = "io.vllmgen.image-hash"
GPUS_LABEL = "io.vllmgen.gpus"  # "none" on a container started with --no-gpus
_FROM = re.compile(r"^FROM[ \t]+\S+", re.MULTILINE)

# Run inside the Ray head with its python: the alive nodes' addresses and the cluster's GPUs.
# (Double quotes only, so that the printed `docker exec ... -c '...'` reads as written.)
RAY_PROBE = (
    'import json, ray; ray.init(address="auto", logging_level="ERROR", log_to_driver=False); '
    'nodes = [n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")]; '
    'print(json.dumps({"gpus": ray.cluster_resources().get("GPU", 0), "nodes": sorted(nodes)}))'
)
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

    @property
    def labels(self) -> dict[str, str]:
        labels = dict(self.container.labels)
        if not self.gpus:
            labels[GPUS_LABEL] = "none"
        return labels

    def planned(self) -> Container:
        """The container as it will start: plan labels plus ours, and no GPUs under --no-gpus."""
        from dataclasses import replace

        return replace(self.container, labels=tuple(self.labels.items()), gpus=self.container.gpus if self.gpus else "")

    def resolve(self, mount: Mount, home: str) -> str:
        if mount.anchor == "absolute":
            return mount.source
        return Anchored(mount.anchor, mount.source).resolve(home, self.deploy_dir)


@dataclass(frozen=True)
class ExecResult:
    rc: int | None
    output: str


@dataclass(frozen=True)
class ClusterView:
    gpus: float
    nodes: tuple[str, ...]  # addresses of the alive nodes


@dataclass(frozen=True)
class HttpResult:
    status: int  # 0: no answer (refused, timed out); the reason is in body
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


class Executor(Protocol):
    node: str
    endpoint: str | None  # None: the local default (DOCKER_HOST or /var/run/docker.sock)
    host: hosts.Host
    concurrent: bool  # may the steps drive several executors at once?

    def ping(self) -> EngineInfo: ...
    def read_daemon_json(self) -> str | None: ...
    def write_daemon_json(self, text: str, backup: str | None) -> None: ...
    def restart_daemon(self) -> None: ...
    def gpu_count(self) -> int | None: ...
    def image_labels(self, tag: str) -> dict[str, str] | None: ...
    def build_image(self, context: Path, tag: str, dockerfile: str, labels: dict[str, str],
                    on_line: Callable[[str], None]) -> None: ...
    def prepare_deploy_dir(self, local: Path, files: tuple[str, ...], remote: str) -> str: ...
    def inspect(self, name: str) -> ContainerState | None: ...
    def run(self, request: RunRequest) -> None: ...
    def remove(self, name: str, stop_timeout: int = 10) -> None: ...
    def logs(self, name: str, tail: int = 30) -> str: ...
    def exec(self, name: str, argv: tuple[str, ...], *, detach: bool = False) -> ExecResult: ...
    def list_containers(self, deployment: str) -> list[ContainerState]: ...
    def cluster_view(self, name: str) -> ClusterView | None: ...
    def serving(self, name: str) -> bool: ...
    def http(self, method: str, url: str, headers: Mapping[str, str] | None = None,
             body: Any = None, timeout: float = 10) -> HttpResult: ...
    def close(self) -> None: ...


def dockerfile_for(context: Path, base: str | None) -> str:
    """The Dockerfile to build: the deployment's own, its FROM swapped when ``base`` is given."""
    text = (context / "Dockerfile").read_text(encoding="utf-8")
    if base:
        text, count = _FROM.subn(f"FROM {base}", text, count=1)
        if not count:
            raise ValueError(f"{context / 'Dockerfile'} has no FROM line to swap")
    return text


def image_hash(dockerfile: str) -> str:
    return hashlib.sha256(dockerfile.encode()).hexdigest()[:16]


def http_request(method: str, url: str, headers: Mapping[str, str] | None = None, body: Any = None,
                 timeout: float = 10) -> HttpResult:
    """One HTTP request with the standard library; never raises for HTTP or connection errors."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpResult(response.status, response.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        return HttpResult(exc.code, exc.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return HttpResult(0, str(reason))


def parse_cluster_view(output: str) -> ClusterView | None:
    for line in reversed(output.strip().splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "gpus" in data:
            return ClusterView(float(data["gpus"]), tuple(data.get("nodes", ())))
    return None


# --- the Docker SDK ---------------------------------------------------------------------------


class DockerSdkExecutor:
    """A node's Docker engine through the docker SDK; its host through ``host``."""

    concurrent = True

    def __init__(self, node: str, endpoint: str | None, host: hosts.Host | None = None, *, timeout: int = 1800):
        self.node = node
        self.endpoint = endpoint
        self.host = host or hosts.for_endpoint(endpoint)
        self._timeout = timeout
        self._client: Any = None

    # the client is made on first use: constructing it already talks to the engine
    def _docker(self) -> Any:
        if self._client is None:
            import docker

            try:
                self._client = docker.DockerClient(
                    base_url=self.endpoint or hosts.default_endpoint(),
                    timeout=self._timeout,
                    use_ssh_client=bool(self.endpoint and self.endpoint.startswith("ssh://")),
                )
            except docker.errors.DockerException as exc:
                raise EngineError(str(exc)) from exc
        return self._client

    def _call(self, fn: Callable[[], Any]) -> Any:
        import docker
        import requests

        try:
            return fn()
        except docker.errors.APIError as exc:
            raise EngineError(exc.explanation or str(exc)) from exc
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EngineError(str(exc)) from exc

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def ping(self) -> EngineInfo:
        self._client = None  # after a daemon restart the old connection is gone
        version = self._call(lambda: self._docker().version())
        info = self._call(lambda: self._docker().info())
        return EngineInfo(version.get("Version", "?"), version.get("ApiVersion", "?"),
                          tuple(sorted((info.get("Runtimes") or {}).keys())))

    def read_daemon_json(self) -> str | None:
        return self.host.read_text(self.host.daemon_json_path)

    def write_daemon_json(self, text: str, backup: str | None) -> None:
        self.host.replace_text(self.host.daemon_json_path, text, backup)

    def restart_daemon(self) -> None:
        self.close()
        out = self.host.run(list(self.host.restart_command), timeout=300)
        if out.rc != 0:
            raise EngineError(f"{shlex.join(self.host.restart_command)} failed (exit {out.rc}): "
                              f"{(out.stderr or out.stdout).strip()}")

    def gpu_count(self) -> int | None:
        try:
            out = self.host.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], timeout=60)
        except hosts.NoHostAccess:
            return None
        if out.rc != 0:
            return None
        return len([line for line in out.stdout.splitlines() if line.strip()])

    def image_labels(self, tag: str) -> dict[str, str] | None:
        import docker

        try:
            image = self._docker().images.get(tag)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            raise EngineError(exc.explanation or str(exc)) from exc
        return dict(image.labels or {})

    def build_image(self, context: Path, tag: str, dockerfile: str, labels: dict[str, str],
                    on_line: Callable[[str], None]) -> None:
        archive = _context_tar(context, dockerfile)
        tail: list[str] = []

        def build() -> None:
            stream = self._docker().api.build(
                fileobj=archive, custom_context=True, tag=tag, labels=labels, rm=True, forcerm=True,
                decode=True, network_mode="host",
            )
            for event in stream:
                if "error" in event:
                    raise EngineError(event["error"].strip() + ("\n" + "\n".join(tail) if tail else ""))
                line = (event.get("stream") or "").rstrip()
                if not line and event.get("status") and not event.get("progressDetail"):
                    line = f"{event['status']} {event.get('id', '')}".strip()
                if line:
                    tail[:] = (tail + [line])[-20:]
                    if line.startswith(("Step ", "Pulling", "Status:", "Successfully")):
                        on_line(line)

        self._call(build)

    def prepare_deploy_dir(self, local: Path, files: tuple[str, ...], remote: str) -> str:
        if hosts.is_local(self.host):
            return str(local.resolve())
        self.host.put_files(remote, {name: (local / name).read_bytes() for name in files})
        return remote

    def _get(self, name: str) -> Any:
        import docker

        try:
            return self._docker().containers.get(name)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            raise EngineError(exc.explanation or str(exc)) from exc

    @staticmethod
    def _state(container: Any) -> ContainerState:
        state = container.attrs.get("State", {})
        return ContainerState(
            name=container.name,
            status=state.get("Status", container.status),
            exit_code=state.get("ExitCode"),
            labels=dict(container.labels or {}),
            image=container.attrs.get("Config", {}).get("Image", ""),
        )

    def inspect(self, name: str) -> ContainerState | None:
        container = self._get(name)
        return None if container is None else self._state(container)

    def run(self, request: RunRequest) -> None:
        try:
            self._call(lambda: self._docker().containers.run(**self._run_kwargs(request)))
        except EngineError:
            # created but never started (no GPU driver, no such binary): leave nothing half-made behind
            leftover = self._get(request.container.name)
            if leftover is not None and leftover.status == "created":
                self._call(lambda: leftover.remove(force=True))
            raise

    def _run_kwargs(self, request: RunRequest) -> dict[str, Any]:
        from docker.types import DeviceRequest, Ulimit

        c = request.container
        home = self.host.home() if any(m.anchor == "home" for m in c.mounts) else ""
        kwargs: dict[str, Any] = {
            "image": c.image,
            "name": c.name,
            "entrypoint": [c.entrypoint],
            "command": list(c.command),
            "detach": True,
            "labels": request.labels,
            "network_mode": c.network_mode,
            "environment": {**dict(c.env), **{s.name: request.secrets[s.name] for s in c.secrets}},
            "volumes": [f"{request.resolve(m, home)}:{m.target}:{'ro' if m.read_only else 'rw'}" for m in c.mounts],
        }
        if request.gpus and c.gpus:
            count = -1 if c.gpus == "all" else None
            if c.gpus.isdigit():
                count = int(c.gpus)
            ids = c.gpus.removeprefix("device=").split(",") if c.gpus.startswith("device=") else None
            kwargs["device_requests"] = [DeviceRequest(count=count if ids is None else None, device_ids=ids,
                                                       capabilities=[["gpu"]])]
        if c.ports:
            kwargs["ports"] = {f"{inner}/tcp": host for host, inner in c.ports}
        if c.ipc_host:
            kwargs["ipc_mode"] = "host"
        if c.shm_size:
            kwargs["shm_size"] = c.shm_size
        if c.devices:
            kwargs["devices"] = [f"{d}:{d}:rwm" for d in c.devices]
        if c.cap_add:
            kwargs["cap_add"] = list(c.cap_add)
        if c.ulimits:
            kwargs["ulimits"] = [Ulimit(name=n, soft=s, hard=h) for n, s, h in c.ulimits]
        if c.restart != "no":
            kwargs["restart_policy"] = {"Name": c.restart}
        return kwargs

    def remove(self, name: str, stop_timeout: int = 10) -> None:
        container = self._get(name)
        if container is None:
            return
        if container.status == "running":
            self._call(lambda: container.stop(timeout=stop_timeout))
        self._call(lambda: container.remove(force=True))

    def logs(self, name: str, tail: int = 30) -> str:
        container = self._get(name)
        if container is None:
            return ""
        return self._call(lambda: container.logs(tail=tail)).decode("utf-8", "replace")

    def exec(self, name: str, argv: tuple[str, ...], *, detach: bool = False) -> ExecResult:
        container = self._get(name)
        if container is None:
            raise EngineError(f"no container {name}")
        result = self._call(lambda: container.exec_run(list(argv), detach=detach))
        output = result.output.decode("utf-8", "replace") if isinstance(result.output, bytes) else ""
        return ExecResult(result.exit_code, output)

    def list_containers(self, deployment: str) -> list[ContainerState]:
        found = self._call(lambda: self._docker().containers.list(
            all=True, filters={"label": f"io.vllmgen.deployment={deployment}"}))
        return sorted((self._state(c) for c in found), key=lambda s: s.name)

    def cluster_view(self, name: str) -> ClusterView | None:
        result = self.exec(name, ("python3", "-c", RAY_PROBE))
        return parse_cluster_view(result.output) if result.rc == 0 else None

    def serving(self, name: str) -> bool:
        result = self.exec(name, ("python3", "-c", SERVING_PROBE))
        return result.rc == 0 and bool(result.output.strip())

    def http(self, method: str, url: str, headers: Mapping[str, str] | None = None, body: Any = None,
             timeout: float = 10) -> HttpResult:
        return http_request(method, url, headers, body, timeout)


def _context_tar(context: Path, dockerfile: str) -> io.BytesIO:
    """The deployment folder as a build context, with ``dockerfile`` as its Dockerfile."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(context.rglob("*")):
            relative = path.relative_to(context).as_posix()
            if relative == "Dockerfile" or not path.is_file():
                continue
            tar.add(path, arcname=relative)
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


# --- dry run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    node: str
    op: str
    detail: str = ""


@dataclass
class Recorder:
    """The calls of every DryRunExecutor that shares it, in order; and where their commands go."""

    stream: TextIO | None = None
    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _last_node: str | None = None

    def record(self, node: str, op: str, detail: str = "", command: str | None = None) -> None:
        with self._lock:
            self.calls.append(Call(node, op, detail))
            if command is None:
                return
            stream = self.stream or sys.stdout
            if node != self._last_node:
                print(f"\n# --- node {node}", file=stream)
                self._last_node = node
            print(command, file=stream, flush=True)


class DryRunExecutor:
    """Prints the ``docker`` commands equivalent to each operation and records them; changes nothing.

    Probes are answered as a healthy deployment would answer them (``assume_*``), so the whole
    step sequence prints. ``containers`` and ``images`` seed what already exists (for tests of
    the unchanged/replaced decisions).
    """

    concurrent = False  # one node after another: the printed script reads top to bottom

    def __init__(self, node: str, endpoint: str | None, recorder: Recorder, *, host: hosts.Host | None = None,
                 assume_cluster: ClusterView | None = None, assume_served: str = "",
                 assume_api_key: bool = False, containers: dict[str, ContainerState] | None = None,
                 images: dict[str, dict[str, str]] | None = None):
        self.node = node
        self.endpoint = endpoint
        self.host = host or hosts.for_endpoint(endpoint)
        self.recorder = recorder
        self.assume_cluster = assume_cluster
        self.assume_served = assume_served
        self.assume_api_key = assume_api_key
        self.containers = dict(containers or {})
        self.images = dict(images or {})
        self.served: set[str] = set()  # containers where a dry-run `vllm serve` was started

    def _on_host(self, argv: list[str] | tuple[str, ...]) -> str:
        """A command run on the node's host: directly, or through ssh."""
        if isinstance(self.host, hosts.SshHost):
            return shlex.join(self.host.ssh_argv(list(argv)))
        return shlex.join(argv)

    def _docker(self, *words: Word) -> str:
        host = ("--host", self.endpoint) if self.endpoint else ()
        return join_words(["docker", *host, *words])

    def _record(self, op: str, detail: str = "", command: str | None = None) -> None:
        self.recorder.record(self.node, op, detail, command)

    def close(self) -> None:
        pass

    def ping(self) -> EngineInfo:
        self._record("ping", command=self._docker("version"))
        return EngineInfo("dry-run", "dry-run")

    def read_daemon_json(self) -> str | None:
        self._record("read-daemon-json", self.host.daemon_json_path)
        if hosts.is_local(self.host):  # reading changes nothing: show the real merge
            return self.host.read_text(self.host.daemon_json_path)
        return None

    def write_daemon_json(self, text: str, backup: str | None) -> None:
        path = self.host.daemon_json_path
        copy = f"cp -p {shlex.quote(path)} {shlex.quote(backup)}\n" if backup else ""
        self._record("write-daemon-json", path,
                     f"{copy}cat > {shlex.quote(path)} <<'EOF'\n{text.rstrip()}\nEOF")

    def restart_daemon(self) -> None:
        self._record("restart-daemon", command=self._on_host(self.host.restart_command))

    def gpu_count(self) -> int | None:
        self._record("gpu-count", command=self._on_host(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"]))
        return None

    def image_labels(self, tag: str) -> dict[str, str] | None:
        self._record("image-inspect", tag)
        return self.images.get(tag)

    def build_image(self, context: Path, tag: str, dockerfile: str, labels: dict[str, str],
                    on_line: Callable[[str], None]) -> None:
        label_words = [w for key, value in sorted(labels.items()) for w in ("--label", f"{key}={value}")]
        own = (context / "Dockerfile").read_text(encoding="utf-8") if (context / "Dockerfile").exists() else None
        if own == dockerfile:
            command = self._docker("build", "--network", "host", "--tag", tag, *label_words, str(context))
        else:  # the FROM line was swapped: feed the changed Dockerfile on stdin
            base = _FROM.search(dockerfile)
            original = shlex.quote(str(context / "Dockerfile"))
            swap = f"sed '0,/^FROM /s|^FROM .*|{base.group(0) if base else ''}|' {original}"
            command = swap + " | " + self._docker("build", "--network", "host", "--tag", tag, *label_words,
                                                  "--file", "-", str(context))
        self._record("build", tag, command)
        self.images[tag] = dict(labels)

    def prepare_deploy_dir(self, local: Path, files: tuple[str, ...], remote: str) -> str:
        if hosts.is_local(self.host):
            return str(local.resolve())
        assert isinstance(self.host, hosts.SshHost)
        for name in files:
            argv = self.host.ssh_argv(["sh", "-c", 'mkdir -p -- "$1" && cat > "$1/$2"', "vllmgen", remote, name])
            self._record("put-file", f"{remote}/{name}", f"{shlex.join(argv)} < {shlex.quote(str(local / name))}")
        return remote

    def inspect(self, name: str) -> ContainerState | None:
        self._record("inspect", name)
        return self.containers.get(name)

    def run(self, request: RunRequest) -> None:
        container = request.planned()
        words = [_deploy_dir_resolved(word, request.deploy_dir) for word in run_argv(container)]
        if self.endpoint:
            words[1:1] = ["--host", self.endpoint]
        secrets = ", ".join(s.name for s in container.secrets)
        note = f"# passes {secrets} from the environment (values are never printed)\n" if secrets else ""
        self._record("run", container.name, note + join_words(words))
        self.containers[container.name] = ContainerState(container.name, "running", None, request.labels,
                                                         container.image)

    def remove(self, name: str, stop_timeout: int = 10) -> None:
        self._record("remove", name, self._docker("stop", "--time", str(stop_timeout), name) + " && "
                     + self._docker("rm", name))
        self.containers.pop(name, None)

    def logs(self, name: str, tail: int = 30) -> str:
        self._record("logs", name)
        return ""

    def exec(self, name: str, argv: tuple[str, ...], *, detach: bool = False) -> ExecResult:
        words = ["exec", *(("--detach",) if detach else ()), name, *argv]
        self._record("exec-detached" if detach else "exec", f"{name}: {argv[0]}", self._docker(*words))
        if detach and "vllm" in argv and "serve" in argv:
            self.served.add(name)
        return ExecResult(None if detach else 0, "")

    def list_containers(self, deployment: str) -> list[ContainerState]:
        command = self._docker("ps", "--all", "--filter", f"label=io.vllmgen.deployment={deployment}")
        self._record("list", deployment, command)
        return [state for state in self.containers.values() if state.labels.get("io.vllmgen.deployment") == deployment]

    def cluster_view(self, name: str) -> ClusterView | None:
        self._record("cluster-view", name, self._docker("exec", name, "python3", "-c", RAY_PROBE))
        return self.assume_cluster

    def serving(self, name: str) -> bool:
        self._record("serving", name, self._docker("exec", name, "python3", "-c", SERVING_PROBE))
        return name in self.served

    def http(self, method: str, url: str, headers: Mapping[str, str] | None = None, body: Any = None,
             timeout: float = 10) -> HttpResult:
        words = ["curl", "-sS", "-X", method]
        authorized = any(key.lower() == "authorization" for key in (headers or {}))
        if authorized:  # the value is a secret: print where it comes from instead
            words.append('-H "Authorization: Bearer ${VLLM_API_KEY}"')
        if body is not None:
            words += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
        command = " ".join(w if w.startswith("-H \"Auth") else shlex.quote(w) for w in [*words, url])
        path = url.split("/", 3)[-1] if url.count("/") >= 3 else ""
        unauthenticated = " (no key)" if path.startswith("v1") and not authorized else ""
        self._record("http", f"{method} /{path}{unauthenticated}", command)
        if path.startswith("v1") and self.assume_api_key and not authorized:
            return HttpResult(401, '{"error": "Unauthorized"}')
        if path == "v1/models":
            return HttpResult(200, json.dumps({"data": [{"id": self.assume_served}]}))
        if path.startswith("v1/chat"):
            return HttpResult(200, json.dumps({"choices": [{"message": {"content": "(dry run)"}}]}))
        return HttpResult(200, "")


def _deploy_dir_resolved(word: Word, deploy_dir: str) -> Word:
    """Keep ``"${HOME}"`` as the host's shell would see it; the deployment folder is known here."""
    if isinstance(word, Anchored) and word.anchor == "deploy_dir":
        return word.resolve("", deploy_dir)
    return word
