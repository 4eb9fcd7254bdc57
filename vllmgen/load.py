"""Stage 1, load: YAML text -> plain Python data plus a map of where every value stands.

ruamel.yaml composes the text into a node graph whose every node carries a 0-based line/column
mark; we flatten those into ``Positions`` (1-based, keyed by field path) so later stages can
point at ``nodes[1].address`` without holding on to ruamel objects. The values are built by
ruamel's safe constructor (YAML 1.2, duplicate keys refused, merge keys honoured). Composing
with the safe loader rather than the round-trip one (which also keeps comments) is a quarter
faster; libyaml's parser, when ruamel.yaml's C extension is installed, is ten times faster.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode
from ruamel.yaml.resolver import VersionedResolver

try:  # libyaml, from ruamel.yaml[libyaml] (ruamel.yaml.clibz) or ruamel.yaml.clib
    from ruamel.yaml.cyaml import CParser
except ImportError:
    CParser = None

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


class _Constructor(SafeConstructor):
    """The safe constructor, plus: an unknown tag (``!env FOO``) is dropped, as the round-trip
    loader did, leaving the plain value for the model to judge."""

    def construct_unknown(self, node: Node) -> Any:
        if isinstance(node, MappingNode):
            return self.construct_mapping(node, deep=True)
        if isinstance(node, SequenceNode):
            return self.construct_sequence(node, deep=True)
        return node.value


_Constructor.add_constructor(None, _Constructor.construct_unknown)

if CParser is not None:

    class _CLoader(CParser, _Constructor, VersionedResolver):  # as ruamel.yaml.main builds its own
        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            self._parser = self._composer = self
            _Constructor.__init__(self, loader=self)
            self.allow_duplicate_keys = False
            VersionedResolver.__init__(self, version=None, loadumper=self)
            # the resolver asks ``_scanner`` for a %YAML directive's version on every scalar; without
            # the attribute it falls through two AttributeErrors each time (a third of the load)
            self._scanner = self
            self.yaml_version = None


def load_text(text: str, file: str) -> LoadedSpec:
    if CParser is not None and "%YAML" not in text:  # a version directive: the pure parser honours it
        try:
            return _load(text, file, _CLoader(text))
        except YAMLError:
            pass  # report it in the pure parser's words, the same with or without libyaml
    yaml = YAML(typ="safe", pure=True)
    yaml.Constructor = _Constructor
    try:
        return _load(text, file, yaml)
    except MarkedYAMLError as exc:
        raise SpecError([_yaml_diagnostic(exc, file)]) from None


def _load(text: str, file: str, loader: Any) -> LoadedSpec:
    root = loader.compose(text) if isinstance(loader, YAML) else loader.get_single_node()
    constructor = loader.constructor if isinstance(loader, YAML) else loader
    positions = Positions()
    data = None
    if root is not None:
        data = _plain(constructor.construct_document(root))
        _mark(root, (), positions, constructor)
    return LoadedSpec(file, {} if data is None else data, positions)


def _yaml_diagnostic(exc: MarkedYAMLError, file: str) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    problem = exc.problem or exc.context or "invalid YAML"
    if "duplicate key" in problem:
        problem = problem.split(" with value")[0]
    return Diagnostic(file, line, col, "<yaml>", f"invalid YAML: {problem}")


def _mark(node: Node, path: Path, positions: Positions, constructor: SafeConstructor) -> None:
    """Record where every key, value and item under ``node`` stands."""
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:str":
                key = key_node.value
            else:  # 1: or true: as a key is named as the model will see it
                key = str(_plain(constructor.construct_object(key_node, deep=True)))
            child = (*path, key)
            positions.keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            positions.values[child] = (value_node.start_mark.line + 1, value_node.start_mark.column + 1)
            _mark(value_node, child, positions, constructor)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            positions.values[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
            _mark(item, child, positions, constructor)


def _plain(value: Any) -> Any:
    """Plain dict/list/scalars with string keys; other YAML types become text the model can refuse."""
    if isinstance(value, dict):
        return {str(_plain(key)): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return str(sorted(map(str, value)))  # a !!set: deterministic text
    return str(value)
