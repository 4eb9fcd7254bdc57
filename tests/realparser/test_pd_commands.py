"""Prefill/decode disaggregation's commands through the real parsers: every instance's `vllm serve` argv
(the shared --config YAML, then its --port, --tensor-parallel-size and --kv-transfer-config JSON) through
vLLM's own parser, and the router's argv through vllm-router 0.1.17's own argument parser and its
validation (the cached venv tests/runner/test_router_e2e.py makes)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from vllmgen.plan.plan import CONFIG_IN_CONTAINER
from vllmgen.render.compile import plan_file

ROOT = Path(__file__).resolve().parents[2]
SPECS = [ROOT / "specs" / "pd-one-node.yaml", ROOT / "specs" / "pd-two-node.yaml"]

pytestmark = [pytest.mark.slow, pytest.mark.realparser]

ROUTER_CHECK = """
import json, sys
from vllm_router.launch_router import parse_router_args
out = []
for argv in json.load(sys.stdin):
    try:
        args = parse_router_args(argv)
        args._validate_router_args()
        out.append({"ok": True, "pd": args.vllm_pd_disaggregation, "prefill": args.prefill_urls,
                    "decode": args.decode_urls, "policy": args.policy, "prefill_policy": args.prefill_policy,
                    "kv_connector": args.kv_connector, "host": args.host, "port": args.port})
    except (SystemExit, ValueError) as exc:
        out.append({"ok": False, "error": repr(exc)})
print(json.dumps(out))
"""


def test_every_instance_serve_command_parses_with_its_kv_transfer_config(parse_check):
    items, expected = [], {}
    for spec in SPECS:
        _, plan = plan_file(spec)
        config = ROOT / "build" / plan.name / "serve-config.yaml"
        for node in plan.nodes:
            argv = [str(config) if arg == CONFIG_IN_CONTAINER else arg for arg in plan.serve_argv(node)]
            key = f"{plan.name}/{node.name}"
            items.append({"id": key, "argv": argv, "config": None})
            expected[key] = ("kv_producer" if node.name.startswith("prefill") else "kv_consumer",
                             int(argv[argv.index("--port") + 1]), int(argv[argv.index("--tensor-parallel-size") + 1]))
    results = parse_check(items)
    assert {k: r["error"] for k, r in results.items() if not r["ok"]} == {}
    for key, (role, port, tp) in expected.items():
        parsed = results[key]["set"]
        # the instance's flags win over the shared YAML, and the JSON arrives as vLLM's KVTransferConfig
        assert parsed.get("port", 8000) == port and parsed.get("tensor_parallel_size", 1) == tp, parsed
        config = json.dumps(parsed["kv_transfer_config"])
        assert "NixlConnector" in config and role in config, config
        assert parsed["served_model_name"] == ["qwen3-32b"]


def test_a_broken_kv_transfer_config_is_refused_by_the_same_parser(parse_check):
    """The check above can fail: vLLM's parser refuses JSON that is not JSON."""
    results = parse_check([{"id": "bad", "argv": ["m", "--kv-transfer-config", "{kv_connector: Nixl"],
                            "config": None}])
    assert not results["bad"]["ok"]


def _router_python() -> Path:
    from infra import cache  # the venv tests/runner/test_router_e2e.py makes (vllm-router from PyPI)

    python = cache.cache_dir() / "vllm-router-0.1.17" / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no {python}: run tests/runner/test_router_e2e.py once to make it")
    return python


def _router_parse(argvs: list[list[str]]) -> list[dict]:
    proc = subprocess.run([str(_router_python()), "-c", ROUTER_CHECK], input=json.dumps(argvs),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_router_argv_passes_vllm_routers_own_parser_in_pd_mode():
    plans = [plan_file(spec)[1] for spec in SPECS]
    results = _router_parse([list(plan.router.argv()) for plan in plans])
    for plan, result in zip(plans, results, strict=True):
        assert result["ok"], result
        assert result["pd"] is True and result["kv_connector"] == "nixl"
        assert [url for url, _bootstrap in result["prefill"]] == [w.url for w in plan.router.prefill]
        assert result["decode"] == [w.url for w in plan.router.decode]
        assert (result["host"], result["port"]) == (plan.router.host, plan.router.port)
    assert results[1]["prefill_policy"] == "cache_aware"


def test_router_parser_refuses_pd_mode_without_a_decode():
    """The check above can fail: vllm-router's validation refuses P/D mode with no --decode."""
    plan = plan_file(SPECS[0])[1]
    argv = list(plan.router.argv())
    cut = argv.index("--decode")
    result = _router_parse([argv[:cut] + argv[cut + 2:]])[0]
    assert not result["ok"] and "requires --decode" in result["error"]


def test_the_kubernetes_pd_routers_args_pass_vllm_routers_own_parser():
    """The router Deployment of a Kubernetes P/D build: its args as rendered, the instances by Service name."""
    import yaml

    router = yaml.safe_load((ROOT / "build" / "qwen3-pd-k8s" / "deployment-router.yaml").read_text())
    (container,) = router["spec"]["template"]["spec"]["containers"]
    result = _router_parse([container["args"]])[0]
    assert result["ok"], result
    assert result["pd"] is True and result["kv_connector"] == "nixl"
    assert [url for url, _bootstrap in result["prefill"]] == ["http://qwen3-pd-k8s-prefill-0:8100",
                                                             "http://qwen3-pd-k8s-prefill-1:8101"]
    assert result["decode"] == ["http://qwen3-pd-k8s-decode-0:8200"]
