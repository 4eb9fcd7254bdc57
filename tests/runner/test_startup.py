"""Startup phases in apply and status: the runner's clock around vLLM's log (a recorded CPU start)."""

from __future__ import annotations

import io
import json

from vllmgen.runner import phases
from vllmgen.runner import status, targets
from vllmgen.runner.dryrun import Recorder
from vllmgen.runner.executor import ContainerState

from .test_steps_dryrun import ROOT, _apply, _compiled

LOGS = ROOT / "tests" / "fixtures" / "vllm-logs"
COLD = (LOGS / "cpu-0.32.0-compile-cold.log").read_text(encoding="utf-8")
SINGLE = ROOT / "specs" / "seed-single-node.yaml"


def _upto(text: str) -> str:
    return COLD[:COLD.index(text)]


def test_current_phase_follows_the_log() -> None:
    assert phases.current("") == "python start"  # nothing logged yet: the interpreter and its imports
    assert phases.current(_upto("Initializing a V1 LLM engine")) == "process start"
    assert phases.current(_upto("Initializing model took")) == "model load"
    assert phases.current(_upto("saved AOT compiled function")) == "compile"
    assert phases.current(_upto("Starting vLLM")) == "api server"


def _with_log(runner, log: str) -> None:  # noqa: ANN001
    for executor in runner.executors.values():
        executor.logs = lambda name, tail=30, timestamps=False: log


def test_apply_reports_runner_and_log_phases_in_order() -> None:
    runner, _, progress = _apply(SINGLE)
    _with_log(runner, COLD)
    report = runner.run()
    [entry] = report.startup
    names = [row["name"] for row in entry["phases"]]
    assert names == ["image", "container start", "python start", "process start", "workers start", "model load", "compile",
                     "cuda graphs", "engine init", "api server", "first healthy answer", "first token"]
    rows = {row["name"]: row for row in entry["phases"]}
    assert rows["compile"]["seconds"] == 54.0 and rows["compile"]["source"] == "log"
    assert rows["cuda graphs"]["seconds"] is None and rows["cuda graphs"]["note"].startswith("not captured")
    assert rows["first token"]["seconds"] >= rows["first healthy answer"]["seconds"] >= 0
    assert entry["ready_seconds"] == 112.0
    text = progress.getvalue()
    assert "phase: api server" in text or "/health" in text
    assert "startup of qwen3-next-single-gpu-1 on gpu-1:" in text and "compile                  54.0 s" in text
    assert json.loads(json.dumps(report.as_dict()))["startup"][0]["node"] == "gpu-1"


def test_status_carries_the_phases_of_the_running_head() -> None:
    compiled, _ = _compiled(SINGLE)
    plan = compiled.plan
    recorder = Recorder(stream=io.StringIO())
    executors = targets.executors(plan, ["gpu-1"], remote=True, dry_run=recorder)
    executors["gpu-1"].engine.containers = {plan.head.container.name: ContainerState(
        plan.head.container.name, "running", None, dict(plan.head.container.labels))}
    executors["gpu-1"].logs = lambda name, tail=30, timestamps=False: COLD
    report = status.collect(plan, executors, targets.http_client(plan, recorder))
    phases = {row["name"]: row["seconds"] for row in report["endpoint"]["startup"]["phases"]}
    assert phases["engine init"] == 58.27 and "image" not in phases
    assert "startup of qwen3-next-single-gpu-1 on gpu-1:" in status.table(report)
