"""Every serve command in build/ parses with the real vLLM parser, --config YAML included."""

from pathlib import Path

import pytest

from vllmgen.render.compile import plan_file
from vllmgen.plan.plan import CONFIG_IN_CONTAINER

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

pytestmark = [pytest.mark.slow, pytest.mark.realparser]


def _items() -> list[dict]:
    items = []
    for spec in SPECS:
        _, plan = plan_file(spec)
        config = ROOT / "build" / plan.name / "serve-config.yaml"
        for node in plan.nodes:
            argv = plan.serve_argv(node)
            if argv is None:
                continue
            # the container sees the config at CONFIG_IN_CONTAINER; here it is in build/
            argv = [str(config) if arg == CONFIG_IN_CONTAINER else arg for arg in argv]
            assert argv[0] == plan.model_ref  # the arguments after `vllm serve`
            items.append({"id": f"{plan.name}/{node.name}", "argv": argv, "config": None, "plan": plan})
    return items


def test_every_build_serve_command_parses(parse_check):
    items = _items()
    assert len(items) >= 5  # single, cn, 2 x mp, ray head
    results = parse_check([{k: v for k, v in item.items() if k != "plan"} for item in items])
    rejected = {key: r["error"] for key, r in results.items() if not r["ok"]}
    assert rejected == {}
    for item in items:
        plan, parsed = item["plan"], results[item["id"]]["set"]
        # the YAML's options really took effect, not only parsed
        # ("set" lists only values that differ from vLLM's defaults: port 8000, TP 1)
        assert parsed.get("port", 8000) == plan.serve_config["port"], parsed
        assert parsed.get("tensor_parallel_size", 1) == plan.serve_config["tensor-parallel-size"], parsed
        assert parsed.get("served_model_name") == [plan.endpoint.served_name], parsed
