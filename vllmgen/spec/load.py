"""Stage 1, load: YAML text -> plain Python data plus a map of where every value stands.

The parser's events (libyaml's when ruamel.yaml's C extension is installed: ten times faster;
else the pure one) are built into data by ``vllmgen.spec.compose``, which bounds depth, aliases and
scalar length; positions are 1-based and keyed by field path, so later stages can point at
``nodes[1].address`` without holding on to ruamel objects. The file's size is bounded before it
is read, and bad UTF-8 or a bad character is reported at its line and column. Errors are always
worded by the pure parser, so they read the same with or without libyaml.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import StreamEndEvent
from ruamel.yaml.reader import ReaderError

try:  # libyaml, from ruamel.yaml[libyaml] (ruamel.yaml.clibz) or ruamel.yaml.clib
    from ruamel.yaml.cyaml import CParser
except ImportError:
    CParser = None

from vllmgen.spec.compose import Builder, ComposeError
from vllmgen.errors import Diagnostic, Path, SpecError, short


@dataclass(frozen=True)
class Positions:
    """1-based (line, column) of keys and values, by field path."""

    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def of(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Where ``path`` stands; falls back to the nearest enclosing value that does."""
        if key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if prefix in self.values:
                return self.values[prefix]
            if prefix in self.keys:
                return self.keys[prefix]
        return (1, 1)


@dataclass(frozen=True)
class LoadedSpec:
    file: str
    data: Any
    positions: Positions

    def diagnostic(self, path: Path, message: str, *, key: bool = False, severity="error") -> Diagnostic:
        from vllmgen.errors import format_path

        line, col = self.positions.of(path, key=key)
        return Diagnostic(self.file, line, col, format_path(path), message, severity)


MAX_BYTES = 1024 * 1024  # a spec of 1,000 nodes is ~100 KB
# A YAML error libyaml finds this far in is reported in libyaml's words (its position is the same):
# the pure parser, ten times slower, would take seconds to reach it again for its wording.
_REPARSE_EVENTS = 5000
_VERSION_DIRECTIVE = re.compile(r"^\ufeff?%YAML(?:[ \t]+(\S*))?", re.MULTILINE)


def load_file(path: str | FsPath) -> LoadedSpec:
    path = FsPath(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpecError([Diagnostic(str(path), 0, 0, "<file>", "no such file")]) from None
    except OSError as exc:
        raise SpecError([Diagnostic(str(path), 0, 0, "<file>", f"cannot read: {exc.strerror or exc}")]) from None
    return load_bytes(raw, str(path))


def load_bytes(raw: bytes, file: str) -> LoadedSpec:
    """A spec's bytes (from a file, or from git for ``diff --against``), ``file`` naming them in errors."""
    if len(raw) > MAX_BYTES:
        raise SpecError([Diagnostic(file, 0, 0, "<file>", f"the spec is larger than {MAX_BYTES:,} bytes (the limit)")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = len(raw[raw.rfind(b"\n", 0, exc.start) + 1 : exc.start].decode("utf-8", "replace")) + 1
        message = f"not UTF-8: byte 0x{raw[exc.start]:02x} cannot start or continue a character"
        raise SpecError([Diagnostic(file, line, column, "<file>", message)]) from None
    return load_text(text, file)


def load_text(text: str, file: str) -> LoadedSpec:
    if len(text) > MAX_BYTES:
        raise SpecError([Diagnostic(file, 0, 0, "<file>", f"the spec is larger than {MAX_BYTES:,} bytes (the limit)")])
    for version in _VERSION_DIRECTIVE.finditer(text):  # the pure parser asserts on other versions
        if version.group(1) not in ("1.1", "1.2"):
            line, column = _line_col(text, version.start())
            message = f"invalid YAML: YAML {short(version.group(1) or '')} is not supported; write %YAML 1.2 or nothing"
            raise SpecError([Diagnostic(file, line, column, "<yaml>", message)])
    c_error, events = None, YAML(typ="safe", pure=True).parse(text)
    if CParser is not None:
        parsed = [0]
        try:
            return _load(text, file, _c_events(text, parsed))
        except ComposeError as exc:
            raise SpecError([Diagnostic(file, exc.line, exc.column, "<yaml>", f"invalid YAML: {exc.message}")]) from None
        except MarkedYAMLError as exc:
            if parsed[0] > _REPARSE_EVENTS:  # the pure parser would take seconds to reach it
                raise SpecError([_yaml_diagnostic(exc, file)]) from None
            # Re-parsed for the pure parser's words; where it reads on past libyaml's error (they
            # disagree on a few corner cases), libyaml's error stands.
            c_error, events = exc, itertools.islice(events, parsed[0] + 100)
        except Exception:  # noqa: BLE001 - report it in the pure parser's words, the same with or without libyaml
            pass
    try:
        return _load(text, file, events)
    except _Truncated:
        raise SpecError([_yaml_diagnostic(c_error, file)]) from None
    except ComposeError as exc:
        raise SpecError([Diagnostic(file, exc.line, exc.column, "<yaml>", f"invalid YAML: {exc.message}")]) from None
    except MarkedYAMLError as exc:
        raise SpecError([_yaml_diagnostic(exc, file)]) from None
    except ReaderError as exc:
        line, column = _line_col(text, exc.position)
        message = f"invalid YAML: the character {short(chr(exc.character))} (U+{exc.character:04X}) is not allowed"
        raise SpecError([Diagnostic(file, line, column, "<yaml>", message)]) from None
    except YAMLError as exc:  # unmarked: no better position than the file
        raise SpecError([Diagnostic(file, 0, 0, "<yaml>", f"invalid YAML: {short(str(exc))}")]) from None


def _c_events(text: str, parsed: list[int]) -> Iterator[Any]:
    parser = CParser(text)
    try:
        while True:
            event = parser.get_event()
            parsed[0] += 1
            yield event
            if isinstance(event, StreamEndEvent):
                return
    finally:
        parser.dispose()


class _Truncated(Exception):
    """The events ran out before the stream's end (an islice'd re-parse)."""


def _load(text: str, file: str, events: Iterator[Any]) -> LoadedSpec:
    data, log, complete = Builder().build(events)
    if not complete:
        raise _Truncated
    positions = Positions()
    keys, values = positions.keys, positions.values
    for path, key_at, value_at in log:
        if key_at is not None:
            keys[path] = key_at
        values[path] = value_at
    return LoadedSpec(file, {} if data is None else data, positions)


def _line_col(text: str, index: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


def _yaml_diagnostic(exc: MarkedYAMLError, file: str) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    problem = exc.problem or exc.context or "invalid YAML"
    if "duplicate key" in problem:
        problem = problem.split(" with value")[0]
    return Diagnostic(file, line, col, "<yaml>", f"invalid YAML: {problem}")
