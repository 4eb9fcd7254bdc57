"""The error hierarchy and the diagnostics every stage reports.

Exit codes follow black: 0 ok, 1 drift, 2 usage, 3 invalid spec, 123 internal error.

    VllmgenError            base; carries an exit code
    ├── SpecError           the spec is invalid: a sorted list of Diagnostics (exit 3)
    ├── DriftError          build/ differs from what the spec renders (exit 1)
    └── RunnerError         apply/status/down failed on a host (exit 4)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Path = tuple[str | int, ...]

EXIT_OK = 0
EXIT_DRIFT = 1
EXIT_USAGE = 2
EXIT_INVALID = 3
EXIT_RUNNER = 4
EXIT_INTERNAL = 123


SHORT = 80  # characters of a bad value an error message quotes


def short(value: str, limit: int = SHORT) -> str:
    """``value`` quoted, cut to ``limit`` characters with its length when longer: an error
    message never echoes a huge value."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value):,} characters)"


def format_path(path: Path) -> str:
    """('nodes', 1, 'address') -> 'nodes[1].address'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = part if len(part) <= SHORT else f"{part[:SHORT]}...({len(part):,} characters)"
            out += f".{part}" if out else str(part)
    return out or "<root>"


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One finding about a spec, at a 1-based line and column (0 when unknown)."""

    file: str
    line: int
    column: int
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{where}: {self.path}: {prefix}{self.message}"


class VllmgenError(Exception):
    exit_code = EXIT_INTERNAL


class SpecError(VllmgenError):
    exit_code = EXIT_INVALID

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sorted(diagnostics)
        super().__init__("\n".join(map(str, self.diagnostics)))


class DriftError(VllmgenError):
    exit_code = EXIT_DRIFT


class RunnerError(VllmgenError):
    exit_code = EXIT_RUNNER
