"""``DockerSdkExecutor``: a node's Docker engine at ``unix://`` or ``ssh://user@host`` (never ``tcp://``:
``vllmgen.spec.endpoints.TCP_REFUSED``); the node's host through ``host``.

Reads (version, info, inspect, list, logs), a container's create, start, stop and removal, its log
followed, and an image's save on a local socket go through ``engineapi``; exec, build, pull and the other
image streams through the docker SDK, imported here, lazily, and nowhere else in vllmgen.
"""

from __future__ import annotations

import io
import shlex
import socket
import sys
import tarfile
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vllmgen.plan import label_names
from vllmgen.plan.plan import NodePlan, Plan
from vllmgen.runner import host as hosts
from vllmgen.runner import ssh
from vllmgen.runner.executor import (
    RAY_PROBE,
    SERVING_PROBE,
    ClusterView,
    ContainerState,
    EngineError,
    EngineInfo,
    ExecResult,
    RunRequest,
    parse_cluster_view,
)
from vllmgen.runner.watch import StreamFollow
from vllmgen.spec import endpoints
from vllmgen.targets.docker import daemon_json, dockerargs, engineapi
from vllmgen.targets.docker.commands import DockerCli

API_TIMEOUT = 60  # seconds for one API call or exec probe; a silent engine is an error, not a hang
BUILD_TIMEOUT = 3600  # a build's output may pause for long (a big pip install)
ATTEMPTS = 3  # a call whose connection dropped is tried again, twice, when repeating it is harmless


