"""The Docker Engine API over ``http.client``: reads (version, info, inspect, list, logs), a container's
create, start, stop and removal, its log followed, and an image's archive.

What ``apply`` needs up to a started and followed container, and what a no-op ``apply``, ``plan``,
``status`` or ``down`` asks, without the docker SDK: importing it with ``requests`` and ``urllib3`` cost
~0.15 s of CPU per command, more than the calls themselves, and apply paid it before its container
started. An image's archive on a local socket is read here (``stream``): through the SDK it cost about
twice the client's CPU. The SDK stays for exec, build, pull, load and save over ssh, on the same
connection's dialer (``sdk.DockerSdkExecutor``). Answers are the engine's own JSON, as the SDK's
``attrs`` hold them.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

API_VERSION = "1.41"  # the oldest engine vllmgen supports (Docker 20.10); the engine's own once asked


class ApiError(Exception):
    """The engine answered with an error status; the text is its own ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Unreachable(ConnectionError):
    """No connection, or it broke mid-answer; the text names the OSError (``repr``: the doctor's classifier
    reads ``FileNotFoundError(2`` and ``PermissionError(13`` in it, as in the SDK's messages)."""


class _Connection(http.client.HTTPConnection):
    def __init__(self, dial: Callable[[float | None], socket.socket], timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._dial = dial

    def connect(self) -> None:
        self.sock = self._dial(self.timeout)


def unix_dialer(path: str) -> Callable[[float | None], socket.socket]:
    def dial(timeout: float | None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        return sock

    return dial


class EngineApi:
    """Read calls to one engine. Keep-alive connections, one per caller at a time (a follower's thread asks
    the container's state while the steps ask too), made by ``dial(timeout)``."""

    def __init__(self, dial: Callable[[float | None], socket.socket], timeout: float):
        self._dial = dial
        self._timeout = timeout
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self.version = API_VERSION
        self.answered_version: dict[str, Any] = {}

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _request(self, method: str, path: str, params: Mapping[str, Any] | None = None,
                 body: Any = None) -> tuple[int, bytes]:
        url = path + ("?" + urlencode(params) if params else "")
        headers = {"Host": "docker"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        for attempt in (0, 1):
            fresh = connection is None
            if connection is None:
                connection = _Connection(self._dial, self._timeout)
            sent = False
            try:
                connection.request(method, url, body=data, headers=headers)
                sent = True
                response = connection.getresponse()
                answer = response.read()
            except TimeoutError:
                connection.close()
                raise
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                connection = None
                # a kept connection the engine had closed: once more, anew; a change only if it was never sent
                if not fresh and attempt == 0 and (method == "GET" or not sent):
                    continue
                raise Unreachable(repr(exc.__cause__ or exc) if isinstance(exc, http.client.HTTPException)
                                  else repr(exc)) from exc
            if response.will_close:
                connection.close()
            else:
                with self._lock:
                    self._idle.append(connection)
            return response.status, answer
        raise AssertionError("unreachable")

    def get(self, path: str, params: Mapping[str, Any] | None = None, *, missing: Any = ...) -> Any:
        """GET /v<version><path> as JSON; ``missing`` is returned for a 404 when given, else ApiError."""
        status, body = self._request("GET", f"/v{self.version}{path}", params)
        if status == 404 and missing is not ...:
            return missing
        if status >= 400:
            raise ApiError(status, _message(status, body))
        return json.loads(body) if body else None

    def send(self, method: str, path: str, params: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        """``method`` /v<version><path> (a change: create, start, stop, remove); its JSON answer, or None."""
        status, answer = self._request(method, f"/v{self.version}{path}", params, body)
        if status >= 400:
            raise ApiError(status, _message(status, answer))
        return json.loads(answer) if answer else None

    def ask_version(self) -> dict[str, Any]:
        """The engine's /version (unversioned path), and its API version used from then on."""
        status, body = self._request("GET", "/version")
        if status >= 400:
            raise ApiError(status, _message(status, body))
        answer = json.loads(body)
        self.version = answer.get("ApiVersion") or API_VERSION
        self.answered_version = answer
        return answer

    def stream(self, path: str) -> Body:
        """GET /v<version><path> on a connection of its own, its body read as it arrives (never held whole):
        an image's archive, read straight into the caller's buffers."""
        return Body(*self._open(f"/v{self.version}{path}"))

    def _open(self, url: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """GET ``url`` on a connection of its own, for an answer read as it arrives (an archive, a followed
        log): the kept connections stay free for the calls made meanwhile."""
        connection = _Connection(self._dial, self._timeout)
        try:
            connection.request("GET", url, headers={"Host": "docker"})
            response = connection.getresponse()
        except TimeoutError:
            connection.close()
            raise
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise Unreachable(repr(exc)) from exc
        if response.status >= 400:
            try:
                body = response.read()
            finally:
                connection.close()
            raise ApiError(response.status, _message(response.status, body))
        return connection, response

    def container(self, name: str) -> dict[str, Any] | None:
        return self.get(f"/containers/{quote(name, safe='')}/json", missing=None)

    def image(self, reference: str) -> dict[str, Any] | None:
        return self.get(f"/images/{quote(reference, safe='/:')}/json", missing=None)

    def containers(self, label: str) -> list[dict[str, Any]]:
        """Every container (running or not) with ``label`` (``key=value``), as ``docker ps -a`` lists them."""
        return self.get("/containers/json", {"all": "1", "filters": json.dumps({"label": [label]})}) or []

    def logs(self, attrs: Mapping[str, Any], tail: int | None, timestamps: bool) -> bytes:
        """The container's output so far, stdout and stderr interleaved as written (the SDK's ``logs()``)."""
        params = {"stdout": "1", "stderr": "1", "timestamps": "1" if timestamps else "0",
                  "tail": "all" if tail is None else str(tail)}
        status, body = self._request("GET", f"/v{self.version}/containers/{quote(attrs['Id'], safe='')}/logs", params)
        if status >= 400:
            raise ApiError(status, _message(status, body))
        if (attrs.get("Config") or {}).get("Tty"):
            return body
        return demux(body)

    def follow_logs(self, attrs: Mapping[str, Any], since: float | None) -> LogStream:
        """The container's output from its start (or ``since``, seconds since the epoch), time-stamped, as
        it is written, on a connection of its own; the stream ends when the container stops."""
        params: dict[str, Any] = {"stdout": "1", "stderr": "1", "timestamps": "1", "follow": "1", "tail": "all"}
        if since:
            params["since"] = since
        connection, response = self._open(
            f"/v{self.version}/containers/{quote(attrs['Id'], safe='')}/logs?{urlencode(params)}")
        return LogStream(connection, response, bool((attrs.get("Config") or {}).get("Tty")))


class LogStream:
    """A followed log: its chunks of output (each frame's text; a TTY's bytes as they come) until the
    engine ends it; ``close`` ends it from another thread."""

    def __init__(self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse, tty: bool):
        self._connection = connection
        self._response = response
        self._tty = tty
        self._buffer = b""

    def __iter__(self) -> LogStream:
        return self

    def _more(self) -> bool:
        data = self._response.read1(65536)  # what has come, without waiting for more
        self._buffer += data
        return bool(data)

    def __next__(self) -> bytes:
        if self._tty:
            if not self._buffer and not self._more():
                raise StopIteration
            data, self._buffer = self._buffer, b""
            return data
        while len(self._buffer) < 8:
            if not self._more():
                raise StopIteration
        size = int.from_bytes(self._buffer[4:8], "big")
        while len(self._buffer) < 8 + size:
            if not self._more():
                raise StopIteration
        data, self._buffer = self._buffer[8:8 + size], self._buffer[8 + size:]
        return data

    def close(self) -> None:
        sock = self._connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the reading thread
            except OSError:
                pass
        self._connection.close()


class Body:
    """A streamed answer's body; ``readinto`` decodes HTTP's chunks into the caller's buffer (0 at the end)."""

    def __init__(self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse):
        self._connection, self._response = connection, response

    def readinto(self, buffer: memoryview) -> int:
        try:
            return self._response.readinto(buffer)
        except TimeoutError:
            raise
        except (OSError, http.client.HTTPException) as exc:  # the engine went away, or ended the stream early
            raise Unreachable(repr(exc)) from exc

    def close(self) -> None:
        self._response.close()
        self._connection.close()


def demux(body: bytes) -> bytes:
    """A non-TTY log stream's frames (8-byte header: stream, 3 zero bytes, big-endian length) as one text."""
    out, at = bytearray(), 0
    while at + 8 <= len(body):
        size = int.from_bytes(body[at + 4:at + 8], "big")
        out += body[at + 8:at + 8 + size]
        at += 8 + size
    return bytes(out)


def _message(status: int, body: bytes) -> str:
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and answer.get("message"):
        return str(answer["message"])
    return f"{status} {body.decode('utf-8', 'replace').strip()[:200]}"
