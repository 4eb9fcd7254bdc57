"""YAML events -> plain data and positions, with every resource bounded.

ruamel.yaml's composers recurse once per nesting level (the C one overflows the C stack near
30,000 levels; the Python one raises RecursionError near 1,000) and expand aliases without limit
(a few KB of nested aliases is a billion nodes). Both parsers, libyaml's and the pure one, emit a
flat event stream without recursion, so this module builds the document from events with an
explicit stack: depth, alias expansion and scalar length are checked as each event arrives, and
the first one over a limit stops the parse with its position.

Values: scalars are resolved and constructed by ruamel's safe resolver and constructor (YAML 1.2
unless a %YAML directive says otherwise); mappings become dicts with string keys; merge keys
(``<<``) are honoured; an alias shares the anchored value.
"""

from __future__ import annotations

import datetime
import re
import warnings
from collections.abc import Iterable
from typing import Any

from ruamel.yaml import events as ev
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver

from vllmgen.errors import Path, short

MAX_DEPTH = 64
MAX_SCALAR = 16384  # characters in one key or value
MAX_ALIAS_NODES = 10000  # nodes that aliases may add to the document, all aliases together
MAX_NODES = 20000  # keys and values in the whole document: a 1,000-node spec holds ~10,000

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_INT, _BOOL, _NULL = "tag:yaml.org,2002:int", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"
_DECIMAL = re.compile(r"[-+]?(0|[1-9][0-9]{0,99})")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_NO_KEY = object()

Mark = tuple[int, int]
Entry = tuple[Path, "Mark | None", Mark]  # (path, key position or None, value position)


class ComposeError(Exception):
    """A positioned problem in the YAML itself (not in what it says)."""

    def __init__(self, mark: Any, message: str):
        super().__init__(message)
        self.line, self.column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        self.message = message


class _Frame:
    __slots__ = ("kind", "path", "value", "anchor", "mark", "log_start", "key", "merges", "merge_log")

    def __init__(self, kind: str, path: Path, anchor: str | None, mark: Any, log_start: int):
        self.kind, self.path, self.anchor, self.mark, self.log_start = kind, path, anchor, mark, log_start
        self.value: Any = {} if kind == "map" else []
        self.key: Any = _NO_KEY  # map: the pending (key, key mark, is_merge), or _NO_KEY
        self.merges: list[dict] = []
        self.merge_log: list[Entry] = []


class _Stub:
    """The loader that ruamel's resolver and constructor consult: the document's YAML version
    (given here, it saves the resolver two AttributeErrors a call) and the resolver."""

    def __init__(self, version: Any = None):
        self._scanner = self
        self.yaml_version = version
        self._resolver = VersionedResolver(loadumper=self)


