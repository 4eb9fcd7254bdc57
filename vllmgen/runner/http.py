"""The control side's HTTP probes (health, models, chat, the key checks): one small client interface.

Probes are sent from the machine vllmgen runs on, whatever runs the node (a Docker engine, a host
process): so they are no engine's verb. The steps, status and the key checks are given one client:
``DirectHttp`` here, or the dry run's (``runner.dryrun.DryRunHttp``: prints the equivalent ``curl``
and answers as a healthy deployment would).

Straight to the node: no proxy from the environment (behind one, /health would ask the proxy), and
no redirect followed: a 3xx is reported as it is. urllib would follow one to any host carrying the
request's headers, the API key's ``Authorization`` among them.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class HttpResult:
    status: int  # 0: no answer (refused, timed out); the reason is in body
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


class HttpClient(Protocol):
    def request(self, method: str, url: str, headers: Mapping[str, str] | None = None, body: Any = None,
                timeout: float = 10) -> HttpResult: ...  # never raises for HTTP or connection errors


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201, PLR0913
        return None  # urllib then raises HTTPError with the 3xx: reported, never followed


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


class DirectHttp:
    """Requests with the standard library, from this machine."""

    def request(self, method: str, url: str, headers: Mapping[str, str] | None = None, body: Any = None,
                timeout: float = 10) -> HttpResult:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with _DIRECT.open(request, timeout=timeout) as response:
                return HttpResult(response.status, response.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                where = exc.headers.get("Location", "nowhere") if exc.headers else "nowhere"
                return HttpResult(exc.code, f"a redirect to {where[:200]}, not followed (it would carry the "
                                  "request's headers)")
            return HttpResult(exc.code, exc.read().decode("utf-8", "replace"))
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return HttpResult(0, str(reason))


class Keyed:
    """A client whose requests all carry ``headers`` (the gateway's /health wants the key)."""

    def __init__(self, client: HttpClient, headers: Mapping[str, str]):
        self._client, self._headers = client, dict(headers)

    def request(self, method: str, url: str, headers: Mapping[str, str] | None = None, body: Any = None,
                timeout: float = 10) -> HttpResult:
        return self._client.request(method, url, {**self._headers, **(headers or {})}, body, timeout)
