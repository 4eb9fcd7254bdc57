"""A tiny, deterministic YAML writer for the files vllmgen emits.

Every string is written double-quoted (JSON syntax is valid YAML 1.1 and 1.2), so no value
is ever re-read as a boolean or number by PyYAML ('on', 'no', '1e3'), and output never depends
on a library's line-width or style heuristics.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# Characters YAML refuses raw, or reads as line breaks: DEL, C1 controls (NEL), U+2028/9, non-characters.
_NOT_PRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")
# json.dumps(value, ensure_ascii=False) builds a new encoder on every call; this is the same encoder, built once
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


def dump(data: dict[str, Any], header: str = "") -> str:
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += _mapping(data, 0)
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=1024)  # the same few keys repeat in every node's file
def _key(key: str) -> str:
    return key if _PLAIN_KEY.match(key) and key not in {"y", "n", "on", "off", "yes", "no"} else json.dumps(key)


def _scalar(value: Any) -> str:
    text = _ENCODE(value)
    return _NOT_PRINTABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def _mapping(data: dict[str, Any], indent: int) -> list[str]:
    pad = " " * indent
    lines = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            lines += [f"{pad}{_key(key)}:", *_mapping(value, indent + 2)]
        elif isinstance(value, list) and value:
            lines += [f"{pad}{_key(key)}:", *_sequence(value, indent + 2)]
        else:
            lines.append(f"{pad}{_key(key)}: {_scalar(value)}")
    return lines


def _sequence(items: list[Any], indent: int) -> list[str]:
    pad = " " * indent
    lines = []
    for item in items:
        if isinstance(item, dict) and item:
            first, *rest = _mapping(item, indent + 2)
            lines += [f"{pad}- {first.lstrip()}", *rest]
        else:
            lines.append(f"{pad}- {_scalar(item)}")
    return lines