class Builder:
    def __init__(self) -> None:
        self.stack: list[_Frame] = []
        self.log: list[Entry] = []
        self.anchors: dict[str, tuple[Any, list[Entry], bool]] = {}  # value, relative entries, scalar?
        self.aliased = 0
        self.nodes = 0
        self.root: Any = None
        self.loader = _Stub()
        self.resolver = self.loader._resolver
        self.constructor = SafeConstructor(loader=self.loader)
        self.resolved: dict[tuple, str] = {}

    def build(self, events: Iterable[Any]) -> tuple[Any, list[Entry], bool]:
        """(data, positions log, whether the stream ended)."""
        documents = 0
        for event in events:
            kind = type(event)
            if kind is ev.ScalarEvent:
                self._scalar(event)
            elif kind is ev.MappingStartEvent or kind is ev.SequenceStartEvent:
                self._start(event, "map" if kind is ev.MappingStartEvent else "seq")
            elif kind is ev.MappingEndEvent or kind is ev.SequenceEndEvent:
                self._end()
            elif kind is ev.AliasEvent:
                self._alias(event)
            elif kind is ev.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise ComposeError(event.start_mark, "expected a single document, but found another")
                version = getattr(event, "version", None)
                if version is not None and tuple(version) not in ((1, 1), (1, 2)):
                    raise ComposeError(event.start_mark, f"YAML {'.'.join(map(str, version))} is not supported; write %YAML 1.2 or nothing")
                self.loader.yaml_version = version
            elif kind is ev.StreamEndEvent:
                return self.root, self.log, True
        return self.root, self.log, False

    # --- nodes --------------------------------------------------------------------------

    def _start(self, event: Any, kind: str) -> None:
        parent = self.stack[-1] if self.stack else None
        if parent is not None and parent.kind == "map" and parent.key is _NO_KEY:
            raise ComposeError(event.start_mark, "a mapping key must be a plain value, not a list or mapping")
        if len(self.stack) >= MAX_DEPTH:
            raise ComposeError(event.start_mark, f"nested deeper than {MAX_DEPTH} levels (the limit)")
        self.stack.append(_Frame(kind, self._child_path(), event.anchor, event.start_mark, len(self.log)))

    def _end(self) -> None:
        frame = self.stack.pop()
        value = frame.value
        if frame.merges:
            merged: dict = {}
            for source in frame.merges:
                for key, item in source.items():
                    merged.setdefault(key, item)
            merged.update(value)
            value = merged
            explicit = frame.value.keys()
            depth = len(frame.path)
            kept = [entry for entry in frame.merge_log if entry[0][depth] not in explicit]
            self.log[frame.log_start:frame.log_start] = kept  # before the explicit keys: those win
        if frame.anchor is not None:
            cut = len(frame.path)
            relative = [(path[cut:], key, at) for path, key, at in self.log[frame.log_start:]]
            self.anchors[frame.anchor] = (value, relative, False)
        self._add(value, frame.mark, is_scalar=False)

    def _alias(self, event: Any) -> None:
        anchored = self.anchors.get(event.anchor)
        if anchored is None:
            raise ComposeError(event.start_mark, f"found undefined alias {short(str(event.anchor))}")
        value, relative, is_scalar = anchored
        self.aliased += len(relative) + 1
        if self.aliased > MAX_ALIAS_NODES:
            raise ComposeError(
                event.start_mark, f"aliases expand to more than {MAX_ALIAS_NODES:,} nodes (the limit); write the values out"
            )
        top = self.stack[-1] if self.stack else None
        if top is not None and top.kind == "map" and top.key is not _NO_KEY and top.key[2]:
            self._merge(top, value, relative, event.start_mark)
            return
        if top is not None and top.kind == "map" and top.key is _NO_KEY and not is_scalar:
            raise ComposeError(event.start_mark, "a mapping key must be a plain value, not a list or mapping")
        base = self._child_path()
        self.log.extend((base + path, key, at) for path, key, at in relative)
        self._add(value, event.start_mark, is_scalar=is_scalar)

    def _scalar(self, event: Any) -> None:
        text = event.value
        if len(text) > MAX_SCALAR:
            raise ComposeError(
                event.start_mark, f"a value of {len(text):,} characters; the limit is {MAX_SCALAR:,}"
            )
        if not text.isascii() and _SURROGATE.search(text):
            raise ComposeError(event.start_mark, "a surrogate code point (an escape such as \\ud800) is not text")
        tag = event.tag
        if tag is None or tag == "!":
            tag = self._resolve(text, event.implicit)
        else:
            tag = str(tag)
        top = self.stack[-1] if self.stack else None
        in_key = top is not None and top.kind == "map" and top.key is _NO_KEY
        if tag == _MERGE:
            value = text
            if in_key:
                top.key = ("<<", event.start_mark, True)
                return
        elif tag == _STR:
            value = text
        else:
            value = self._construct(tag, text, event)
        if event.anchor is not None:
            self.anchors[event.anchor] = (value, [], True)
        self._add(value, event.start_mark, is_scalar=True)

    def _resolve(self, text: str, implicit: Any) -> str:
        key = (text, implicit[0], implicit[1], self.loader.yaml_version)
        tag = self.resolved.get(key)
        if tag is None:
            found = self.resolver.resolve(ScalarNode, text, implicit)
            # a resolved Tag's suffix is the whole tag; str() would URI-decode it (~20 us a scalar)
            tag = found.suffix if getattr(found, "handle", 0) is None else str(found)
            if len(self.resolved) < 4096:
                self.resolved[key] = tag
        return tag

    def _construct(self, tag: str, text: str, event: Any) -> Any:
        if self.loader.yaml_version is None:  # YAML 1.2's common forms, without building a node
            if tag == _INT and _DECIMAL.fullmatch(text):
                return int(text)
            if tag == _BOOL and text.lower() in ("true", "false"):
                return text.lower() == "true"
            if tag == _NULL:
                return None
        make = SafeConstructor.yaml_constructors.get(tag)
        if make is None:  # an unknown tag (!env FOO) is dropped: the model judges the text
            return text
        node = ScalarNode(tag, text, event.start_mark, event.end_mark, event.style)
        try:
            if self.loader.yaml_version is None:
                value = make(self.constructor, node)
            else:  # ruamel warns (on stderr) about some YAML 1.1 forms
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    value = make(self.constructor, node)
        except Exception:  # noqa: BLE001 - any constructor failure is bad input: say where
            name = tag.replace("tag:yaml.org,2002:", "!!")
            raise ComposeError(event.start_mark, f"cannot read {short(text)} as {name}") from None
        return _plain_scalar(value)

    # --- placing a finished value ---------------------------------------------------------

    def _child_path(self) -> Path:
        if not self.stack:
            return ()
        top = self.stack[-1]
        if top.kind == "seq":
            return (*top.path, len(top.value))
        return (*top.path, top.key[0]) if top.key is not _NO_KEY else top.path

    def _add(self, value: Any, mark: Any, *, is_scalar: bool) -> None:
        at = (mark.line + 1, mark.column + 1)
        self.nodes += 1
        if self.nodes + self.aliased > MAX_NODES:
            raise ComposeError(mark, f"the spec holds more than {MAX_NODES:,} keys and values (the limit)")
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        if top.kind == "seq":
            self.log.append(((*top.path, len(top.value)), None, at))
            top.value.append(value)
            return
        if top.key is _NO_KEY:
            key = value if isinstance(value, str) else str(value)  # 1: or true: as the model sees it
            if key in top.value:
                raise ComposeError(mark, f'found duplicate key "{key}"')
            top.key = (key, mark, False)
            return
        key, key_mark, is_merge = top.key
        top.key = _NO_KEY
        if is_merge:
            self._merge_value(top, value, mark)
            return
        self.log.append(((*top.path, key), (key_mark.line + 1, key_mark.column + 1), at))
        top.value[key] = value

    def _merge(self, top: _Frame, value: Any, relative: list[Entry], mark: Any) -> None:
        """``<<: *anchor``: the anchored mapping's keys, where the mapping has none of its own."""
        if not isinstance(value, dict):
            raise ComposeError(mark, "a merge key '<<' takes a mapping or a list of mappings")
        top.key = _NO_KEY
        top.merges.append(value)
        top.merge_log[:0] = [(top.path + path, key, at) for path, key, at in relative]  # earlier wins

    def _merge_value(self, top: _Frame, value: Any, mark: Any) -> None:
        """``<<:`` followed by an inline mapping or a list of them (its entries are already logged)."""
        sources = value if isinstance(value, list) else [value]
        if not sources or not all(isinstance(source, dict) for source in sources):
            raise ComposeError(mark, "a merge key '<<' takes a mapping or a list of mappings")
        top.merges.extend(sources)
        prefix = len(top.path) + 1
        moved, kept = [], []
        for entry in self.log[top.log_start:]:
            path = entry[0]
            is_merged = len(path) > len(top.path) and path[len(top.path)] == "<<" and len(path) > prefix
            (moved if is_merged else kept).append(entry)
        del self.log[top.log_start:]
        self.log.extend(kept)
        if isinstance(value, list):  # drop the index; the first mapping wins, so it goes last
            moved = sorted(moved, key=lambda entry: -entry[0][prefix])  # stable within one source
            moved = [(top.path + path[prefix + 1:], key, at) for path, key, at in moved if len(path) > prefix + 1]
        else:
            moved = [(top.path + path[prefix:], key, at) for path, key, at in moved]
        top.merge_log[:0] = moved


def _plain_scalar(value: Any) -> Any:
    """Scalars the model knows stay; other YAML types (timestamps, binary) become text."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return str(value)