class DockerSdkExecutor:
    """A node's Docker engine through the docker SDK; its host through ``host``."""

    concurrent = True

    def __init__(self, node: str, endpoint: str | None, host: hosts.Host | None = None, *,
                 timeout: float = API_TIMEOUT):
        self.node = node
        self.endpoint = endpoint
        self.host = host or hosts.for_endpoint(endpoint)
        self.commands = DockerCli(endpoint, self.host)  # what the dry run prints for each verb
        self._timeout = timeout
        self._client: Any = None  # the docker SDK's, made when a call needs it (engineapi answers the reads)
        self._reader: engineapi.EngineApi | None = None
        self._dialer: ssh.Dialer | None = None

    @property
    def _where(self) -> str:
        return self.endpoint or hosts.default_endpoint()

    def _api(self) -> engineapi.EngineApi:
        """The read calls' client; it asks the engine its API version when made."""
        if self._reader is None:
            where = self._where
            why = endpoints.refused(where)  # DOCKER_HOST too: the spec's docker_host is validated already
            if why:
                raise EngineError(why)
            dial: Callable[[float | None], socket.socket]
            if where.startswith("ssh://"):
                self._dialer = ssh.Dialer(endpoints.parse(where))
                dial = self._dialer.dial
            elif where.startswith("unix://"):
                dial = engineapi.unix_dialer(where.removeprefix("unix://"))
            else:
                raise EngineError(f"{where}: vllmgen reaches a Docker engine at unix:///PATH or ssh://USER@HOST")
            reader = engineapi.EngineApi(dial, self._timeout)
            self._reader = reader
            reader.ask_version()  # kept as reader.answered_version for ping
        return self._reader

    def _docker(self) -> Any:
        """The docker SDK's client, on the same engine, connection and API version as ``_api``."""
        if self._client is None:
            reader = self._api()
            import docker  # lazy: the runner's dependency, for what changes an engine: no-op commands never import it

            if self._dialer is not None:
                self._client = ssh.docker_client(self._dialer, self._timeout, reader.version)
            else:
                self._client = docker.DockerClient(base_url=self._where, version=reader.version, timeout=self._timeout)
                self._client.api.trust_env = False  # the engine, never a proxy from the environment
        return self._client

    def _call(self, fn: Callable[[], Any], *, retry: bool = True) -> Any:
        """``fn`` with the engine's errors as EngineError; a dropped connection tried again when ``retry``.
        The docker SDK's errors are told apart only when it is loaded: an error of it cannot happen before."""
        for attempt in range(ATTEMPTS):
            try:
                return fn()
            except EngineError:
                raise
            except Exception as exc:  # noqa: BLE001 - sorted below; anything else is raised as it is
                kind = _failure(exc)
                if kind is None:
                    raise
                if kind == "engine":
                    raise EngineError(getattr(exc, "explanation", None) or str(exc)) from exc
                if kind == "timeout":
                    self.close()
                    raise EngineError(f"the Docker engine at {self._where} did not answer within "
                                      f"{self._timeout:g}s ({exc})") from exc
                # OSError: BrokenPipeError, ConnectionResetError, a missing ssh binary
                why = self._dialer.last_error() if self._dialer else ""
                explained = ssh.explain(endpoints.parse(self._where), why) if why and self._dialer else ""
                self.close()
                if retry and not explained and attempt < ATTEMPTS - 1:
                    time.sleep(1 + attempt)
                    continue
                detail = explained or f"cannot reach the Docker engine at {self._where}: {why or exc}"
                raise EngineError(detail) from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        try:
            if self._client is not None:
                self._client.close()
        finally:
            self._client = None
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            if self._dialer is not None:
                self._dialer.close()
                self._dialer = None

    def ping(self) -> EngineInfo:
        self.close()  # after a daemon restart the old connection is gone
        version = self._call(lambda: self._api().answered_version)
        info = self._call(lambda: self._api().get("/info"))
        return EngineInfo(version.get("Version", "?"), version.get("ApiVersion", "?"),
                          tuple(sorted((info.get("Runtimes") or {}).keys())))

    def read_daemon_json(self) -> str | None:
        return self.host.read_text(self.host.daemon_json_path)

    def write_daemon_json(self, text: str, backup: str | None) -> None:
        self.host.replace_text(self.host.daemon_json_path, text, backup)

    def validate_daemon_json(self, text: str) -> tuple[bool | None, str]:
        out = self.host.run(["sh", "-c", daemon_json.VALIDATE_SCRIPT, "vllmgen"], input=text, timeout=60)
        return daemon_json.validation(out.rc, out.stdout + out.stderr)

    def restore_daemon_json(self, original: str | None) -> None:
        if original is None:
            self.host.remove(self.host.daemon_json_path)
        else:
            self.host.replace_text(self.host.daemon_json_path, original, None)

    def restart_daemon(self) -> None:
        self.close()
        out = self.host.run(list(self.host.restart_command), timeout=300)
        if out.rc != 0:
            raise EngineError(f"{shlex.join(self.host.restart_command)} failed (exit {out.rc}): "
                              f"{(out.stderr or out.stdout).strip()}")


    def image_labels(self, tag: str) -> dict[str, str] | None:
        image = self._call(lambda: self._api().image(tag))
        return None if image is None else dict((image.get("Config") or {}).get("Labels") or {})

    def image_id(self, tag: str) -> str | None:
        image = self._call(lambda: self._api().image(tag))
        return None if image is None else image.get("Id")

    def build_image(self, context: Path, tag: str, dockerfile: str, labels: dict[str, str],
                    on_line: Callable[[str], None]) -> None:
        archive = _context_tar(context, dockerfile)
        tail: list[str] = []

        def build() -> None:
            stream = self._docker().api.build(
                fileobj=archive, custom_context=True, tag=tag, labels=labels, rm=True, forcerm=True,
                decode=True, network_mode="host", timeout=BUILD_TIMEOUT,
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

        self._call(build, retry=False)

    def prepare_deploy_dir(self, local: Path, files: tuple[str, ...], remote: str) -> str:
        if hosts.is_local(self.host):
            return str(local.resolve())
        self.host.put_files(remote, {name: (local / name).read_bytes() for name in files})
        return remote

    def _get(self, name: str) -> dict[str, Any] | None:
        """The container's inspect document (``docker inspect``), None when there is none."""
        return self._call(lambda: self._api().container(name))

    def _model(self, attrs: dict[str, Any]) -> Any:
        """The docker SDK's Container for an inspect document, without asking the engine again."""
        return self._docker().containers.prepare_model(attrs)

    @staticmethod
    def _state(attrs: Mapping[str, Any]) -> ContainerState:
        state, config = attrs.get("State") or {}, attrs.get("Config") or {}
        return ContainerState(
            name=str(attrs.get("Name", "")).lstrip("/"),
            status=state.get("Status", ""),
            exit_code=state.get("ExitCode"),
            labels=dict(config.get("Labels") or {}),
            image=config.get("Image", ""),
        )

    def inspect(self, name: str) -> ContainerState | None:
        attrs = self._get(name)
        return None if attrs is None else self._state(attrs)

    def run(self, request: RunRequest) -> None:
        """``docker run --detach`` of the request, as the docker CLI sends it: create (the image pulled first
        when the engine has none, as ``docker run`` does), then start."""
        name, body = self._create_request(request)

        def create() -> str:
            try:
                return self._api().send("POST", "/containers/create", {"name": name}, body)["Id"]
            except engineapi.ApiError as exc:
                if exc.status != 404:  # 404: no such image
                    raise
            self._docker().images.pull(body["Image"])
            return self._api().send("POST", "/containers/create", {"name": name}, body)["Id"]

        created = self._call(create, retry=False)
        try:
            self._call(lambda: self._api().send("POST", f"/containers/{created}/start"), retry=False)
        except EngineError:
            # created but never started (no GPU driver, no such binary): leave nothing half-made behind
            leftover = self._get(created)
            if leftover is not None and self._state(leftover).status == "created":
                self._call(lambda: self._api().send("DELETE", f"/containers/{created}", {"force": "1"}))
            raise

    def _create_request(self, request: RunRequest) -> tuple[str, dict[str, Any]]:
        argv = dockerargs.resolve_home(dockerargs.run_words(request), self.host.home)
        return dockerargs.create_request(argv, request.secrets)

    def remove(self, name: str, stop_timeout: int = 10) -> None:
        attrs = self._get(name)
        if attrs is None:
            return
        ident = attrs["Id"]
        if self._state(attrs).running:  # the engine answers within stop_timeout (10 s), inside API_TIMEOUT
            self._call(lambda: self._api().send("POST", f"/containers/{ident}/stop", {"t": str(stop_timeout)}))
        self._call(lambda: self._api().send("DELETE", f"/containers/{ident}", {"force": "1"}))

    def logs(self, name: str, tail: int | None = 30, timestamps: bool = False) -> str:
        attrs = self._get(name)
        if attrs is None:
            return ""
        return self._call(lambda: self._api().logs(attrs, tail, timestamps)).decode("utf-8", "replace")

    def follow(self, name: str) -> StreamFollow | None:
        """The container's output from its start (the Engine API's followed log, read by a thread) and its
        end: the stream ends when the container stops."""
        if self._get(name) is None:
            return None

        def open_stream(since: float | None) -> Any:
            attrs = self._get(name)  # again: a retried call may have replaced the client
            if attrs is None:
                return iter(())
            return self._api().follow_logs(attrs, since)

        def running() -> bool:
            state = self.inspect(name)
            return state is not None and state.running

        def exit_code() -> int | None:
            state = self.inspect(name)
            return state.exit_code if state is not None else None

        return StreamFollow(open_stream, running, exit_code, name=f"follow {name}")

    def started_at(self, name: str) -> datetime | None:
        """The container's State.StartedAt (its latest start), from Docker."""
        attrs = self._get(name)
        stamp = (attrs.get("State") or {}).get("StartedAt", "") if attrs is not None else ""
        if not stamp or stamp.startswith("0001-"):  # created, never started
            return None
        head, _, frac = stamp.rstrip("Z").partition(".")
        try:
            return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}").replace(tzinfo=timezone.utc)
        except ValueError:
            return None

    def exec(self, name: str, argv: tuple[str, ...], *, detach: bool = False,
             env: Mapping[str, str] | None = None) -> ExecResult:
        attrs = self._get(name)
        if attrs is None:
            raise EngineError(f"no container {name}")
        container = self._model(attrs)
        environment = dict(env) if env else None  # in the exec's create request, never its argv
        result = self._call(lambda: container.exec_run(list(argv), detach=detach, environment=environment),
                            retry=not detach)
        output = result.output.decode("utf-8", "replace") if isinstance(result.output, bytes) else ""
        return ExecResult(result.exit_code, output)

    def list_containers(self, deployment: str) -> list[ContainerState]:
        listed = self._call(lambda: self._api().containers(f"{label_names.DEPLOYMENT}={deployment}"))
        found = [attrs for entry in listed if (attrs := self._get(entry["Id"])) is not None]  # as `docker inspect` has it
        return sorted((self._state(attrs) for attrs in found), key=lambda s: s.name)

    def cluster_view(self, name: str) -> ClusterView | None:
        result = self.exec(name, ("python3", "-c", RAY_PROBE))
        return parse_cluster_view(result.output) if result.rc == 0 else None

    def serving(self, name: str) -> bool:
        result = self.exec(name, ("python3", "-c", SERVING_PROBE))
        return result.rc == 0 and bool(result.output.strip())



