"""What a client without the API key can reach (keyless probes): every client, engine and admin path.

vLLM's own key check covers path prefixes only (``/v1``): ``/invocations`` serves a completion,
``/tokenize`` and ``/metrics`` answer, and vllm-router's ``/add_worker`` re-routes traffic (with the
clients' keys) to whoever asks. So "a request without the key is refused" is only true when every
path is refused, and that is what this module checks, from where the runner stands.

Probes are real requests shaped to succeed if the path is open (a one-token completion), so an
answer means exposure, not a guess; the admin probes carry no ``url`` parameter, so an open router
answers 400 and changes nothing (vllm-router 0.1.17: "missing field `url`"), and the router's
surface is read with ``GET /list_workers``, never with ``POST /flush_cache``, which acts. A path
counts as closed when it answers 401, 403 or 404, or does not answer at all; any other answer (2xx,
3xx, 400, 422, 5xx) means the request got past the door.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vllmgen.runner.http import HttpClient, HttpResult

Kind = Literal["inference", "admin", "info"]
CLOSED = frozenset({401, 403, 404})


@dataclass(frozen=True)
class Probe:
    method: str
    path: str
    kind: Kind
    body: Any = None


@dataclass(frozen=True)
class Finding:
    url: str
    probe: Probe
    status: int  # 0: no answer
    detail: str

    @property
    def open(self) -> bool:
        return self.status != 0 and self.status not in CLOSED

    def line(self) -> str:
        answer = f"HTTP {self.status}" if self.status else "no answer"
        return f"{self.probe.method} {self.probe.path} {answer}"


def _chat(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def unauthenticated_probes(model: str) -> tuple[Probe, ...]:
    """Every path a client without the key must not get past: inference (OpenAI and vLLM's own),
    engine and router administration, and what leaks information."""
    completion = {"model": model, "prompt": "hi", "max_tokens": 1}
    return (
        Probe("GET", "/v1/models", "info"),
        Probe("POST", "/v1/chat/completions", "inference", _chat(model)),
        Probe("POST", "/v1/completions", "inference", completion),
        Probe("POST", "/v1/embeddings", "inference", {"model": model, "input": "hi"}),
        Probe("POST", "/v1/responses", "inference", {"model": model, "input": "hi", "max_output_tokens": 1}),
        Probe("POST", "/invocations", "inference", _chat(model)),
        Probe("POST", "/tokenize", "inference", {"model": model, "prompt": "hi"}),
        Probe("POST", "/detokenize", "inference", {"model": model, "tokens": [1]}),
        Probe("POST", "/pooling", "inference", {"model": model, "input": "hi"}),
        Probe("POST", "/add_worker", "admin"),  # no url=: an open router answers 400 and adds nothing
        Probe("POST", "/remove_worker", "admin"),
        Probe("GET", "/list_workers", "admin"),  # the router's admin surface, read-only (POST /flush_cache acts)
        Probe("POST", "/scale_elastic_ep", "admin", {}),
        Probe("POST", "/v1/load_lora_adapter", "admin", {}),
        Probe("POST", "/reset_prefix_cache", "admin"),
        Probe("GET", "/metrics", "info"),
        Probe("GET", "/openapi.json", "info"),
        Probe("GET", "/get_server_info", "info"),
    )


def authenticated_probes(model: str) -> tuple[Probe, ...]:
    """The client API a caller with the key must get (a one-token answer each)."""
    return (
        Probe("GET", "/health", "info"),
        Probe("GET", "/v1/models", "info"),
        Probe("POST", "/v1/chat/completions", "inference", _chat(model)),
        Probe("POST", "/v1/completions", "inference", {"model": model, "prompt": "hi", "max_tokens": 1}),
    )


def probe(http: HttpClient, url: str, probes: tuple[Probe, ...],
          headers: Mapping[str, str] | None = None) -> list[Finding]:
    out = []
    for one in probes:
        result: HttpResult = http.request(one.method, f"{url}{one.path}", headers, one.body, timeout=30)
        out.append(Finding(url, one, result.status, " ".join(result.body.split())[:120]))
    return out


@dataclass(frozen=True)
class Exposure:
    """What a client without the key got at one URL; ``fatal`` are the open inference/admin paths."""

    url: str
    findings: tuple[Finding, ...]
    metrics_allowed: bool = False  # /metrics may answer the monitoring address, which may be ours

    @property
    def fatal(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.open and (f.probe.kind != "info" or f.probe.path == "/v1/models"))

    @property
    def leaks(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.open and f not in self.fatal)

    def summary(self) -> str:
        closed = [f for f in self.findings if not f.open]
        text = f"without the API key at {self.url}: {len(closed)} of {len(self.findings)} paths refused"
        if self.fatal:
            text += "; OPEN: " + ", ".join(f.line() for f in self.fatal)
        if self.leaks:
            text += "; readable: " + ", ".join(f.line() for f in self.leaks)
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url,
                "paths": {f"{f.probe.method} {f.probe.path}": f.status or "no answer" for f in self.findings},
                "open": [f"{f.probe.method} {f.probe.path}" for f in self.fatal],
                "readable": [f"{f.probe.method} {f.probe.path}" for f in self.leaks]}


def without_key(http: HttpClient, url: str, model: str) -> Exposure:
    return Exposure(url, tuple(probe(http, url, unauthenticated_probes(model))))


def with_key(http: HttpClient, url: str, model: str, api_key: str) -> list[Finding]:
    """The client paths with the key; the ones that did not answer 200 are returned."""
    found = probe(http, url, authenticated_probes(model), {"Authorization": f"Bearer {api_key}"})
    return [f for f in found if f.status != 200]
