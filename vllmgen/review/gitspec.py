"""A spec as a git revision holds it: for ``vllmgen diff --against REV`` and the pre-commit hook."""

from __future__ import annotations

import subprocess
from pathlib import Path


class GitError(Exception):
    """git is missing, the folder is not a repository, or the revision does not exist."""


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"cannot run git: {exc}") from None


def spec_at(rev: str, spec: Path) -> bytes | None:
    """The bytes of ``spec`` at ``rev``; None when the revision exists but has no such file yet."""
    if rev.startswith("-"):
        raise GitError(f"{rev!r} is not a revision")
    folder = spec.parent if str(spec.parent) else Path(".")
    verified = _git(folder, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if verified.returncode != 0:
        detail = _git(folder, "rev-parse", "--show-toplevel")
        if detail.returncode != 0:
            raise GitError(f"{folder} is not in a git repository ({_text(detail.stderr)})")
        raise GitError(f"no git revision {rev!r} in {folder}")
    commit = _text(verified.stdout)
    shown = _git(folder, "show", f"{commit}:./{spec.name}")
    if shown.returncode != 0:
        return None
    return shown.stdout



def _text(output: bytes) -> str:
    return output.decode("utf-8", "replace").strip()
