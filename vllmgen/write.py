"""Stage 5, write and check: artifacts in memory <-> ``<out>/<deployment>/`` on disk.

Writing is all-or-nothing at the directory level: the new tree is staged beside the old one
and swapped in with renames. Files the user added (not in the old manifest) are carried over;
files vllmgen produced before but no longer does are dropped.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import tempfile
from pathlib import Path

from vllmgen.render import MANIFEST, Artifact


def write(artifacts: list[Artifact], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; build/ is meant to be shared
        for artifact in artifacts:
            path = staging / artifact.path
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            path.write_bytes(artifact.data)
            path.chmod(0o755 if artifact.executable else 0o644)
        if target.exists():
            _carry_foreign_files(target, staging, {a.path for a in artifacts})
            retired = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.rename(target, retired)
            os.rename(staging, target)
            shutil.rmtree(retired)
        else:
            os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _carry_foreign_files(target: Path, staging: Path, produced: set[str]) -> None:
    """Keep what a person put in the deployment folder; vllmgen only owns what it listed."""
    owned = _manifest_files(target) | {MANIFEST}
    for path in sorted(target.rglob("*")):
        relative = path.relative_to(target).as_posix()
        if path.is_dir() or relative in owned or relative in produced:
            continue
        destination = staging / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)


def _manifest_files(target: Path) -> set[str]:
    try:
        return set(json.loads((target / MANIFEST).read_text(encoding="utf-8"))["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def check(artifacts: list[Artifact], target: Path) -> list[str]:
    """Unified diffs between disk and ``artifacts``; empty when build/ is up to date."""
    diffs = []
    expected = {artifact.path: artifact for artifact in artifacts}
    stale = _manifest_files(target) - set(expected)
    for path in sorted(expected):
        artifact = expected[path]
        on_disk = target / path
        try:
            current = on_disk.read_bytes()
        except OSError:
            current = None
        if current != artifact.data:
            diffs.append(_diff(path, current, artifact.content))
        elif artifact.executable and not os.access(on_disk, os.X_OK):
            diffs.append(f"{path}: should be executable\n")
    for path in sorted(stale):
        if (target / path).exists():
            diffs.append(f"{path}: no longer generated; render again to remove it\n")
    return diffs


def _diff(path: str, current: bytes | None, expected: str) -> str:
    if current is None:
        return f"{path}: missing\n"
    try:
        old = current.decode("utf-8")
    except UnicodeDecodeError:
        return f"{path}: differs (not UTF-8 on disk)\n"
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), expected.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
