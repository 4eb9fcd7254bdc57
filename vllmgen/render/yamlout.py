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

# A key is written bare only if no YAML 1.1 or 1.2 reader can take it for anything but a string:
# it starts with a letter or '_' (no number, '.inf', '~' or indicator) and is not one of the words
# YAML 1.1 reads as a boolean or null, in any case (PyYAML and Go's yaml.v2 read 1.1; compose, 1.2).
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_RESERVED_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
# Line breaks and controls that would end or break a comment line: each becomes '?'.
_COMMENT_UNSAFE = "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]"
# Characters YAML refuses raw, or reads as line breaks: DEL, C1 controls (NEL), U+2028/9, non-characters.
_NOT_PRINTABLE = "[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]"
# Tab and newline, the only characters below space either pattern lets through.
_TAB_NEWLINE = str.maketrans("\t\n", "  ")


@functools.cache
def _pattern(characters: str) -> re.Pattern[str]:
    """Compiled on first need: a class with ranges past U+00FF costs a few ms to compile, and the text
    vllmgen writes is almost always printable ASCII, which never needs it (``_plain``)."""
    return re.compile(characters)


def _plain(text: str) -> bool:
    """Printable ASCII, tabs and newlines: nothing either pattern would match."""
    return text.isascii() and text.translate(_TAB_NEWLINE).isprintable()


# json.dumps(value, ensure_ascii=False) builds a new encoder on every call; this is the same encoder, built once
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


def dump(data: dict[str, Any], header: str = "") -> str:
    # a comment must be printable too (YAML refuses control bytes anywhere in the stream)
    comment = header if _plain(header) else _pattern(_COMMENT_UNSAFE).sub("?", header)
    lines = [f"# {line}" if line else "#" for line in comment.splitlines()]
    lines += _mapping(data, 0)
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=1024)  # the same few keys repeat in every node's file
def _key(key: str) -> str:
    plain = _PLAIN_KEY.fullmatch(key) and key.lower() not in _RESERVED_WORDS
    return key if plain else _scalar(key)


def _scalar(value: Any) -> str:
    text = _ENCODE(value)
    if _plain(text):
        return text
    return _pattern(_NOT_PRINTABLE).sub(lambda match: f"\\u{ord(match.group()):04x}", text)


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
