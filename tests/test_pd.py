"""Prefill/decode disaggregation (issue 22): what the plan gives each instance and the router, and the
kv-transfer check's judgement, on recorded output of the H200 run (tests/fixtures/gpu/h200-pd/)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from vllmgen.render.compile import plan_file
from vllmgen.runner import faults, kvtransfer

ROOT = Path(__file__).resolve().parents[1]
H200 = ROOT / "tests" / "fixtures" / "gpu" / "h200-pd"


def _section(transcript: str, title: str) -> str:
    rest = transcript[transcript.index(f"### {title}"):].split("\n", 1)[1]
    return rest.split("\n###", 1)[0]


def _argv(node) -> list[str]:  # noqa: ANN001
    return list(node.container.command)


def _flag(argv: list[str], name: str) -> str:
    return argv[len(argv) - 1 - argv[::-1].index(name) + 1]


def test_one_node_example_plans_three_instances_with_their_roles_gpus_and_ports():
    _, plan = plan_file(ROOT / "specs" / "pd-one-node.yaml")
    assert [n.name for n in plan.nodes] == ["decode-0", "prefill-0", "prefill-1"]  # decode starts first
    decode, prefill0, prefill1 = plan.nodes
    assert decode.gpu_ids == (4, 5, 6, 7) and prefill0.gpu_ids == (0, 1) and prefill1.gpu_ids == (2, 3)
    for node, role, port, tp, side in ((decode, "kv_consumer", "8200", "4", "5602"),
                                      (prefill0, "kv_producer", "8100", "2", "5600"),
                                      (prefill1, "kv_producer", "8101", "2", "5601")):
        argv = _argv(node)
        assert json.loads(_flag(argv, "--kv-transfer-config")) == {"kv_connector": "NixlConnector", "kv_role": role}
        assert _flag(argv, "--port") == port and _flag(argv, "--tensor-parallel-size") == tp
        assert _flag(argv, "--host") == "127.0.0.1"  # the router and the gateway run on the same host
        env = dict(node.container.env)
        assert env["VLLM_NIXL_SIDE_CHANNEL_PORT"] == side
        assert env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == "127.0.0.1"  # every instance on one host
    assert "port" not in plan.serve_config and "tensor-parallel-size" not in plan.serve_config


def test_two_node_example_reaches_the_prefill_node_and_sets_ucx_from_its_nics():
    _, plan = plan_file(ROOT / "specs" / "pd-two-node.yaml")
    prefill = plan.node("prefill-0")
    env = dict(prefill.container.env)
    assert env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == "10.0.0.22"  # the decode node dials it
    assert env["UCX_NET_DEVICES"] == "mlx5_0:1,mlx5_1:1" and env["UCX_TLS"] == "rc,cuda_copy,cuda_ipc"
    assert _flag(_argv(prefill), "--host") == "10.0.0.22"  # the router on the other node reaches it
    argv = plan.router.argv()
    assert argv[argv.index("--vllm-pd-disaggregation"):] == (
        "--vllm-pd-disaggregation", "--kv-connector", "nixl", "--prefill", "http://10.0.0.22:8100",
        "--prefill", "http://10.0.0.22:8101", "--decode", "http://127.0.0.1:8200")
    assert _flag(list(argv), "--prefill-policy") == "cache_aware" and "--decode-policy" not in argv


def test_router_gets_the_key_for_the_instances_from_the_environment_never_argv():
    _, plan = plan_file(ROOT / "specs" / "pd-one-node.yaml")
    container = plan.router_container
    assert [(s.name, s.from_env) for s in container.secrets] == [("OPENAI_API_KEY", "QWEN_API_KEY")]
    assert "--api-key" not in container.command
    start = (ROOT / "build" / "qwen3-pd" / "router" / "start.sh").read_text()
    assert 'export OPENAI_API_KEY="${QWEN_API_KEY}"' in start


def test_rendered_serve_command_quotes_the_json_once():
    start = (ROOT / "build" / "qwen3-pd" / "nodes" / "prefill-0" / "start.sh").read_text()
    line = next(line for line in start.splitlines() if "--kv-transfer-config" in line)
    words = shlex.split(line)
    assert json.loads(words[words.index("--kv-transfer-config") + 1])["kv_role"] == "kv_producer"


# --- the kv-transfer check, on what the H200 showed -------------------------------------------------------

def _metrics(title: str) -> kvtransfer.Counters:
    return kvtransfer.counters(_section((H200 / "pd-apply.txt").read_text(), title))


def test_recorded_metrics_parse_to_the_counters_vllm_showed():
    before = _metrics("decode's NIXL metrics before one more completion through the gateway")
    after = _metrics("decode's NIXL metrics after")
    assert before == kvtransfer.Counters(5, 622592, 0, True)
    assert after == kvtransfer.Counters(6, 786432, 0, True)


def test_a_request_whose_blocks_moved_passes():
    log = (H200 / "pd-decode.log").read_text()
    before = _metrics("decode's NIXL metrics before one more completion through the gateway")
    after = _metrics("decode's NIXL metrics after")
    evidence = kvtransfer.judge(before, after, log)
    assert evidence.moved, evidence.detail
    assert "1 NIXL transfer(s), 163840 bytes" in evidence.detail


def test_a_decode_that_recomputed_the_prompt_fails():
    log = (H200 / "pd-decode.log").read_text()
    same = _metrics("decode's NIXL metrics after")
    evidence = kvtransfer.judge(same, same, log)  # the answer came, the counters did not move
    assert not evidence.moved and "recomputed the prompt" in evidence.detail


def test_a_decode_without_the_connector_fails_even_with_an_answer():
    evidence = kvtransfer.judge(kvtransfer.Counters(), kvtransfer.counters("vllm:prompt_tokens_total 66.0\n"), "")
    assert not evidence.moved and "no vllm:nixl_* metrics" in evidence.detail


def test_failed_transfers_or_a_missing_handshake_fail():
    before = kvtransfer.Counters(1, 100, 0, True)
    assert not kvtransfer.judge(before, kvtransfer.Counters(2, 200, 1, True), "NIXL compatibility check passed").moved
    missing = kvtransfer.judge(before, kvtransfer.Counters(2, 200, 0, True), "INFO nothing about NIXL")
    assert not missing.moved and "handshake" in missing.detail


def test_wait_gives_vllm_time_to_publish_then_gives_up():
    readings = iter([(kvtransfer.Counters(1, 10, 0, True), ""),
                     (kvtransfer.Counters(2, 20, 0, True), "Transfer plan: TransferTopology(tp_ratio=1)")])
    clock = iter(range(100))
    verdict = kvtransfer.wait_moved(lambda: {"decode-0": next(readings)}, {"decode-0": kvtransfer.Counters(1, 10)},
                                    sleep=lambda _: None, clock=lambda: next(clock))
    assert verdict.moved
    stuck = kvtransfer.wait_moved(lambda: {"decode-0": (kvtransfer.Counters(1, 10, 0, True), "")},
                                  {"decode-0": kvtransfer.Counters(1, 10, 0, True)}, timeout=3,
                                  sleep=lambda _: None, clock=lambda: next(clock))
    assert not stuck.moved and stuck.lines[0].startswith("decode-0: no KV blocks moved")


# --- the H200 run itself --------------------------------------------------------------------------------

def test_h200_apply_moved_the_kv_cache_through_the_router_and_gateway():
    text = (H200 / "pd-apply.txt").read_text()
    assert "apply rc=0" in text and "status rc=0" in text and "down rc=0" in text
    assert "router: created (http://127.0.0.1:8090 in front of 2 server(s)" in text
    assert "without the API key at http://127.0.0.1:8812: 18 of 18 paths refused" in text
    assert "kv-transfer: ok (http://127.0.0.1:8812/v1/completions answered; decode-0: 1 NIXL transfer(s)" in text
    answer = _section(text, "POST /v1/completions through the gateway, with the key")
    assert "___prefill_addr_127.0.0.1:8100___decode_addr_127.0.0.1:8200" in answer and "http=200" in answer
    assert _section(text, "the same without the key").strip() == "http=401"
    assert _section(text, "processes left (vllm, nginx, router; not zombies):").strip() == "(end)"
    assert _section(text, "nvidia-smi after down").strip() == "(end)"
    status = json.loads((H200 / "pd-status.json").read_text())
    assert status["kv_transfer"]["decode-0"]["transfers"] >= 1 and status["router"]["health"] == 200


def test_h200_decode_log_shows_the_nixl_handshake_and_its_harmless_warning_is_no_fault():
    decode = (H200 / "pd-decode.log").read_text()
    assert "Backend UCX was instantiated" in decode and kvtransfer.handshakes(decode)
    # vLLM 0.26 logs nixl_ep's missing torch 2.11 build as a WARNING with a traceback: not an engine failure
    assert "No module named 'nixl_ep_cu13" in decode
    assert faults.scan(decode) is None and faults.scan((H200 / "pd-prefill.log").read_text()) is None


def test_an_engine_traceback_logged_as_error_is_still_a_fault():
    log = ("(EngineCore pid=9) ERROR 12-03 16:20:27 [core.py:1] Traceback (most recent call last):\n"
           "(EngineCore pid=9) ERROR 12-03 16:20:27 [core.py:1]   File \"x.py\", line 1, in <module>\n"
           "(EngineCore pid=9) ERROR 12-03 16:20:27 [core.py:1] ModuleNotFoundError: No module named 'nixl'\n")
    fault = faults.scan(log)
    assert fault is not None and "No module named 'nixl'" in fault.line


@pytest.mark.parametrize("target", ["pd", "combined"])
def test_h200_benchmark_recorded_both_targets_side_by_side(target: str):
    bench = json.loads((H200 / "pd-bench.json").read_text())
    got = bench["results"][target]
    assert len(bench["raw"][target]["ttft"]) == bench["rounds"] == 20
    assert 0 < got["ttft"]["median_s"] < got["total"]["median_s"]
