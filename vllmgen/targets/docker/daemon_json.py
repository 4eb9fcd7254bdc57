"""Merging the plan's daemon.json keys into a host's file: never clobbering it.

Keys the plan does not name are kept as they are. Objects merge key by key; lists gain the
plan's entries they lack (existing order kept: a person's own registry mirrors stay first);
other values take the plan's. A value of another JSON type than the plan's (a mirror list
written as one string) is an error naming the key: the file is left for a person to fix. The
caller writes a timestamped backup, then the new text atomically, and restarts Docker only when
the text changed.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vllmgen.targets.docker.daemon_keys import json_type, problems

DEFAULT_PATH = "/etc/docker/daemon.json"
# sh -c VALIDATE_SCRIPT vllmgen < TEXT: Docker's own check of a daemon.json (dockerd >= 23)
VALIDATE_SCRIPT = ('f="$(mktemp)" || exit 70; cat > "$f"; dockerd --validate --config-file "$f" 2>&1; rc=$?; '
                   'rm -f -- "$f"; exit $rc')


class DaemonJsonError(ValueError):
    pass


@dataclass(frozen=True)
class Merge:
    original: str | None  # the file's text as read; None: the file does not exist
    current: dict[str, Any] | None
    merged: dict[str, Any]
    changes: tuple[str, ...]  # human-readable, one per top-level key: "+ registry-mirrors", "~ log-driver"

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def text(self) -> str:
        return dump(self.merged)


def dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n"


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


def _merge_value(current: Any, wanted: Any, key: str, where: str) -> Any:
    if json_type(current) != json_type(wanted):
        raise DaemonJsonError(
            f"{where}: {key} is a JSON {json_type(current)} there and vllmgen would write a JSON"
            f" {json_type(wanted)} ({json.dumps(wanted)}); the file is left as it is: fix {key} by hand"
            " (Docker itself would refuse the old value), then apply again")
    if isinstance(current, dict):
        out = dict(current)
        for inner, value in wanted.items():
            out[inner] = _merge_value(current[inner], value, f"{key}.{inner}", where) if inner in current else value
        return out
    if isinstance(current, list):
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
        merged[key] = _merge_value(base[key], wanted[key], key, where)
        if merged[key] != base[key]:
            changes.append(f"~ {key}")
    return Merge(current_text, current, merged, tuple(changes))


def own_check(merged: dict[str, Any], keys: Iterable[str], where: str) -> str | None:
    """vllmgen's check of the keys it writes, for a dockerd without ``--validate``; None: fine."""
    found = [f"{'.'.join(map(str, path))}: {message}" for path, message in problems({k: merged[k] for k in keys})]
    return f"{where} would not load: " + "; ".join(found) if found else None


def validation(rc: int, output: str) -> tuple[bool | None, str]:
    """What ``dockerd --validate`` said: (True, ...) loads, (False, why) would not, (None, ...) no such check here."""
    words = output.strip()
    if rc == 0:
        return True, words
    if rc in (126, 127) or "unknown flag: --validate" in words:
        return None, words
    return False, " ".join(words.splitlines()[-3:])


def backup_name(path: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{path}.vllmgen-backup-{stamp}"


def write_atomic(path: Path, text: str) -> None:
    """Write beside the target and rename over it: readers see the old file or the new, never half.

    A symlink is followed (the link stays, its target gets the text); the file's mode and owner
    stay as they were (a new file: 0644)."""
    path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        info: os.stat_result | None = path.stat()
    except FileNotFoundError:
        info = None
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, info.st_mode & 0o7777 if info else 0o644)
        if info and hasattr(os, "chown") and (info.st_uid, info.st_gid) != (os.getuid(), os.getgid()):
            os.chown(temp, info.st_uid, info.st_gid)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
