"""Serve options checked against the flag catalog of the spec's vLLM version (issue: renamed flags).

Releases rename and drop flags (`--enable-reasoning` is gone since v0.10) and change their
registries of parsers and speculative methods; a typo here only shows when the server fails to
start on a GPU host. The catalog (vllmgen/spec/catalogs/, generated from vLLM's own parser) moves that
failure to `validate`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from vllmgen.spec import catalog
from vllmgen.errors import short
from vllmgen.spec.rules.core import OWNED_FLAGS, Finding
from vllmgen.spec.model import Spec


def catalog_for(spec: Spec) -> tuple[catalog.Catalog, str | None]:
    return catalog.load_catalog(spec.image.vllm_version or "latest")


def serve_flags_exist(spec: Spec) -> Iterator[Finding]:
    cat, warning = catalog_for(spec)
    if warning:
        yield Finding(("image", "base"), warning, "warning")
    yield from _extra_args(spec, cat)
    yield from _registry(("serve", "reasoning_parser"), spec.serve.reasoning_parser, cat.reasoning_parsers, cat, "reasoning parser")
    yield from _registry(("serve", "tool_call_parser"), spec.serve.tool_call_parser, cat.tool_call_parsers, cat, "tool-call parser")
    method = (spec.serve.speculative_config or {}).get("method")
    if isinstance(method, str):
        yield from _registry(
            ("serve", "speculative_config", "method"), method, cat.speculative_methods, cat, "speculative method"
        )


def _extra_args(spec: Spec, cat: catalog.Catalog) -> Iterator[Finding]:
    """Read extra_args as vLLM's argparse parser does: each flag takes its nargs of values
    (none, one, an optional one, one or more), each value of the flag's type and choices."""
    args = spec.serve.extra_args
    index = 0
    while index < len(args):
        arg, at = args[index], ("serve", "extra_args", index)
        index += 1
        if _is_value(arg):
            yield Finding(at, "extra_args starts with a flag such as '--max-num-batched-tokens'" if index == 1
                          else f"{short(arg)} is not a flag, and the flag before it takes no more values")
            continue
        info = cat.lookup(arg)
        flag, inline = catalog.split_flag(arg)
        name = info.name if info else flag
        if name in OWNED_FLAGS:
            yield Finding(at, f"{name} is set by vllmgen from {OWNED_FLAGS[name]}")
        if info is None:
            yield Finding(at, _unknown_flag(arg, cat))
            while index < len(args) and _is_value(args[index]):  # its values: one error, not several
                index += 1
            continue
        nargs = 0 if info.negated or not info.takes_value else info.nargs
        dotted = "." in flag  # --compilation-config.mode 3: one key of a JSON option, any text
        if dotted:
            nargs = None
        if inline is not None:
            if nargs == 0:
                yield Finding(at, f"{name} takes no value (write it alone, without '={short(inline)[1:-1]}')")
                continue
            values = [(inline, at)]
        else:
            values = []
            most = 1 if nargs in (None, "?") else len(args) if nargs in ("+", "*") else int(nargs)
            while len(values) < most and index < len(args) and _is_value(args[index]):
                values.append((args[index], ("serve", "extra_args", index)))
                index += 1
            least = 1 if nargs in (None, "+") else 0 if nargs in ("?", "*") else int(nargs)
            if len(values) < least:
                count = "one or more values" if nargs == "+" else "a value" if least == 1 else f"{least} values"
                yield Finding(at, f"{name} expects {count}")
                continue
        if not dotted:
            for value, where in values:
                problem = _bad_value(info, value)
                if problem:
                    yield Finding(where, f"{name} {problem}")


_HUMAN_INT = re.compile(r"[0-9]+(\.[0-9]+)?[kKmMgGtT]?")
_TYPES = {
    "int": ("an integer", lambda v: int(v)),
    "float": ("a number", lambda v: float(v)),
    "human_int": ("a count such as 8192, 32k or 1M", lambda v: _human(v)),
    "human_int_or_auto": ("'auto' or a count such as 8192, 32k or 1M", lambda v: v == "auto" or _human(v)),
    "json": ("JSON, such as '{\"key\": 1}'", lambda v: json.loads(v)),
}


def _human(value: str) -> bool:
    if not _HUMAN_INT.fullmatch(value):
        raise ValueError(value)
    return True


def _bad_value(info: catalog.FlagInfo, value: str) -> str | None:
    """What is wrong with ``value`` for the flag, or None: the flag's type, then its choices."""
    if info.default is None and value in ("", "None"):
        return None  # vLLM's optional types read these as None
    kind = _TYPES.get(info.type)
    converted: object = value
    if kind is not None:
        try:
            result = kind[1](value)
        except (ValueError, TypeError, RecursionError):
            return f"expects {kind[0]}, got {short(value)}"
        converted = result if info.type in ("int", "float") else value
    if info.choices is not None:
        choices = [str(choice) for choice in info.choices]
        if str(converted) not in choices and str(converted).lower() not in choices:
            import difflib  # only on the error path

            hint = difflib.get_close_matches(value[:100], choices, n=1, cutoff=0.6)
            tail = f"did you mean {hint[0]!r}?" if hint else f"expected one of {', '.join(choices)}"
            return f"has no choice {short(value)}; {tail}"
    return None


def _is_value(token: str) -> bool:
    """argparse's test: a token is a value unless it starts with '-' and is not a number."""
    return not token.startswith("-") or _is_number(token)


# Removals whose replacement a did-you-mean cannot guess.
REPLACED = {
    "--enable-reasoning": "removed in vLLM 0.10: setting serve.reasoning_parser turns reasoning on",
}


def _unknown_flag(arg: str, cat: catalog.Catalog) -> str:
    flag = catalog.split_flag(arg)[0]
    message = f"vLLM {cat.version} has no flag {flag if len(flag) <= 80 else short(flag)}"
    if flag in REPLACED:
        return f"{message}; {REPLACED[flag]}"
    elsewhere = [v for v in catalog.versions_with(flag) if v != cat.version]
    if elsewhere:
        message += f" (it exists in vLLM {', '.join(elsewhere)})"
    hint = cat.suggest(flag)
    return message + (f"; did you mean {hint}?" if hint else "")


def _registry(path, value, known, cat, what) -> Iterator[Finding]:
    if value is None or value in known or value.endswith("-plugin"):
        return
    hint = cat.suggest(value, known)
    tail = f"did you mean {hint!r}?" if hint else f"known: {', '.join(sorted(known))}"
    yield Finding(path, f"vLLM {cat.version} has no {what} {short(value)}; {tail}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
