"""Which specs a commit touches, for the pre-commit hook: their files, their build/ folders, the templates.

pre-commit hands the hook the staged file names. A spec is checked when its own file changed, when
a file under its build/<name>/ changed (a hand edit of generated output), or, in vllmgen's own
repository, when the templates or the compiler changed (every spec's output may move).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

DEFAULT_SPECS = ("specs/*.yaml", "specs/*.yml", "vllmgen.yaml")
# Changes here can change every spec's output (vllmgen's own repository).
COMPILER_PARTS = ("templates/", "vllmgen/")


@dataclass(frozen=True)
class Selection:
    specs: tuple[Path, ...]
    reason: dict[Path, str]


def spec_files(root: Path, patterns: Iterable[str]) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        found.update(path for path in root.glob(pattern) if path.is_file())
    return sorted(found)


def is_vllmgens_own(root: Path) -> bool:
    """vllmgen's own repository, where templates/ and vllmgen/ are the compiler (elsewhere, a Helm chart's
    templates/ is not)."""
    return (root / "vllmgen" / "__init__.py").is_file() and (root / "templates" / "start.sh.j2").is_file()


def select(specs: list[Path], names: dict[Path, str | None], changed: list[str], build_dir: str, *,
           own_repo: bool = False) -> Selection:
    """``names``: each spec's deployment name where it could be read (None: the spec is unreadable)."""
    paths = [PurePosixPath(name) for name in changed]
    build = PurePosixPath(build_dir)
    reason: dict[Path, str] = {}
    compiler = next((p for p in paths if any(str(p).startswith(part) for part in COMPILER_PARTS)), None)
    if not own_repo:
        compiler = None
    for spec in specs:
        if not changed:
            reason[spec] = "every spec (no file names given)"
        elif PurePosixPath(spec.as_posix()) in paths:
            reason[spec] = "the spec changed"
        elif names.get(spec) and (hit := next((p for p in paths if p.is_relative_to(build / str(names[spec]))),
                                              None)):
            reason[spec] = f"{hit} changed"
        elif compiler is not None:
            reason[spec] = f"{compiler} changed"
    return Selection(tuple(spec for spec in specs if spec in reason), reason)


def fix_command(spec: Path, build_dir: str, target: Path) -> str:
    """The command that brings ``target`` up to date, quoted for a shell: a spec's file name is
    anyone's text (``$(...)``, spaces, quotes) and the command is meant to be pasted."""
    return (shlex.join(["vllmgen", "render", spec.as_posix(), "-o", build_dir]) + " && "
            + shlex.join(["git", "add", target.as_posix()]))
