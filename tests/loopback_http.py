"""A real HTTP server on loopback for one test: ``serving(handler)`` runs it on a free port and
stops it after; ``recorder()`` is a handler class that answers 200 ``{}`` to GET and POST and keeps
each request's headers in its own ``seen`` list."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Quiet(http.server.BaseHTTPRequestHandler):
    """A handler that logs nothing (pytest shows the test's own output)."""

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


class Recorder(Quiet):
    seen: list[dict[str, str]]

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.seen.append(dict(self.headers))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    do_POST = do_GET


def recorder() -> type[Recorder]:
    """A Recorder class with a list of its own (each server sees only its requests)."""
    return type("Recorder", (Recorder,), {"seen": []})


@contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def url(server: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"
