"""A serving node's start, phase by phase: the runner's own clock (image build or pull, container start,
first healthy answer, first token) around what vLLM's log says (``vllmgen.phases``: model load,
compile, CUDA graphs, engine init, API server), read with ``docker logs --timestamps``.

``Clock`` collects the runner's seconds per node during ``apply``; ``report`` joins them with the
log's phases; ``current`` names the phase a start is in now, for the live progress line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vllmgen import phases
from vllmgen.runner.executor import EngineError, Executor
from vllmgen.runner.host import HostError

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