def _failure(exc: Exception) -> str | None:
    """engine (it refused), timeout, connection (none, or it broke), or None (not the engine's)."""
    docker = sys.modules.get("docker")
    requests = sys.modules.get("requests")
    if isinstance(exc, engineapi.ApiError) or (docker is not None and isinstance(exc, docker.errors.APIError)):
        return "engine"
    if isinstance(exc, TimeoutError) or (requests is not None and isinstance(exc, requests.exceptions.Timeout)):
        return "timeout"
    if isinstance(exc, OSError) or (docker is not None and isinstance(exc, docker.errors.DockerException)):
        return "connection"  # requests' ConnectionError is an OSError too
    return None


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


# --- images as streams (vllmgen bundle: save on the connected machine, load on the air-gapped hosts) ---------


class ImageStreams:
    """``docker save`` / ``docker load`` / tag / pull of one engine, streamed: an image never sits in memory.

    Beside ``DockerSdkExecutor`` (which apply uses) and sharing its connection and error handling."""

    def __init__(self, executor: DockerSdkExecutor):
        self.executor = executor

    def size(self, reference: str) -> int | None:
        image = self.executor._call(lambda: self.executor._api().image(reference))
        return None if image is None else image.get("Size")

    def pull(self, reference: str) -> None:
        repository, _, tag = reference.rpartition(":") if ":" in reference.rsplit("/", 1)[-1] else (reference, "", "")
        self.executor._call(lambda: self.executor._docker().images.pull(repository, tag=tag or None), retry=False)

    def save(self, image_id: str) -> SaveStream:
        """The image's `docker save` archive, by ID (no tag inside: the bundle's manifest carries the tags),
        read into the caller's buffers as it arrives. On a local socket straight from the Engine API by
        ``http.client`` (the Docker SDK's stream of 32 KiB pieces, through requests and urllib3, cost about
        twice the CPU); over ssh the Docker SDK's stream on its ssh transport, as before."""
        if self.executor._where.startswith("unix://"):
            path = f"/images/{quote(image_id, safe=':')}/get"
            body = self.executor._call(lambda: self.executor._api().stream(path), retry=False)
            return SaveStream(image_id, body.readinto, body.close, (engineapi.Unreachable,))
        # lazy: the runner's dependencies: validate and render never import them
        import docker
        import requests

        chunks = self.executor._call(lambda: self.executor._docker().api.get_image(image_id, chunk_size=1 << 20),
                                     retry=False)
        reader = ChunkReader(chunks)
        return SaveStream(image_id, reader.readinto, reader.close,
                          (docker.errors.APIError, requests.exceptions.RequestException))

    def load(self, chunks: Iterable[bytes]) -> str:
        """`docker load` from ``chunks``; the engine's ``Loaded image ID`` (or the error it gave)."""
        def load() -> str:
            loaded = ""
            for event in self.executor._docker().api.load_image(chunks):
                if "error" in event:
                    raise EngineError(f"docker load: {event['error'].strip()}")
                text = event.get("stream") or ""
                if "Loaded image" in text:
                    loaded = text.split(":", 1)[1].strip()
            return loaded

        return self.executor._call(load, retry=False)

    def tag(self, image_id: str, reference: str) -> None:
        repository, _, tag = reference.rpartition(":") if ":" in reference.rsplit("/", 1)[-1] else (reference, "", "")
        self.executor._call(lambda: self.executor._docker().api.tag(image_id, repository, tag or "latest", force=True))


