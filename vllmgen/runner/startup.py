"""A serving node's start, phase by phase: the runner's own clock (image build or pull, container start,
first healthy answer, first token) around what vLLM's log says (``vllmgen.phases``: model load,
compile, CUDA graphs, engine init, API server), read with ``docker logs --timestamps``.

``Clock`` collects the runner's seconds per node during ``apply``; ``report`` joins them with the
log's phases; ``current`` names the phase a start is in now, for the live progress line. ``read``
and ``report_nccl``: every node's whole log, with the transports NCCL chose on a multi-GPU
deployment (``vllmgen.nccl``), after apply and in status, for both runtimes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vllmgen import nccl, phases
from vllmgen.plan import Plan
from vllmgen.runner.executor import EngineError, Executor
from vllmgen.runner.host import HostError
from vllmgen.runner.progress import Progress

SKIPPED = ("not run", "not captured")  # notes of phases that do not happen (eager mode, no CUDA)


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


def current(log: str) -> str:
    """The phase a start is in now, from its log so far."""
    startup = phases.parse(log)
    done = [i for i, phase in enumerate(startup.phases) if phase.seconds is not None]
    after = done[-1] + 1 if done else 0
    for phase in startup.phases[after:]:
        if not phase.note.startswith(SKIPPED):
            return phase.name
    return "api server"


def report(node: str, container: str, log: str, clock: Clock | None = None) -> dict[str, Any]:
    """Phases of one serving node, in order: runner's before the log's, the answers after; seconds None
    where a phase did not happen (the note says why)."""
    parsed = phases.parse(log)
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
            "vllm_version": parsed.vllm_version, "kv_cache_tokens": parsed.kv_cache_tokens}


def table(entry: dict[str, Any]) -> str:
    lines = [f"startup of {entry['container']} on {entry['node']}:"]
    for row in entry["phases"]:
        seconds = f"{row['seconds']:7.1f} s" if row["seconds"] is not None else "      — "
        lines.append(f"  {row['name']:<21} {seconds}  {row['note']}".rstrip())
    if entry["ready_seconds"] is not None:
        lines.append(f"  {'log: first line -> listening':<21} {entry['ready_seconds']:.1f} s")
    return "\n".join(lines)


# --- after apply and in status, the whole engine logs: NCCL's transports on multi-GPU deployments -------


def _logs(plan: Plan, executors: Mapping[str, Executor]) -> dict[str, str]:
    """Each node's whole engine log, read once."""
    return {n.name: executors[n.name].logs(n.container.name, tail=None)
            for n in plan.nodes if n.name in executors}


def read(plan: Plan, executors: Mapping[str, Executor], logs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Phases of the head's start and the NCCL transports seen in every node's log in scope."""
    logs = _logs(plan, executors) if logs is None else logs
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
