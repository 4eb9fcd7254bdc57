"""The ``vllmgen`` command: ``render --check`` of an unchanged tree answers before click, pydantic and
jinja2 are imported (``fastcheck``); everything else goes to the full command line. Paths stay strings
here (pathlib costs that quick answer ~3 ms of its ~40)."""

from __future__ import annotations

import gc
import os
import sys

# The compiler's commands: short, bounded, and they make little cyclic garbage (a 1,000-node render peaks
# at the same RSS either way), so the collector's pauses while pydantic builds its models and the
# pipeline runs (~8% of a render) buy nothing. The runner's commands live for minutes and keep it.
SHORT_COMMANDS = frozenset({"render", "validate", "schema", "init"})


def _check_arguments(argv: list[str]) -> tuple[str, str] | None:
    """``render SPEC --check [-o DIR | --output DIR | --output=DIR]`` in any order; None otherwise."""
    if not argv or argv[0] != "render" or "--check" not in argv:
        return None
    spec, output = None, "build"
    words = iter(argv[1:])
    for word in words:
        if word == "--check":
            continue
        if word in ("-o", "--output"):
            value = next(words, None)
            if value is None:
                return None
            output = value
        elif word.startswith("--output="):
            output = word.removeprefix("--output=")
        elif word.startswith("-") or spec is not None:
            return None  # --strict, --help, anything else: the full command line decides
        else:
            spec = word
    return (spec, output) if spec is not None else None


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in SHORT_COMMANDS:
        gc.disable()
    arguments = _check_arguments(sys.argv[1:])
    if arguments is not None and not os.environ.get("VLLMGEN_NO_FASTCHECK"):  # set: always the full check
        from vllmgen.render.fastcheck import up_to_date

        target = up_to_date(*arguments)
        if target is not None:
            sys.stdout.write(f"{target} is up to date\n")
            sys.exit(0)
    from vllmgen.cli.commands import main as full

    full()