class SaveStream:
    """An image's `docker save` archive as it arrives: ``readinto(buffer)`` fills the buffer as far as the
    stream goes (0 at its end); the engine breaking off mid-stream is an EngineError naming the image."""

    def __init__(self, image_id: str, readinto: Callable[[memoryview], int], close: Callable[[], None],
                 errors: tuple[type[BaseException], ...]):
        self.image_id, self._readinto, self._close, self._errors = image_id, readinto, close, errors

    def readinto(self, buffer: memoryview) -> int:
        try:
            return self._readinto(buffer)
        except self._errors as exc:
            raise EngineError(f"docker save {self.image_id} broke off: {exc}") from exc

    def close(self) -> None:
        self._close()


class ChunkReader:
    """``readinto`` over a stream of byte strings of any size (the Docker SDK's stream over ssh)."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._rest = memoryview(b"")

    def readinto(self, buffer: memoryview) -> int:
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._rest = memoryview(chunk)
        count = min(len(buffer), len(self._rest))
        buffer[:count] = self._rest[:count]
        self._rest = self._rest[count:]
        return count

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


def engine_for(plan: Plan, node: NodePlan, endpoint: str | None, host: hosts.Host, *,
               timeout: float = API_TIMEOUT) -> DockerSdkExecutor:
    """The Docker target's engine for one node (the registry names it): its Docker at ``endpoint``."""
    return DockerSdkExecutor(node.name, endpoint, host, timeout=timeout)
