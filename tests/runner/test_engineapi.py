"""The Docker Engine API without the docker SDK (targets/docker/engineapi.py), against a stand-in engine
on a unix socket that answers as dockerd 20.10 does: the executor's read verbs give what the SDK gave, over
one kept-alive connection; a container is created, started, followed and removed; none of it imports the SDK."""

from __future__ import annotations

import hashlib
import json
import socketserver
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from vllmgen.bundle import archive
from vllmgen.runner import host as hosts
from vllmgen.runner.executor import EngineError
from vllmgen.targets.docker import engineapi
from vllmgen.targets.docker.sdk import DockerSdkExecutor, ImageStreams

ROOT = Path(__file__).resolve().parents[2]
RUNNING = {"Id": "abc123", "Name": "/vg-head", "State": {"Status": "running", "ExitCode": 0,
                                                          "StartedAt": "2026-12-03T10:00:00.123456789Z"},
           "Config": {"Labels": {"io.vllmgen.deployment": "vg", "io.vllmgen.node": "head"}, "Image": "vllmgen/vg:1",
                      "Tty": False}}
EXITED = {"Id": "def456", "Name": "/vg-worker", "State": {"Status": "exited", "ExitCode": 137, "StartedAt": ""},
          "Config": {"Labels": {"io.vllmgen.deployment": "vg"}, "Image": "vllmgen/vg:1", "Tty": False}}


ARCHIVE = b"".join(i.to_bytes(4, "big") for i in range(80_000)) + b"tail"  # 320 KiB and 4 bytes: an image's save


