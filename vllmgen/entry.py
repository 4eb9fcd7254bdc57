"""The ``vllmgen`` command: ``render --check`` of an unchanged tree answers before click, pydantic and
jinja2 are imported (``fastcheck``); everything else goes to the full command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _check_arguments(argv: list[str]) -> tuple[Path, Path] | None:
    """``render SPEC --check [-o DIR | --output DIR | --output=DIR]`` in any order; None otherwise."""
    if not argv or argv[0] != "render" or "--check" not in argv:
        return None
    spec, output = None, Path("build")
    words = iter(argv[1:])
    for word in words:
        if word == "--check":
            continue
        if word in ("-o", "--output"):
            value = next(words, None)
            if value is None:
                return None
            output = Path(value)
        elif word.startswith("--output="):
            output = Path(word.removeprefix("--output="))
        elif word.startswith("-") or spec is not None:
            return None  # --strict, --help, anything else: the full command line decides
        else:
            spec = Path(word)
    return (spec, output) if spec is not None else None


def main() -> None:
    arguments = _check_arguments(sys.argv[1:])
    if arguments is not None and not os.environ.get("VLLMGEN_NO_FASTCHECK"):  # set: always the full check
        from vllmgen.fastcheck import up_to_date

        target = up_to_date(*arguments)
        if target is not None:
            sys.stdout.write(f"{target} is up to date\n")
            sys.exit(0)
    from vllmgen.cli import main as full

    full()
