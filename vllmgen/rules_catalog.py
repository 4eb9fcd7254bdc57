"""Serve options checked against the flag catalog of the spec's vLLM version (issue: renamed flags).

Releases rename and drop flags (`--enable-reasoning` is gone since v0.10) and change their
registries of parsers and speculative methods; a typo here only shows when the server fails to
start on a GPU host. The catalog (vllmgen/catalogs/, generated from vLLM's own parser) moves that
failure to `validate`.
"""

from __future__ import annotations

from collections.abc import Iterator

from vllmgen import catalog
from vllmgen.rules import OWNED_FLAGS, Finding
from vllmgen.spec import Spec


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
    args = spec.serve.extra_args
    expects_value = False
    for index, arg in enumerate(args):
        if expects_value:
            expects_value = False
            if not arg.startswith("--"):
                continue
        if not arg.startswith("-") or _is_number(arg):
            message = (
                "extra_args starts with a flag such as '--max-num-batched-tokens'"
                if index == 0
                else f"{arg!r} is not a flag, and the flag before it takes no value"
            )
            yield Finding(("serve", "extra_args", index), message)
            continue
        info = cat.lookup(arg)
        flag = info.name if info else catalog.normalise_flag(arg)
        if flag in OWNED_FLAGS:
            yield Finding(("serve", "extra_args", index), f"{flag} is set by vllmgen from {OWNED_FLAGS[flag]}")
        if info is None:
            yield Finding(("serve", "extra_args", index), _unknown_flag(arg, cat))
            expects_value = "=" not in arg  # a value after it belongs to it: one error, not two
            continue
        expects_value = info.takes_value and "=" not in arg and info.nargs != "?"


# Removals whose replacement a did-you-mean cannot guess.
REPLACED = {
    "--enable-reasoning": "removed in vLLM 0.10: setting serve.reasoning_parser turns reasoning on",
}


def _unknown_flag(arg: str, cat: catalog.Catalog) -> str:
    flag = catalog.split_flag(arg)[0]
    message = f"vLLM {cat.version} has no flag {flag}"
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
    yield Finding(path, f"vLLM {cat.version} has no {what} {value!r}; {tail}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
