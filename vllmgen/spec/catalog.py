"""Catalogs of `vllm serve` flags, one per vLLM version, shipped as JSON in vllmgen/spec/catalogs/.

Each catalog is generated from a real vLLM by tools/make_catalog.py. This module only
reads them: stdlib, loaded lazily, cached, so the validate/render path stays fast.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cache, lru_cache
from importlib import resources
from typing import Any

_FILE = re.compile(r"^vllm-(\d+(?:\.\d+)*)\.json$")
# "v0.32.0", "0.32", "0.11.0.post2", "0.32.0+cpu": the numeric release is what counts.
_VERSION = re.compile(r"^v?(\d+(?:\.\d+){0,3})(?:[.+-]?[A-Za-z][A-Za-z0-9.+-]*)?$")


@dataclass(frozen=True)
class FlagInfo:
    """One `vllm serve` option, as the catalog records it.

    `name` is the form that was looked up once normalised: for `--no-x` it is
    `--no-x` itself (negated=True, takes no value) and `boolean_pair` points back
    to `--x`. `nargs` "?" means the value is optional.
    """

    name: str
    aliases: tuple[str, ...]
    takes_value: bool
    type: str  # int, float, str, bool, json, json_or_str, human_int, human_int_or_auto
    choices: tuple[Any, ...] | None
    boolean_pair: str | None
    default: Any
    nargs: int | str | None
    group: str | None = None
    deprecated: bool = False
    negated: bool = False


@dataclass(frozen=True)
class Catalog:
    version: str
    flags: dict[str, FlagInfo]
    reasoning_parsers: tuple[str, ...]
    tool_call_parsers: tuple[str, ...]
    speculative_methods: tuple[str, ...]
    # every accepted spelling (aliases, --no- pairs) -> its FlagInfo
    _index: dict[str, FlagInfo] = field(default_factory=dict, repr=False, compare=False)

    def lookup(self, flag: str) -> FlagInfo | None:
        """The option `flag` names, in any form vLLM accepts: `--a_b`, `--a-b=1`,
        an alias (`-tp`), the `--no-` pair of a boolean, `--json-flag.key` (or
        `-cc.key`), `-O3`.
        Note vLLM's parser also takes unique prefixes (`--tensor-parallel`); the
        catalog does not, on purpose: a deployment should spell flags out."""
        name = normalise_flag(flag)
        info = self._index.get(name)
        if info is None and name.startswith("-") and "." in name:
            # --compilation-config.mode 3 sets one key of a JSON option
            base = self._index.get(name.split(".", 1)[0])
            if base is not None and base.type in ("json", "json_or_str"):
                info = base
        return info

    def suggest(self, name: str, candidates: Iterable[str] | None = None) -> str | None:
        """The closest of `candidates` (default: every long flag) to `name`, if any is close."""
        import difflib  # only on the error path

        pool = list(self._index if candidates is None else candidates)
        if candidates is None:
            pool = [c for c in pool if c.startswith("--")]
        target = normalise_flag(name) if name.startswith("--") else name
        found = difflib.get_close_matches(target, pool, n=1, cutoff=0.75)
        return found[0] if found else None


def split_flag(token: str) -> tuple[str, str | None]:
    """A command-line token as (canonical flag name, inline value or None), the way
    vLLM reads it: `--trust_remote_code` -> `--trust-remote-code` (`_` becomes `-`
    up to the first `.`), `--port=8000` -> (`--port`, "8000"), `-O3` ->
    (`--optimization-level`, "3")."""
    if token.startswith("-O") and token != "-O":
        return "--optimization-level", token[3:] if token[2:3] == "=" else token[2:]
    if token == "-O":
        return "--optimization-level", None
    name, eq, value = token.partition("=")
    if name.startswith("--"):
        head, dot, rest = name[2:].partition(".")
        name = "--" + head.replace("_", "-") + dot + rest
    return name, (value if eq else None)


def normalise_flag(token: str) -> str:
    return split_flag(token)[0]


def parse_version(text: str) -> tuple[int, ...]:
    m = _VERSION.fullmatch(text.strip())
    if not m:
        raise ValueError(
            f"not a vLLM version: {text!r} (expected e.g. 0.32.0, v0.32.0, latest)"
        )
    parts = [int(p) for p in m.group(1).split(".")]
    parts += [0] * (3 - len(parts))
    while len(parts) > 3 and parts[-1] == 0:  # 0.32.0.0 is 0.32.0
        parts.pop()
    return tuple(parts)


@lru_cache(maxsize=1)
def _files() -> dict[tuple[int, ...], str]:
    """Catalog file names by version tuple."""
    folder = resources.files(__package__) / "catalogs"
    out = {}
    for entry in folder.iterdir():
        m = _FILE.fullmatch(entry.name)
        if m:
            out[parse_version(m.group(1))] = entry.name
    return out


def available_versions() -> list[str]:
    """Versions with a catalog, oldest first."""
    return [".".join(map(str, v)) for v in sorted(_files())]


@cache
def _read(filename: str) -> Catalog:
    raw = json.loads(
        (resources.files(__package__) / "catalogs" / filename).read_text("utf-8")
    )
    flags: dict[str, FlagInfo] = {}
    index: dict[str, FlagInfo] = {}
    for name, f in raw["flags"].items():
        info = FlagInfo(
            name=name,
            aliases=tuple(f["aliases"]),
            takes_value=f["takes_value"],
            type=f["type"],
            choices=None if f["choices"] is None else tuple(f["choices"]),
            boolean_pair=f["boolean_pair"],
            default=f["default"],
            nargs=f["nargs"],
            group=f.get("group"),
            deprecated=f.get("deprecated", False),
        )
        flags[name] = info
        for spelling in (name, *info.aliases):
            index[spelling] = info
        if info.boolean_pair:
            index[info.boolean_pair] = replace(
                info,
                name=info.boolean_pair,
                aliases=(),
                boolean_pair=name,
                negated=True,
            )
    return Catalog(
        version=raw["vllm_version"],
        flags=flags,
        reasoning_parsers=tuple(raw["reasoning_parsers"]),
        tool_call_parsers=tuple(raw["tool_call_parsers"]),
        speculative_methods=tuple(raw["speculative_methods"]),
        _index=index,
    )


def load_catalog(version: str) -> tuple[Catalog, str | None]:
    """The catalog for `version`, with None; or, where there is none, the nearest
    older one (else the nearest newer) with a warning naming both versions.
    "latest" gives the newest catalog, with a warning saying which it is."""
    files = _files()
    if not files:
        raise FileNotFoundError(
            "vllmgen ships no vLLM catalogs (vllmgen/spec/catalogs/ is empty)"
        )
    newest = max(files)
    if version.strip().lower() == "latest":
        cat = _read(files[newest])
        return cat, (
            f"vLLM version 'latest' is not pinned; checking serve options against "
            f"the newest catalog, {cat.version}"
        )
    wanted = parse_version(version)
    if wanted in files:
        return _read(files[wanted]), None
    older = [v for v in files if v < wanted]
    chosen = max(older) if older else min(files)
    cat = _read(files[chosen])
    return cat, (
        f"no flag catalog for vLLM {version}; checking serve options against the "
        f"nearest {'older' if older else 'newer'} one, {cat.version}"
    )


def versions_with(flag: str) -> list[str]:
    """The catalog versions whose vLLM accepts `flag`, oldest first: for telling a
    removed flag ("last in vLLM 0.17.1") from a misspelt one."""
    return [
        v for v in available_versions() if load_catalog(v)[0].lookup(flag) is not None
    ]
