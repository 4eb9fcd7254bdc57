"""Proof that a deployment serves: /health, /v1/models, one chat completion, and the API key.

Requests go through the head's executor (``Executor.http``): the SDK executor sends them with
urllib from this machine, the dry-run prints the equivalent ``curl``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from vllmgen.plan import Endpoint
from vllmgen.runner import watch
from vllmgen.runner.executor import Executor, HttpResult
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


def wait_healthy(executor: Executor, endpoint: Endpoint, progress: Progress, *, timeout: float,
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
        result = executor.http("GET", url, timeout=5)
        return result.status == 200, _short(result) + (f"; {note}" if note else "")

    try:
        watch.wait(progress, what, executor.node, check, watches=watches, timeout=timeout, interval=interval,
                   step=step)
    except WaitTimeout as exc:
        raise fail(executor.node, step, f"{url} is not healthy after {exc.waited:.0f}s: {exc.last}",
                   "read the server's log below; raise --timeout if the model is still loading",
                   logs() if logs else None) from exc


def verify(executor: Executor, endpoint: Endpoint, api_key: str | None, progress: Progress,
           logs: Callable[[], str] | None = None, answered: Callable[[], None] | None = None) -> list[str]:
    """The checks after /health is 200; returns one line per check passed, raises on the first failure.

    ``logs`` gives the server's last log lines, shown when it answers with an error."""
    url = base_url(endpoint)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    passed = []

    models = executor.http("GET", f"{url}/v1/models", headers)
    if models.status != 200:
        raise fail(executor.node, STEP, f"GET {url}/v1/models: {_short(models)}",
                   "the API key vllmgen sent was refused" if models.status == 401 else None)
    try:
        names = [model.get("id") for model in models.json().get("data", [])]
    except (ValueError, AttributeError) as exc:
        raise fail(executor.node, STEP, f"GET {url}/v1/models did not answer a model list: {_short(models)}") from exc
    if endpoint.served_name not in names:
        raise fail(executor.node, STEP, f"/v1/models lists {names}, not {endpoint.served_name!r}",
                   "another server answers on this port? check `docker ps` on the head")
    passed.append(f"/v1/models lists {endpoint.served_name}")

    body = {"model": endpoint.served_name, "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 8, "temperature": 0}
    chat = executor.http("POST", f"{url}/v1/chat/completions", headers, body, timeout=120)
    if chat.status != 200:
        raise fail(executor.node, STEP, f"POST {url}/v1/chat/completions: {_short(chat)}",
                   "the server's log below has the cause", logs() if logs and chat.status >= 500 else None)
    try:
        answer = chat.json()["choices"][0]["message"].get("content")
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise fail(executor.node, STEP, f"the chat completion has no message: {_short(chat)}") from exc
    if answered:
        answered()
    passed.append(f"chat completion answered {json.dumps((answer or '')[:40])}")

    if api_key:
        refused = executor.http("GET", f"{url}/v1/models")
        if refused.status != 401:
            raise fail(executor.node, STEP, f"GET {url}/v1/models without the API key: {_short(refused)}, expected 401",
                       "the server is open to anyone who can reach it: check that VLLM_API_KEY reaches the container")
        passed.append("a request without the API key is refused (401)")
    for line in passed:
        progress.say(f"verify: {line}", executor.node)
    return passed
