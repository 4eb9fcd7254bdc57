"""HTTP requests to a node's endpoint (health, models, chat), with the standard library.

Straight to the node: no proxy from the environment (behind one, /health would ask the proxy).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from vllmgen.runner.executor import HttpResult


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_request(method: str, url: str, headers: Mapping[str, str] | None = None, body: Any = None,
                 timeout: float = 10) -> HttpResult:
    """One HTTP request with the standard library; never raises for HTTP or connection errors."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _DIRECT.open(request, timeout=timeout) as response:
            return HttpResult(response.status, response.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        return HttpResult(exc.code, exc.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return HttpResult(0, str(reason))
