"""A serving node's start, phase by phase: the runner's own clock (image build or pull, container start,
first healthy answer, first token) around what vLLM's log says (``vllmgen.runner.phases``: model load,
compile, CUDA graphs, engine init, API server), read with ``docker logs --timestamps``.

``Clock`` collects the runner's seconds per node during ``apply``; ``report`` joins them with the
log's phases (from the container's or process's start: the time before vLLM's first line is a phase of
its own). ``read`` and ``report_nccl``: every node's whole log, with the transports NCCL chose on a multi-GPU
deployment (``vllmgen.plan.nccl``), after apply and in status, for both runtimes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vllmgen.plan import nccl
from vllmgen.runner import phases
from vllmgen.plan.plan import Plan
from vllmgen.runner.executor import EngineError, Executor
from vllmgen.runner.host import HostError
from vllmgen.runner.progress import Progress


@dataclass
class Clock:
    """The runner's seconds per node: what it did itself and how long each took."""

    seconds: dict[str, dict[str, float | None]] = field(default_factory=dict)
    notes: dict[str, dict[str, str]] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)  # node -> monotonic time its container started

    def record(self, node: str, phase: str, seconds: float | None, note: str = "") -> None:
        self.seconds.setdefault(node, {})[phase] = seconds
        if note:
            self.notes.setdefault(node, {})[phase] = note

    def timed(self, node: str, phase: str, fn: Callable[[], Any], note: str = "") -> Any:
        begin = time.monotonic()
        value = fn()
        self.record(node, phase, time.monotonic() - begin, note)
        return value

    def since_start(self, node: str) -> float | None:
        return time.monotonic() - self.started[node] if node in self.started else None


def read_log(executor: Executor, container: str) -> str:
    """The container's whole log with Docker's timestamps; empty when it cannot be read."""
    try:
        return executor.logs(container, tail=None, timestamps=True)
    except (EngineError, HostError):
        return ""


def report(node: str, container: str, log: str, clock: Clock | None = None,
           started: datetime | None = None) -> dict[str, Any]:
    """Phases of one serving node, in order: runner's before the log's, the answers after; seconds None
    where a phase did not happen (the note says why). ``started``: the container's or process's start
    (``Executor.started_at``), from which "ready after" counts, the time before vLLM's first line its own phase."""
    parsed = phases.parse(log, started)
    own = clock.seconds.get(node, {}) if clock else {}
    notes = clock.notes.get(node, {}) if clock else {}
    rows: list[dict[str, Any]] = []
    for name in ("image", "container start"):
        if name in own:
            rows.append({"name": name, "seconds": own[name], "note": notes.get(name, ""), "source": "runner"})
    rows += [{"name": p.name, "seconds": p.seconds, "note": p.note, "source": "log"} for p in parsed.phases]
    for name in ("first healthy answer", "first token"):
        if name in own:
            rows.append({"name": name, "seconds": own[name], "note": notes.get(name, ""), "source": "runner"})
    return {"node": node, "container": container, "phases": rows, "ready_seconds": parsed.ready_seconds,
            "ready_from": parsed.ready_from, "log_seconds": parsed.log_seconds,
            "vllm_version": parsed.vllm_version, "kv_cache_tokens": parsed.kv_cache_tokens}


def table(entry: dict[str, Any]) -> str:
    lines = [f"startup of {entry['container']} on {entry['node']}:"]
    for row in entry["phases"]:
        seconds = f"{row['seconds']:7.1f} s" if row["seconds"] is not None else "      — "
        lines.append(f"  {row['name']:<21} {seconds}  {row['note']}".rstrip())
    if entry["ready_seconds"] is not None:
        since = "since it started" if entry.get("ready_from") == "start" else "since vLLM's first log line"
        lines.append(f"  {'ready after':<21} {entry['ready_seconds']:7.1f} s  {since} (vLLM listening)")
    if entry.get("log_seconds") is not None and entry.get("ready_from") == "start":
        lines.append(f"  {'log: first line -> listening':<21} {entry['log_seconds']:.1f} s")
    return "\n".join(lines)


# --- after apply and in status, the whole engine logs: NCCL's transports on multi-GPU deployments -------


def node_logs(plan: Plan, executors: Mapping[str, Executor]) -> dict[str, str]:
    """Each node's whole engine log, read once; a node whose engine does not answer is left out."""
    out = {}
    for node in plan.nodes:
        if node.name in executors:
            try:
                out[node.name] = executors[node.name].logs(node.container.name, tail=None)
            except (EngineError, HostError):
                continue
    return out


def read(plan: Plan, executors: Mapping[str, Executor], logs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Phases of the head's start and the NCCL transports seen in every node's log in scope."""
    logs = node_logs(plan, executors) if logs is None else logs
    out: dict[str, Any] = {}
    if plan.head.name in logs:
        out["startup"] = phases.parse(logs[plan.head.name]).as_dict()
    if sum(node.gpus for node in plan.nodes) > 1:
        text = "\n".join(logs.values())
        found = nccl.parse(text)
        hcas = any(dict(n.container.env).get("NCCL_IB_HCA") for n in plan.nodes)
        out["nccl"] = {"version": found.version, "transports": list(found.transports),
                       "links": [[link.src, link.dst, link.transport] for link in found.links],
                       "networks": list(found.networks), "summary": found.summary(),
                       "warnings": nccl.warnings(found, multi_node=len(plan.nodes) > 1, ib_hcas=hcas)}
    return out


def report_nccl(plan: Plan, executors: Mapping[str, Executor], progress: Progress) -> dict[str, Any]:
    """After apply: the transports NCCL chose, and warnings, from every node's log."""
    found = read(plan, executors)
    if "nccl" in found:
        progress.say(found["nccl"]["summary"], plan.head.name)
        for warning in found["nccl"]["warnings"]:
            progress.say(f"warning: {warning}", plan.head.name)
    return found
