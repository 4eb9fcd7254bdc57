"""Stage 5, write and check: artifacts in memory <-> ``<out>/<deployment>/`` on disk.

The new tree is staged beside the old one (``.<name>.new-*``) and switched in with one atomic
exchange (``swap.exchange``), so ``<out>/<name>`` is at every instant the complete old tree or the
complete new one, and stays a real folder git can commit. Renders into one output folder hold a
lock on it; each starts by removing what a killed render left (``.<name>.new-*``/``.old-*``).
Files the user added (not in the old manifest) are carried over; files vllmgen produced before
but no longer does are dropped. Modes are set explicitly: 0755 folders and scripts, 0644 files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from vllmgen.render import swap
from vllmgen.errors import EXIT_USAGE, VllmgenError
from vllmgen.render.artifacts import MANIFEST, Artifact

LOCK_TIMEOUT_S = 120.0  # renders take about a second; a holder this slow is stuck or huge


class OutputError(VllmgenError):
    """The output folder cannot be written as asked: the user's to fix (exit 2)."""

    exit_code = EXIT_USAGE


def write(artifacts: list[Artifact], target: Path, on_wait: Callable[[], None] | None = None) -> None:
    """Replace ``target`` with exactly ``artifacts`` plus the user's own files, atomically."""
    parent = target.parent
    try:
        _ensure_folder(parent)
        with swap.locked(str(parent), on_wait or (lambda: None), LOCK_TIMEOUT_S):
            _clean_leftovers(target)
            _refuse_non_folder(target)
            _stage_and_switch(artifacts, target)
    except swap.Busy:
        raise OutputError(
            f"another vllmgen render into {parent} has held it for {LOCK_TIMEOUT_S:.0f} s; nothing was written"
        ) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise OutputError(f"cannot write {target}: {_reason(exc)}; nothing was changed") from None


def _reason(exc: OSError | ValueError) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror.lower()}{where}"
    return str(exc)


def _ensure_folder(parent: Path) -> None:
    """The output folder is created (one level, like ``mkdir``); a missing grandparent is a typo."""
    if parent.is_dir():
        return
    if os.path.lexists(parent):
        raise OutputError(f"the output folder {parent} exists and is not a folder")
    if not parent.parent.is_dir():
        problem = "is not a folder" if os.path.lexists(parent.parent) else "does not exist"
        raise OutputError(f"cannot create the output folder {parent}: {parent.parent} {problem}")
    try:
        parent.mkdir()
    except FileExistsError:  # a render beside this one made it first
        return
    parent.chmod(0o755)


def _refuse_non_folder(target: Path) -> None:
    if os.path.islink(target):
        raise OutputError(f"{target} is a symbolic link; vllmgen writes a real folder there: move it away first")
    if os.path.lexists(target) and not target.is_dir():
        raise OutputError(f"{target} exists and is not a folder; move it away first")


def _leftovers(target: Path) -> list[Path]:
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(new|old)-[a-z0-9_]{{8}}")
    return sorted(p for p in target.parent.iterdir() if pattern.fullmatch(p.name))


def _clean_leftovers(target: Path) -> None:
    """Remove what a killed render left. Only the two-rename fallback can leave ``target`` missing,
    with the complete old tree in ``.old-*``: that one is put back first."""
    leftovers = _leftovers(target)
    if not os.path.lexists(target):
        retired = [p for p in leftovers if ".old-" in p.name and p.is_dir() and not p.is_symlink()]
        if retired:
            os.rename(retired[0], target)
            leftovers.remove(retired[0])
    for path in leftovers:
        _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)  # what stays is removed by the next render
    else:
        path.unlink(missing_ok=True)


def _stage_and_switch(artifacts: list[Artifact], target: Path) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; build/ is meant to be shared
        _fill(staging, artifacts)
        if not target.is_dir():
            swap.rename_new(str(staging), str(target))
            return
        _carry_foreign_files(target, staging, {a.path for a in artifacts})
        try:
            swap.exchange(str(staging), str(target))  # staging now holds the old tree
        except swap.Unsupported:
            _switch_by_two_renames(staging, target)
    except BaseException:
        _remove(staging)
        raise
    _remove(staging)


def _switch_by_two_renames(staging: Path, target: Path) -> None:
    """The portable fallback: a kill between the renames leaves ``target`` missing for an instant;
    ``_clean_leftovers`` restores the old tree from ``.old-*`` on the next render."""
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    retired.rmdir()  # only the unique name is wanted; the lock keeps it ours
    os.rename(target, retired)
    os.rename(staging, target)
    _remove(retired)


def _fill(staging: Path, artifacts: list[Artifact]) -> None:
    made: set[Path] = set()
    for artifact in artifacts:
        path = staging / artifact.path
        for folder in reversed(path.parents[: len(Path(artifact.path).parents) - 1]):
            if folder not in made:
                folder.mkdir(exist_ok=True)
                folder.chmod(0o755)  # explicit: mkdir's mode is filtered by the umask
                made.add(folder)
        path.write_bytes(artifact.data)
        path.chmod(0o755 if artifact.executable else 0o644)


def _carry_foreign_files(target: Path, staging: Path, produced: set[str]) -> None:
    """Keep what a person put in the deployment folder; vllmgen only owns what it listed."""
    owned = _manifest_files(target) | {MANIFEST} | produced
    for folder, dirs, files in os.walk(target):
        dirs.sort()
        if not dirs and not files and folder != str(target):  # an empty folder of the user's
            _make_folders(target, staging, Path(os.path.relpath(folder, target)))
        for name in sorted(files) + sorted(d for d in dirs if os.path.islink(os.path.join(folder, d))):
            source = Path(folder, name)
            relative = source.relative_to(target).as_posix()
            if relative in owned:
                continue
            destination = staging / relative
            _make_folders(target, staging, Path(relative).parent)
            mode = source.lstat().st_mode
            if stat.S_ISLNK(mode):
                os.symlink(os.readlink(source), destination)
            elif stat.S_ISREG(mode):
                shutil.copy2(source, destination)
            else:
                raise OutputError(f"cannot carry over {source}: not a file, folder or symbolic link; move it away")


def _make_folders(target: Path, staging: Path, relative: Path) -> None:
    """The folders holding a carried entry, with the modes they had (not the umask's)."""
    for part in reversed((relative, *relative.parents)[:-1] if relative.parts else ()):
        if not (staging / part).is_dir():
            (staging / part).mkdir()
            shutil.copymode(target / part, staging / part)


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
    import difflib  # only a stale tree needs it

    lines = difflib.unified_diff(
        old.splitlines(keepends=True), expected.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
