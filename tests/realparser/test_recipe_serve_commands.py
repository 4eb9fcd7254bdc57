"""Specs made by `init --recipe` from the fixture recipes: every node's serve command, --config YAML included,
parsed by the real vLLM parser, and the recipe's flags landed where they meant to."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from fuzzing import run_cli  # noqa: E402
from test_recipes import CASES, SOURCE  # noqa: E402

from vllmgen.render.compile import compile_file  # noqa: E402
from vllmgen.plan.plan import CONFIG_IN_CONTAINER  # noqa: E402
from vllmgen.render.write import write  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.realparser]


def test_recipe_specs_parse_with_vllms_parser(tmp_path, parse_check):
    items, plans = [], {}
    for case, choices in sorted(CASES.items()):
        spec = tmp_path / f"{case}.yaml"
        # the parser's vLLM: the default venv's version, so the catalog and the parser agree
        outcome = run_cli(["init", "--recipe", str(SOURCE), *choices, "--vllm", "0.32.0", "-o", str(spec)])
        assert outcome.code == 0, outcome.output
        compiled = compile_file(spec)
        target = tmp_path / "build" / case  # two cases may share a deployment name
        write(compiled.artifacts, target)
        config = target / "serve-config.yaml"
        for node in compiled.plan.nodes:
            argv = compiled.plan.serve_argv(node)
            if argv is None:
                continue
            argv = [str(config) if arg == CONFIG_IN_CONTAINER else arg for arg in argv]
            items.append({"id": f"{case}/{node.name}", "argv": argv, "config": None})
            plans[f"{case}/{node.name}"] = compiled
    assert len(items) >= len(CASES)
    results = parse_check(items)
    assert {key: r["error"] for key, r in results.items() if not r["ok"]} == {}
    for key, result in results.items():
        spec, parsed = plans[key].valid.spec, result["set"]
        assert parsed.get("tensor_parallel_size", 1) == spec.serve.tensor_parallel_size, (key, parsed)
        if spec.serve.speculative_config:
            assert parsed.get("speculative_config"), (key, parsed)
        if spec.serve.tool_call_parser:
            assert parsed.get("tool_call_parser") == spec.serve.tool_call_parser, (key, parsed)
        if "--kv-cache-dtype" in spec.serve.extra_args:
            assert parsed.get("kv_cache_dtype") == "fp8", (key, parsed)
