"""The exposure probes against real HTTP servers on loopback: one guarded as vLLM guards itself (the
/v1 prefix only), one guarded on every path (as the front door is), and one that redirects."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vllmgen.runner import keyless
from vllmgen.runner.http import DirectHttp
from vllmgen.runner.progress import Progress
from vllmgen.runner.verify import refused_without_key
from vllmgen.errors import RunnerError

KEY = "k-test-123"


class _Http:
    """The control side's HTTP client, recording what it sends."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict]] = []

    def request(self, method, url, headers=None, body=None, timeout=10):  # noqa: ANN001, ANN201
        self.calls.append((method, url, dict(headers or {})))
        return DirectHttp().request(method, url, headers, body, timeout)


def _server(guard: str) -> Iterator[str]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # noqa: ANN002
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            self.rfile.read(length)
            seen.append(self.path)
            keyed = self.headers.get("Authorization") == f"Bearer {KEY}"
            guarded = guard == "every path" or (guard == "v1 prefix" and self.path.startswith("/v1"))
            if guarded and not keyed:
                status = 401
            elif self.path in ("/add_worker", "/remove_worker"):
                status = 400  # vllm-router without ?url=: the path is open
            else:
                status = 200
            body = {"data": [{"id": "tiny"}]} if self.path == "/v1/models" else {
                "choices": [{"message": {"content": "hi"}, "text": "hi"}]}
            data = json.dumps(body if status == 200 else {"error": status}).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def prefix_guarded() -> Iterator[str]:
    yield from _server("v1 prefix")


@pytest.fixture
def fully_guarded() -> Iterator[str]:
    yield from _server("every path")


def test_a_server_guarded_like_vllm_is_open_on_its_other_paths(prefix_guarded: str) -> None:
    found = keyless.without_key(_Http(), prefix_guarded, "tiny")
    open_paths = {f.probe.path for f in found.fatal}
    assert {"/invocations", "/tokenize", "/detokenize", "/add_worker", "/remove_worker",
            "/scale_elastic_ep"} <= open_paths
    assert "/v1/chat/completions" not in open_paths and "/v1/models" not in open_paths
    assert {f.probe.path for f in found.leaks} == {"/metrics", "/openapi.json", "/get_server_info"}  # reported, not fatal
    with pytest.raises(RunnerError) as raised:
        refused_without_key(_Http(), "n0", (prefix_guarded,), "tiny")
    assert "OPEN: POST /invocations HTTP 200" in str(raised.value)
    assert "POST /add_worker HTTP 400" in str(raised.value)  # an open router path answers 400


def test_a_server_guarded_on_every_path_passes(fully_guarded: str) -> None:
    http = _Http()
    lines = refused_without_key(http, "n0", (fully_guarded, fully_guarded), "tiny")
    probes = keyless.unauthenticated_probes("tiny")
    assert lines == [f"without the API key at {fully_guarded}: {len(probes)} of {len(probes)} paths refused"]
    assert len(http.calls) == len(probes)  # the same URL twice is probed once
    assert all("Authorization" not in headers for _, _, headers in http.calls)
    assert keyless.with_key(http, fully_guarded, "tiny", KEY) == []


def test_closed_means_refused_not_found_or_no_answer() -> None:
    probe = keyless.Probe("POST", "/invocations", "inference")
    for status, is_open in ((401, False), (403, False), (404, False), (0, False),
                            (200, True), (302, True), (400, True), (422, True), (502, True)):
        assert keyless.Finding("u", probe, status, "").open is is_open, status


def test_admin_probes_change_nothing_on_an_open_router() -> None:
    """An open vllm-router adds the worker named by ?url=; the probes never name one."""
    admin = [p for p in keyless.unauthenticated_probes("tiny") if p.kind == "admin"]
    assert {p.path for p in admin} >= {"/add_worker", "/remove_worker"}
    assert all("?" not in p.path and not p.body for p in admin)


def test_inference_probes_ask_for_one_token() -> None:
    for probe in keyless.unauthenticated_probes("tiny"):
        if probe.kind == "inference" and isinstance(probe.body, dict):
            assert probe.body.get("max_tokens", probe.body.get("max_output_tokens", 1)) == 1


def test_verify_says_what_passed_before_it_fails(prefix_guarded: str) -> None:
    import io

    from vllmgen.plan.plan import Endpoint
    from vllmgen.runner.verify import verify

    out = io.StringIO()
    host, port = prefix_guarded.removeprefix("http://").split(":")
    with pytest.raises(RunnerError):
        verify(_Http(), "n0", Endpoint(host, int(port), "tiny", None), KEY, Progress(out))
    text = out.getvalue()
    assert "a text completion answered" in text and KEY not in text
