"""Data/expert-parallel serve commands, node by node, through vLLM's real parser and its serve checks.

Each layout is compiled from a spec; every node's argv (with its --config YAML) is parsed by the
pinned vLLM and the parsed values are compared with what the spec means: DP size, local size,
start rank, address, RPC port, headless, hybrid/external LB, EP, all2all backend, EPLB.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vllmgen.render.compile import compile_file
from vllmgen.spec.container_layout import CONFIG_IN_CONTAINER

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.realparser]


def _spec(name: str, nodes: int, gpus: int, serve: dict, **extra) -> dict:
    spec = {
        "version": 1, "name": name, "image": {"base": "vllm/vllm-openai:v0.32.0"},
        "model": {"source": "deepseek-ai/DeepSeek-V3", "served_name": "ds"},
        "cluster": {"backend": "mp", "nic": "eth0"},
        "nodes": [{"name": f"n{i}", "address": f"203.0.113.{10 + i}", "role": "head" if i == 0 else "worker",
                   "gpus": gpus} for i in range(nodes)],
        "serve": serve,
    }
    spec.update(extra)
    return spec


EP = {"enabled": True, "all2all_backend": "deepep_low_latency", "eplb": True,
      "eplb_config": {"num_redundant_experts": 16, "window_size": 500}}
LAYOUTS = {
    # 2 nodes x 8 GPUs, TP 2: 4 ranks per node, DP 8
    "internal": _spec("dp-internal", 2, 8, {"tensor_parallel_size": 2, "data_parallel_size": 8,
                                            "data_parallel": {"rpc_port": 13345, "api_server_count": 4}}),
    "hybrid-ep": _spec("dp-hybrid", 2, 8, {"data_parallel_size": 16, "data_parallel": {"lb": "hybrid"},
                                           "expert_parallel": EP}, router={}),
    "external": _spec("dp-external", 3, 4, {"tensor_parallel_size": 4, "data_parallel_size": 3,
                                            "data_parallel": {"lb": "external",
                                                              "address": "203.0.113.10"},
                                            "expert_parallel": {"enabled": True}}, router={}),
}


def _items(tmp_path: Path) -> list[dict]:
    items = []
    for key, spec in LAYOUTS.items():
        path = tmp_path / f"{key}.yaml"
        path.write_text(yaml.safe_dump(spec))
        compiled = compile_file(path)
        # keyless specs on documentation addresses: the front door's warning is tests/test_gateway.py's
        others = [w for w in compiled.valid.warnings if "no secrets.api_key" not in w.message]
        assert others == [], others
        config = tmp_path / f"{key}-serve-config.yaml"
        config.write_text(next(a.content for a in compiled.artifacts if a.path == "serve-config.yaml"))
        plan = compiled.plan
        for index, node in enumerate(plan.nodes):
            argv = [str(config) if arg == CONFIG_IN_CONTAINER else arg for arg in plan.serve_argv(node)]
            items.append({"id": f"{key}/{node.name}", "argv": argv, "validate": True,
                          "layout": key, "index": index})
    return items


@pytest.fixture(scope="module")
def parsed(parse_check, tmp_path_factory) -> dict:
    items = _items(tmp_path_factory.mktemp("dp"))
    results = parse_check([{k: v for k, v in item.items() if k in ("id", "argv", "validate")} for item in items])
    return {item["id"]: (item, results[item["id"]]) for item in items}


def _set(parsed: dict, key: str) -> dict:
    item, result = parsed[key]
    assert result["ok"], f"{key}: {result['error']}"
    return result["set"]


def test_every_node_parses_and_passes_serve_validation(parsed):
    rejected = {key: result["error"] for key, (_, result) in parsed.items() if not result["ok"]}
    assert rejected == {}
    assert len(parsed) == 2 + 2 + 3


def test_internal_lb_head_and_headless_follower(parsed):
    head, follower = _set(parsed, "internal/n0"), _set(parsed, "internal/n1")
    for values in (head, follower):
        assert values["data_parallel_size"] == 8 and values["tensor_parallel_size"] == 2
        assert values["data_parallel_size_local"] == 4
        assert values["data_parallel_address"] == "203.0.113.10" and values["data_parallel_rpc_port"] == 13345
        assert not values.get("data_parallel_hybrid_lb") and not values.get("data_parallel_external_lb")
    assert "headless" not in head and head.get("data_parallel_start_rank") in (None, 0)
    # the API servers run on the head alone: vLLM's `serve` refuses --api-server-count beside --headless
    assert head["api_server_count"] == 4 and follower.get("api_server_count") is None
    assert follower["headless"] is True and follower["data_parallel_start_rank"] == 4


def test_hybrid_lb_with_expert_parallel(parsed):
    for index, key in enumerate(("hybrid-ep/n0", "hybrid-ep/n1")):
        values = _set(parsed, key)
        assert values["data_parallel_size"] == 16 and values["data_parallel_size_local"] == 8
        assert values.get("data_parallel_start_rank", 0) == 8 * index
        assert values["data_parallel_hybrid_lb"] is True and "headless" not in values
        assert values["data_parallel_address"] == "203.0.113.10"
        assert values["data_parallel_rpc_port"] == 29550 or "data_parallel_rpc_port" not in values
        assert values["enable_expert_parallel"] is True
        assert values["all2all_backend"] == "deepep_low_latency"
        assert values["enable_eplb"] is True
        eplb = values["eplb_config"]
        eplb = json.loads(eplb) if isinstance(eplb, str) else eplb
        assert eplb["num_redundant_experts"] == 16 and eplb["window_size"] == 500


def test_external_lb_one_rank_per_node(parsed):
    for rank in range(3):
        values = _set(parsed, f"external/n{rank}")
        assert values["data_parallel_size"] == 3 and values["tensor_parallel_size"] == 4
        assert values.get("data_parallel_rank", 0) == rank
        assert "headless" not in values and not values.get("data_parallel_hybrid_lb")
        assert values["data_parallel_address"] == "203.0.113.10"
