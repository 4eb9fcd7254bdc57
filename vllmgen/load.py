"""Stage 1, load: YAML text -> plain Python data plus a map of where every value stands.

ruamel.yaml's round-trip loader keeps 0-based line/column marks on every mapping and
sequence; we flatten them into ``Positions`` (1-based, keyed by field path) so later stages
can point at ``nodes[1].address`` without holding on to ruamel objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from vllmgen.errors import Diagnostic, Path, SpecError


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


def load_file(path: str | FsPath) -> LoadedSpec:
    path = FsPath(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Diagnostic(str(path), 0, 0, "<file>", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Diagnostic(str(path), 0, 0, "<file>", f"cannot read: {exc}")]) from None
    return load_text(text, str(path))


def load_text(text: str, file: str) -> LoadedSpec:
    yaml = YAML(typ="rt", pure=True)
    try:
        root = yaml.load(text)
    except MarkedYAMLError as exc:
        raise SpecError([_yaml_diagnostic(exc, file)]) from None
    positions = Positions()
    data = _walk(root, (), positions)
    if data is None:
        data = {}
    return LoadedSpec(file, data, positions)


def _yaml_diagnostic(exc: MarkedYAMLError, file: str) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    problem = exc.problem or exc.context or "invalid YAML"
    if "duplicate key" in problem:
        problem = problem.split(" with value")[0]
    return Diagnostic(file, line, col, "<yaml>", f"invalid YAML: {problem}")


def _walk(node: Any, path: Path, positions: Positions) -> Any:
    """Copy ``node`` into plain dict/list/scalars, recording positions on the way."""
    if isinstance(node, CommentedMap):
        out = {}
        for key, value in node.items():
            child = (*path, str(key))
            line, col = node.lc.key(key)
            positions.keys[child] = (line + 1, col + 1)
            vline, vcol = node.lc.value(key)
            positions.values[child] = (vline + 1, vcol + 1)
            out[str(key)] = _walk(value, child, positions)
        return out
    if isinstance(node, CommentedSeq):
        out_list = []
        for index, value in enumerate(node):
            child = (*path, index)
            line, col = node.lc.item(index)
            positions.values[child] = (line + 1, col + 1)
            out_list.append(_walk(value, child, positions))
        return out_list
    return _plain_scalar(node)


def _plain_scalar(value: Any) -> Any:
    # ruamel wraps floats/ints/strings in subclasses that carry formatting; unwrap them.
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    # dates and other YAML types are passed on as text so the model can refuse them clearly
    return str(value)
