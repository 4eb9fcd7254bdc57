"""Parse `vllm serve` argument lists with vLLM's own parser; start nothing.

Run with the python of a venv made by tools/setup_vllm_cpu.sh. Reads a JSON list
from stdin, one item per command:
    {"id": "svc-a", "argv": ["MODEL", "--tensor-parallel-size", "2"],
     "config": "build/svc-a/config.yaml" or null,   # passed as --config PATH
     "validate": false}                              # optional, see below
and prints a JSON list, in the same order (with --serve: one such list a line, answered by one JSON line,
until stdin ends, so a test session imports vLLM once):
    {"id": "svc-a", "ok": true, "error": null, "set": {"tensor_parallel_size": 2}}
"set" holds every parsed value that differs from its default, so a caller can
check that a flag (or YAML key) landed where it meant it to. "validate": true
also runs `vllm serve`'s pre-launch checks (validate_parsed_serve_args), which
may look at files (a chat template path) that exist only where vLLM runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_catalog import jsonable, parser_registries, serve_parsers


class ParseError(Exception):
    pass


def _raise(self, message):
    raise ParseError(message)


# argparse reports a bad command line by printing usage and exiting; raise instead.
argparse.ArgumentParser.error = _raise


def check_registries(args, registries: dict) -> None:
    """The parser takes any parser name; `vllm serve` checks them against its
    registries while setting up the server, before loading the model."""
    # a plugin may register more names: leave those to vLLM
    reasoning = getattr(args, "reasoning_parser", None)
    if (
        reasoning
        and not getattr(args, "reasoning_parser_plugin", None)
        and reasoning not in registries["reasoning_parsers"]
    ):
        raise KeyError(f"invalid reasoning parser: {reasoning}")
    tool = getattr(args, "tool_call_parser", None)
    if (
        getattr(args, "enable_auto_tool_choice", False)
        and not getattr(args, "tool_parser_plugin", None)
        and tool not in registries["tool_call_parsers"]
    ):
        raise KeyError(f"invalid tool call parser: {tool}")


def check(top, serve, registries: dict, item: dict) -> dict:
    argv = ["serve", *item["argv"]]
    if item.get("config"):
        argv += ["--config", item["config"]]
    result = {"id": item["id"], "ok": False, "error": None, "set": None}
    try:
        args = top.parse_args(argv)
        if item.get("validate"):  # as main() does, before the server setup
            from vllm.entrypoints.cli.serve import ServeSubcommand

            ServeSubcommand().validate(args)
        check_registries(args, registries)
    except ParseError as exc:
        result["error"] = str(exc)
    except SystemExit as exc:  # --help, --version
        result["error"] = f"parser exited with status {exc.code}"
    except Exception as exc:  # noqa: BLE001 -- vLLM's own checks raise ValueError, AssertionError, ...
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        result["error"] = f"{type(exc).__name__}: {msg}"
    else:
        result["ok"] = True
        result["set"] = {
            k: jsonable(v)
            for k, v in sorted(vars(args).items())
            if k != "subparser" and v != serve.get_default(k)
        }
    return result


def main() -> int:
    serving = sys.argv[1:] == ["--serve"]
    items = None if serving else json.load(sys.stdin)
    # vLLM logs to stdout; keep the real stdout for the JSON alone.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    top, serve = serve_parsers()
    registries = parser_registries()
    if not serving:
        results = [check(top, serve, registries, item) for item in items]
        out.write(json.dumps(results, indent=1) + "\n")
        out.flush()
        return 0
    for line in sys.stdin:
        results = [check(top, serve, registries, item) for item in json.loads(line)]
        out.write(json.dumps(results) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
