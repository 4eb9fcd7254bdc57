"""Merging the plan's daemon.json keys into a host's file: never clobbering it.

Keys the plan does not name are kept as they are. Objects merge key by key; lists gain the
plan's entries they lack (existing order kept: a person's own registry mirrors stay first);
other values take the plan's. The caller writes a timestamped backup, then the new text
atomically, and restarts Docker only when the text changed.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PATH = "/etc/docker/daemon.json"


class DaemonJsonError(ValueError):
    pass


@dataclass(frozen=True)
class Merge:
    current: dict[str, Any] | None  # None: the file does not exist
    merged: dict[str, Any]
    changes: tuple[str, ...]  # human-readable, one per top-level key: "+ registry-mirrors", "~ log-driver"

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def text(self) -> str:
        return dump(self.merged)


def dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def parse(text: str | None, where: str) -> dict[str, Any] | None:
    if text is None:
        return None
    if not text.strip():
        return {}
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise DaemonJsonError(
            f"{where} is not valid JSON ({exc}); fix it by hand, vllmgen will not overwrite it") from exc
    if not isinstance(document, dict):
        raise DaemonJsonError(f"{where} holds a JSON {type(document).__name__}, not an object; fix it by hand")
    return document


def _merge_value(current: Any, wanted: Any) -> Any:
    if isinstance(current, dict) and isinstance(wanted, dict):
        out = dict(current)
        for key, value in wanted.items():
            out[key] = _merge_value(current[key], value) if key in current else value
        return out
    if isinstance(current, list) and isinstance(wanted, list):
        return current + [item for item in wanted if item not in current]
    return wanted


def merge(current_text: str | None, wanted: dict[str, Any], where: str = DEFAULT_PATH) -> Merge:
    current = parse(current_text, where)
    base = current or {}
    merged = dict(base)
    changes = []
    for key in sorted(wanted):
        if key not in base:
            merged[key] = wanted[key]
            changes.append(f"+ {key}")
            continue
        merged[key] = _merge_value(base[key], wanted[key])
        if merged[key] != base[key]:
            changes.append(f"~ {key}")
    return Merge(current, merged, tuple(changes))


def backup_name(path: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{path}.vllmgen-backup-{stamp}"


def write_atomic(path: Path, text: str) -> None:
    """Write beside the target and rename over it: readers see the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
