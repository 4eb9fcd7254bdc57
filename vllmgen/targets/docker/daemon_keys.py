"""What Docker accepts for the daemon.json keys vllmgen knows, checked without a daemon.

Used twice: at validate, on the keys a spec sets (``docker.daemon``, ``docker.registry_mirrors``),
and by the runner before it restarts Docker, on the merged file's values of those keys where the
installed dockerd has no ``--validate`` (Docker < 23). Keys not listed here are passed through as
written and left to Docker's own check.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

Path = tuple[str | int, ...]

# JSON type of each known key: "string", "integer", "boolean", "strings" (a list of strings),
# "string map" (an object of strings), "object", "objects" (a list of objects)
TYPES: dict[str, str] = {
    "registry-mirrors": "strings", "insecure-registries": "strings", "allow-nondistributable-artifacts": "strings",
    "log-driver": "string", "log-level": "string", "log-opts": "string map",
    "default-runtime": "string", "runtimes": "object", "exec-opts": "strings", "storage-driver": "string",
    "storage-opts": "strings", "data-root": "string", "exec-root": "string", "pidfile": "string",
    "dns": "strings", "dns-opts": "strings", "dns-search": "strings", "hosts": "strings", "labels": "strings",
    "bip": "string", "fixed-cidr": "string", "default-gateway": "string", "bridge": "string", "mtu": "integer",
    "default-address-pools": "objects", "default-shm-size": "string", "default-ulimits": "object",
    "default-cgroupns-mode": "string", "default-ipc-mode": "string", "cgroup-parent": "string", "group": "string",
    "features": "object", "builder": "object", "proxies": "string map", "shutdown-timeout": "integer",
    "max-concurrent-downloads": "integer", "max-concurrent-uploads": "integer", "max-download-attempts": "integer",
    "debug": "boolean", "experimental": "boolean", "live-restore": "boolean", "ipv6": "boolean",
    "iptables": "boolean", "ip6tables": "boolean", "ip-forward": "boolean", "ip-masq": "boolean",
    "icc": "boolean", "userland-proxy": "boolean", "no-new-privileges": "boolean", "selinux-enabled": "boolean",
    "init": "boolean", "tls": "boolean", "tlsverify": "boolean",
}


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type: object, array, string, number, boolean, null."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "null"


def _matches(kind: str, value: Any) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return True  # refused on its own (vllmgen.spec.rules.core.finite_numbers)
    if kind == "integer":
        return json_type(value) == "number" and float(value).is_integer()
    return json_type(value) == {"strings": "array", "objects": "array", "string map": "object"}.get(kind, kind)


_EXPECTED = {"strings": "a list of strings", "objects": "a list of objects", "string map": "an object of strings",
             "integer": "a whole number"}
_ITEM = {"strings": "string", "objects": "object", "string map": "string"}


def problems(document: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    """(path, message) for each value of a known key that Docker would refuse."""
    for key, value in document.items():
        kind = TYPES.get(key)
        if kind is None:
            continue
        if not _matches(kind, value):
            yield (key,), f"Docker expects {_EXPECTED.get(kind, 'a ' + kind)} here, not a JSON {json_type(value)}"
            continue
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for inner, item in items:
            if kind in _ITEM and not _matches(_ITEM[kind], item):
                hint = ' (quote it: "3")' if kind == "string map" and json_type(item) == "number" else ""
                yield (key, inner), f"Docker expects a {_ITEM[kind]} here{hint}, not a JSON {json_type(item)}"
            elif key == "registry-mirrors":
                why = mirror_problem(item)
                if why:
                    yield (key, inner), why


def mirror_problem(url: str) -> str | None:
    """Docker's own rule for a registry mirror (registry.ValidateMirror): http(s), no path, query or fragment."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"invalid mirror {url!r}: Docker takes an http:// or https:// URL"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"invalid mirror {url!r}: Docker refuses a path, query or fragment at the end of a mirror URL"
    return None
