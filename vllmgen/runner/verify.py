"""Proof that a deployment serves: /health, /v1/models, a chat and a text completion, and that
without the API key nothing answers (``exposure`` probes every client, engine and admin path).

Requests go through the control side's HTTP client (``runner.http``): urllib from this machine, or the
dry run's, which prints the equivalent ``curl``. ``node`` names the node whose server is asked, in messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from vllmgen.plan.plan import Endpoint
from vllmgen.runner import keyless, watch
from vllmgen.runner.http import HttpClient, HttpResult
from vllmgen.runner.progress import Progress, WaitTimeout, fail
from vllmgen.runner.watch import Watch

STEP = "verify"


def base_url(endpoint: Endpoint) -> str:
    return endpoint.url


def _short(result: HttpResult) -> str:
    if result.status == 0:
        return f"no answer ({result.body})"
    body = " ".join(result.body.split())
    return f"HTTP {result.status}" + (f": {body[:200]}" if body else "")


def wait_healthy(http: HttpClient, node: str, endpoint: Endpoint, progress: Progress, *, timeout: float,
                 alive: Callable[[], str | None], what: str = "the model to load (/health)",
                 step: str = STEP, interval: float = 3.0, logs: Callable[[], str] | None = None,
                 watches: Sequence[Watch] = ()) -> None:
    """Until /health answers 200: asked at once when the server's log says it serves (its watch, see
    ``runner.watch``), else every ``interval``. ``alive`` raises (a container exited) or returns a status
    note; a watched engine's fatal line or exit ends the wait at once; ``logs`` gives the server's last
    log lines for the timeout's message."""
    url = f"{base_url(endpoint)}/health"

    def check() -> tuple[bool, str]:
        note = alive()
        result = http.request("GET", url, timeout=5)
        return result.status == 200, _short(result) + (f"; {note}" if note else "")

    try:
        watch.wait(progress, what, node, check, watches=watches, timeout=timeout, interval=interval,
                   step=step)
    except WaitTimeout as exc:
        raise fail(node, step, f"{url} is not healthy after {exc.waited:.0f}s: {exc.last}",
                   "read the server's log below; raise --timeout if the model is still loading",
                   logs() if logs else None) from exc


def verify(http: HttpClient, node: str, endpoint: Endpoint, api_key: str | None, progress: Progress,
           logs: Callable[[], str] | None = None, answered: Callable[[], None] | None = None,
           also: tuple[str, ...] = (), public: bool = True) -> list[str]:
    """The checks after /health is 200; returns one line per check passed, raises on the first failure.

    ``logs`` gives the server's last log lines, shown when it answers with an error; ``also`` are more
    URLs (a router's, an API server's) that must refuse a client without the key, admin paths included.
    ``public``: ``endpoint`` is what clients reach; a server behind the gateway is not (the gateway's own
    verify probes what clients can try, there)."""
    url = base_url(endpoint)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    passed: list[str] = []

    def ok(line: str) -> None:  # said at once: a later failure must not hide what passed
        passed.append(line)
        progress.say(f"verify: {line}", node)

    models = http.request("GET", f"{url}/v1/models", headers)
    if models.status != 200:
        raise fail(node, STEP, f"GET {url}/v1/models: {_short(models)}",
                   "the API key vllmgen sent was refused" if models.status == 401 else None)
    try:
        names = [model.get("id") for model in models.json().get("data", [])]
    except (ValueError, AttributeError) as exc:
        raise fail(node, STEP, f"GET {url}/v1/models did not answer a model list: {_short(models)}") from exc
    if endpoint.served_name not in names:
        raise fail(node, STEP, f"/v1/models lists {names}, not {endpoint.served_name!r}",
                   "another server answers on this port? check `docker ps` on the head")
    ok(f"/v1/models lists {endpoint.served_name}")

    body = {"model": endpoint.served_name, "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 8, "temperature": 0}
    chat = http.request("POST", f"{url}/v1/chat/completions", headers, body, timeout=120)
    if chat.status != 200:
        raise fail(node, STEP, f"POST {url}/v1/chat/completions: {_short(chat)}",
                   "the server's log below has the cause", logs() if logs and chat.status >= 500 else None)
    try:
        answer = chat.json()["choices"][0]["message"].get("content")
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise fail(node, STEP, f"the chat completion has no message: {_short(chat)}") from exc
    if answered:
        answered()
    ok(f"chat completion answered {json.dumps((answer or '')[:40])}")

    body = {"model": endpoint.served_name, "prompt": "Hello", "max_tokens": 4, "temperature": 0}
    text = http.request("POST", f"{url}/v1/completions", headers, body, timeout=120)
    if text.status != 200:
        raise fail(node, STEP, f"POST {url}/v1/completions: {_short(text)}",
                   "the server's log below has the cause", logs() if logs and text.status >= 500 else None)
    ok("a text completion answered")

    if api_key and public:
        for line in refused_without_key(http, node, (url, *also), endpoint.served_name):
            ok(line)
    elif not api_key:
        ok(f"no API key in the spec: every path at {url} answers whoever reaches it")
    return passed


def refused_without_key(http: HttpClient, node: str, urls: tuple[str, ...], served_name: str) -> list[str]:
    """Every client, engine and admin path at each URL, without the key; fails (exit 4) naming the
    paths that answered. Paths that only leak information (/metrics, /openapi.json) are reported."""
    lines = []
    for url in dict.fromkeys(urls):
        found = keyless.without_key(http, url, served_name)
        if found.fatal:
            raise fail(node, STEP, f"{found.summary()}: a client without the API key gets inference "
                       "or administration there",
                       "clients must reach the deployment only through its front door (the gateway), which "
                       "checks the key on every path; vLLM's own key check covers /v1 only")
        lines.append(found.summary())
    return lines