def _frame(stream: int, text: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(text).to_bytes(4, "big") + text


class _Engine(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as dockerd
    seen: list[str] = []
    bodies: list = []
    connections: list[int] = []

    def setup(self) -> None:
        super().setup()
        _Engine.connections.append(1)

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass

    def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunked(self, body: bytes, whole: bool) -> None:
        """As dockerd sends `docker save`: HTTP chunks of 32 KiB; a torn one stops without the last chunk."""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for at in range(0, len(body), 32768):
            piece = body[at:at + 32768]
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        if whole:
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        _Engine.seen.append(self.path)
        containers = {"vg-head": RUNNING, "abc123": RUNNING, "vg-worker": EXITED, "def456": EXITED}
        if url.path == "/version":
            return self._answer(200, json.dumps({"Version": "20.10.24", "ApiVersion": "1.41"}).encode())
        if url.path == "/v1.41/info":
            return self._answer(200, json.dumps({"Runtimes": {"runc": {}, "nvidia": {}}}).encode())
        if url.path == "/v1.41/containers/json":
            assert query["all"] == ["1"]
            label = json.loads(query["filters"][0])["label"][0]
            listed = [{"Id": c["Id"]} for c in (RUNNING, EXITED) if label in {f"{k}={v}" for k, v in c["Config"]["Labels"].items()}]
            return self._answer(200, json.dumps(listed).encode())
        if url.path == "/v1.41/containers/vg-busy/json":
            return self._answer(500, b'{"message":"the stand-in engine does not know this"}\n')
        if url.path.startswith("/v1.41/containers/") and url.path.endswith("/json"):
            found = containers.get(url.path.split("/")[3])
            if found is None:
                return self._answer(404, b'{"message":"No such container: x"}\n')
            return self._answer(200, json.dumps(found).encode())
        if url.path == "/v1.41/containers/abc123/logs":
            assert query["tail"] == ["2"] and query["stdout"] == ["1"] and query["stderr"] == ["1"]
            return self._answer(200, _frame(1, b"INFO started\n") + _frame(2, b"WARNING slow\n"),
                                "application/vnd.docker.raw-stream")
        if url.path == "/v1.41/images/vllmgen/vg:1/json":
            return self._answer(200, json.dumps({"Id": "sha256:feed", "Config": {"Labels": {"k": "v"}}, "Size": 7}).encode())
        if url.path in ("/v1.41/images/sha256:feed/get", "/v1.41/images/sha256:torn/get"):
            return self._chunked(ARCHIVE if url.path.endswith("feed/get") else ARCHIVE[:100_000], url.path.endswith("feed/get"))
        if url.path.startswith("/v1.41/images/"):
            return self._answer(404, b'{"message":"No such image: nope:1"}\n')
        if url.path == "/v1.41/containers/def456/logs" and query.get("follow") == ["1"]:
            # chunked, as dockerd streams a followed log, with frames torn across chunks; the end: it exited
            assert query["timestamps"] == ["1"]
            frames = (_frame(1, b"2026-12-03T10:00:00.1Z INFO starting\n")
                      + _frame(2, b"2026-12-03T10:00:01.2Z INFO:     Application startup complete.\n"))
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.docker.multiplexed-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (frames[:5], frames[5:30], frames[30:]):
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return None
        return self._answer(500, b'{"message":"the stand-in engine does not know this"}\n')

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Engine.seen.append(f"POST {self.path}")
        _Engine.bodies.append(json.loads(body) if body else None)
        if urlsplit(self.path).path == "/v1.41/containers/create":
            return self._answer(201, b'{"Id":"new1","Warnings":[]}\n')
        self.send_response(204)
        self.end_headers()
        return None

    def do_DELETE(self) -> None:  # noqa: N802 - http.server's name
        _Engine.seen.append(f"DELETE {self.path}")
        self.send_response(204)
        self.end_headers()


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def engine(tmp_path: Path):
    path = tmp_path / "docker.sock"
    server = _Server(str(path), _Engine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Engine.seen, _Engine.bodies, _Engine.connections = [], [], []
    executor = DockerSdkExecutor("head", f"unix://{path}", hosts.LocalHost())
    yield executor
    executor.close()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_the_read_verbs_answer_as_the_sdk_did_over_one_connection(engine: DockerSdkExecutor) -> None:
    info = engine.ping()
    assert (info.version, info.api_version, info.runtimes) == ("20.10.24", "1.41", ("nvidia", "runc"))
    head = engine.inspect("vg-head")
    assert head is not None and head.name == "vg-head" and head.running and head.image == "vllmgen/vg:1"
    assert head.labels == {"io.vllmgen.deployment": "vg", "io.vllmgen.node": "head"}
    assert engine.inspect("vg-gone") is None
    assert [(s.name, s.status, s.exit_code) for s in engine.list_containers("vg")] == [
        ("vg-head", "running", 0), ("vg-worker", "exited", 137)]
    assert engine.logs("vg-head", tail=2) == "INFO started\nWARNING slow\n"  # both streams, in order
    assert engine.logs("vg-gone") == ""
    started = engine.started_at("vg-head")
    assert started is not None and started.isoformat() == "2026-12-03T10:00:00.123456+00:00"
    assert engine.started_at("vg-worker") is None
    assert engine.image_id("vllmgen/vg:1") == "sha256:feed" and engine.image_labels("vllmgen/vg:1") == {"k": "v"}
    assert engine.image_id("nope:1") is None and engine.image_labels("nope:1") is None
    assert _Engine.seen[0] == "/version" and all(p.startswith("/v1.41/") for p in _Engine.seen[1:])
    assert len(_Engine.connections) == 1  # kept alive: one connection for every call


def test_an_engine_error_is_its_own_message(engine: DockerSdkExecutor) -> None:
    engine.ping()
    with pytest.raises(EngineError, match="^the stand-in engine does not know this$"):
        engine.inspect("vg-busy")  # a 500, not a 404: the engine's words, not "no such container"


def test_no_engine_is_named_as_the_doctor_reads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.sleep", lambda seconds: None)  # the two retries of a dropped connection
    executor = DockerSdkExecutor("head", f"unix://{tmp_path}/none.sock", hosts.LocalHost())
    with pytest.raises(EngineError) as caught:
        executor.ping()
    text = str(caught.value)
    assert text.startswith(f"cannot reach the Docker engine at unix://{tmp_path}/none.sock: ")
    assert "FileNotFoundError(2" in text  # what doctor.docker.classify_error knows as "no daemon"


def test_other_endpoints_are_refused_in_words() -> None:
    with pytest.raises(EngineError, match="vllmgen reaches a Docker engine at unix:///PATH or ssh://USER@HOST"):
        DockerSdkExecutor("head", "npipe:////./pipe/docker_engine", hosts.LocalHost()).ping()


def test_demux_joins_the_frames_in_order_and_drops_a_torn_tail() -> None:
    body = _frame(1, b"a\n") + _frame(2, b"b\n") + _frame(1, b"c")
    assert engineapi.demux(body) == b"a\nb\nc"
    assert engineapi.demux(body + b"\x01\x00\x00") == b"a\nb\nc"


def test_reading_an_engine_does_not_import_the_docker_sdk(engine: DockerSdkExecutor) -> None:
    """In a fresh interpreter: the reads of a no-op apply, and no docker, requests or urllib3 loaded."""
    socket_path = engine.endpoint
    code = (
        "import sys\n"
        "from vllmgen.runner import host as hosts\n"
        "from vllmgen.targets.docker.sdk import DockerSdkExecutor\n"
        f"e = DockerSdkExecutor('head', {socket_path!r}, hosts.LocalHost())\n"
        "e.ping(); e.inspect('vg-head'); e.list_containers('vg'); e.logs('vg-head', tail=2); e.image_id('vllmgen/vg:1')\n"
        "e.close()\n"
        "print(sorted(m for m in ('docker', 'requests', 'urllib3') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_container_is_created_started_followed_and_removed_without_the_sdk(tmp_path: Path) -> None:
    """In a fresh interpreter against the stand-in engine: run (create, then start), a container's log followed
    from a chunked stream with torn frames to its end (it exited), remove; no docker, requests or urllib3."""
    path = tmp_path / "docker.sock"
    server = _Server(str(path), _Engine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Engine.seen, _Engine.bodies, _Engine.connections = [], [], []
    code = (
        "import json, sys\n"
        "from vllmgen.runner import host as hosts\n"
        "from vllmgen.runner.watch import Watch\n"
        "from vllmgen.targets.docker.sdk import DockerSdkExecutor\n"
        "from vllmgen.targets.docker import dockerargs\n"
        f"e = DockerSdkExecutor('head', 'unix://{path}', hosts.LocalHost())\n"
        "e._create_request = lambda request: dockerargs.create_request(\n"
        "    ['docker', 'run', '--detach', '--name', 'vg-head', '--env', 'VLLM_API_KEY', 'img', 'serve'],\n"
        "    {'VLLM_API_KEY': 'k-secret'})\n"
        "e.run(None)\n"
        "follow = e.follow('vg-worker')\n"
        "watch = Watch('worker', 'vg-worker', follow)\n"
        "import time\n"
        "deadline = time.monotonic() + 20\n"
        "while not watch.ended and time.monotonic() < deadline:\n"
        "    watch.pump(); time.sleep(0.05)\n"
        "e.remove('vg-worker')\n"
        "e.close()\n"
        "print(json.dumps({'lines': watch.lines, 'ready': watch.ready_at is not None, 'ended': watch.ended,\n"
        "                  'sdk': sorted(m for m in ('docker', 'requests', 'urllib3') if m in sys.modules)}))\n"
    )
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                                check=False)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer == {"lines": ["INFO starting", "INFO:     Application startup complete."], "ready": True,
                      "ended": True, "sdk": []}
    assert [s for s in _Engine.seen if s.startswith(("POST", "DELETE"))] == [
        "POST /v1.41/containers/create?name=vg-head", "POST /v1.41/containers/new1/start",
        "DELETE /v1.41/containers/def456?force=1"]  # the exited worker: removed, not stopped first
    created = _Engine.bodies[0]
    assert created["Image"] == "img" and created["Cmd"] == ["serve"] and created["Env"] == ["VLLM_API_KEY=k-secret"]
    assert created["AttachStdout"] is False and created["HostConfig"]["RestartPolicy"] == {"Name": "no",
                                                                                         "MaximumRetryCount": 0}


def test_an_image_save_is_read_from_the_engine_api_into_parts(engine: DockerSdkExecutor, tmp_path: Path) -> None:
    streams = ImageStreams(engine)
    writer = archive.Writer(tmp_path / "bundle", 100_000, archive.Progress(lambda line: None))
    source = archive.Source(archive.Item("image", "image", "sha256:feed", None), stream=lambda: streams.save("sha256:feed"))
    writer.write(source)
    parts = [(tmp_path / "bundle" / p.file).read_bytes() for p in source.item.parts]
    assert b"".join(parts) == ARCHIVE and [len(p) for p in parts] == [100_000, 100_000, 100_000, 20_004]
    assert [p.sha256 for p in source.item.parts] == [hashlib.sha256(p).hexdigest() for p in parts]
    assert source.item.size == len(ARCHIVE)
    assert "/v1.41/images/sha256:feed/get" in _Engine.seen
    with pytest.raises(EngineError, match="^docker save sha256:torn broke off: .*IncompleteRead"):
        archive.Writer(tmp_path / "torn", 100_000, archive.Progress(lambda line: None)).write(
            archive.Source(archive.Item("image", "image", "sha256:torn", None), stream=lambda: streams.save("sha256:torn")))
    with pytest.raises(EngineError, match="^No such image: nope:1$"):
        streams.save("sha256:nope")
