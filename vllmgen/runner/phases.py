"""The phases of a vLLM start, read from its own log lines (and from their absence).

vLLM logs a milestone per phase, some with their own duration ("Model loading took 1.2 GiB
memory and 3.4 seconds", "Graph capturing finished in 5 secs"), the rest with a timestamp to
subtract. A phase whose lines never appear did not happen (``--enforce-eager``: no compile, no
CUDA graphs) and is reported as such, not as zero seconds. Pure: text in, phases out.

vLLM's timestamps have no year and whole seconds, in the local time of the machine it runs on;
``docker logs --timestamps`` (RFC 3339, ns, UTC) prefixes take precedence where present. Given the
moment the process or container started, the time before vLLM's first line (the interpreter and its
imports: 30 s and more on a GPU host) is a phase of its own, and "ready after" counts from the start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

# `(EngineCore pid=12) INFO 11-26 13:42:04 [core.py:133] message`, optionally after a docker timestamp
_LINE = re.compile(
    r"^(?:(?P<docker>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z?\s)?"
    r"(?:\((?P<proc>[^)]*)\)\s+)?(?:\x1b\[[0-9;]*m)?(?P<level>DEBUG|INFO|WARNING|ERROR)(?:\x1b\[[0-9;]*m)?\s+"
    r"(?P<month>\d\d)-(?P<day>\d\d)\s(?P<time>\d\d:\d\d:\d\d)(?:\.\d+)?\s+\[[^\]]*\]\s(?P<message>.*)$"
)
_ENGINE = re.compile(r"Initializing a V1 LLM engine \(v(?P<version>[^)]+)\)")
_LOAD_START = re.compile(r"Starting to load model ")
_MODEL_LOADING = re.compile(r"Model loading took (?P<gib>[\d.]+) GiB(?: memory)? and (?P<s>[\d.]+) seconds")
_WEIGHTS = re.compile(r"(?:Loading weights|Initializing model) took (?P<s>[\d.]+) seconds")
_COMPILE_TOTAL = re.compile(r"torch\.compile took (?P<s>[\d.]+) s in total")
_COMPILE_START = re.compile(r"Warming up model for the compilation|Dynamo bytecode transform time")
_COMPILE_SAVED = re.compile(r"saved AOT compiled function|Compiling a graph for compile range")
_COMPILE_CACHED = re.compile(r"Directly load (?:AOT compilation|the compiled graph)")
_COMPILE_MISS = re.compile(r"Compiling model again due to a load failure")
_GRAPHS = re.compile(r"Graph capturing finished in (?P<s>[\d.]+) secs?(?:, took (?P<gib>-?[\d.]+) GiB)?")
_ENGINE_INIT = re.compile(r"init engine \(profile, create kv cache, warmup model\) took (?P<s>[\d.]+) s")
_KV = re.compile(r"(?P<device>GPU|CPU|XPU|TPU)? ?KV cache size: (?P<tokens>[\d,]+) tokens")
# printed once per start by the API server: a restarted container's log holds several runs
_RUN_START = re.compile(r"vLLM API server version|non-default args: ")
_SERVING = re.compile(r"Starting vLLM (?:API )?server on (?P<url>\S+)")


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float | None  # None: it did not happen (or its end was not logged yet)
    note: str = ""


@dataclass(frozen=True)
class Startup:
    phases: tuple[Phase, ...]
    ready_seconds: float | None  # process start (else the first log line) -> API server listening
    vllm_version: str | None
    kv_cache_tokens: int | None
    log_seconds: float | None = None  # vLLM's first log line -> API server listening
    ready_from: str = "first log line"  # or "start": what ready_seconds counts from

    def phase(self, name: str) -> Phase:
        return next(phase for phase in self.phases if phase.name == name)

    def as_dict(self) -> dict[str, object]:
        return {
            "phases": [{"name": p.name, "seconds": p.seconds, "note": p.note} for p in self.phases],
            "ready_seconds": self.ready_seconds,
            "vllm_version": self.vllm_version,
            "kv_cache_tokens": self.kv_cache_tokens,
            "log_seconds": self.log_seconds,
            "ready_from": self.ready_from,
        }


@dataclass(frozen=True)
class _Event:
    at: datetime  # naive: UTC for Docker's stamps, the engine host's local time for vLLM's own
    message: str
    utc: bool = False


def _events(log: str, year: int) -> list[_Event]:
    events = []
    for line in log.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        if match["docker"]:
            events.append(_Event(datetime.fromisoformat(match["docker"][:26]), match["message"], utc=True))
        else:  # vLLM's own stamp has no year: the start's, else any fixed one (it subtracts within a year)
            at = datetime.strptime(f"{year}-{match['month']}-{match['day']} {match['time']}", "%Y-%m-%d %H:%M:%S")
            events.append(_Event(at, match["message"]))
    return events


def _start_event(started: datetime, first: _Event | None) -> _Event:
    """``started`` on the clock of the log's stamps: UTC for Docker's, local time for vLLM's own
    (a naive ``started`` is taken to be on that clock already)."""
    if started.tzinfo is not None:
        started = (started.astimezone(timezone.utc) if first is not None and first.utc
                   else started.astimezone()).replace(tzinfo=None)
    return _Event(started, "started", utc=bool(first and first.utc))


def latest_run(log: str) -> str:
    """The lines of the latest start in ``log``: a restarted container's log holds every run's."""
    lines = log.splitlines()
    stamps = [(index, _LINE.match(line)) for index, line in enumerate(lines)]
    starts = [(index, match) for index, match in stamps if match and _RUN_START.search(match["message"])]
    if not starts:
        return log
    # the banner lines just before the latest run's start line, stamped alike, belong to that run
    first, match = starts[-1]
    stamp = (match["docker"] or "")[:19] or match["time"]
    while first > 0:
        before = stamps[first - 1][1]
        if before is None or ((before["docker"] or "")[:19] or before["time"]) != stamp:
            break
        first -= 1
    return "\n".join(lines[first:])


def _first(events: list[_Event], pattern: re.Pattern[str]) -> tuple[_Event, re.Match[str]] | None:
    for event in events:
        found = pattern.search(event.message)
        if found:
            return event, found
    return None


def _between(start: _Event | None, end: _Event | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end.at - start.at).total_seconds())


def parse(log: str, started: datetime | None = None) -> Startup:
    """The phases of the latest start found in ``log`` (a container's or process's output, oldest line
    first; a restarted container's log holds every run, and only the last one is read). ``started``:
    when that process or container started (timezone-aware, or naive on the log's own clock)."""
    local_start = started.astimezone() if started is not None and started.tzinfo is not None else started
    events = _events(latest_run(log), local_start.year if local_start is not None else 2000)
    first = events[0] if events else None
    start = _start_event(started, first) if started is not None else None
    if start is not None and first is not None and first.at.year == start.at.year and first.at < start.at:
        # vLLM's yearless stamp of a start across New Year: the log's year is the next one
        if (start.at - first.at).days > 180:
            events = [_Event(e.at.replace(year=e.at.year + 1), e.message, e.utc) for e in events]
            first = events[0]
    engine = _first(events, _ENGINE)
    serving = _first(events, _SERVING)
    phases = [
        Phase("python start", _between(start, first),
              "interpreter and imports, before vLLM's first log line" if start is not None
              else "not known (no start time)"),
        Phase("process start", _between(first, engine[0] if engine else None),
              "config, engine process start and its imports"),
        Phase("workers start", _between(engine[0] if engine else None, _first_event(events, _LOAD_START)),
              "worker processes, distributed init"),
        _model_load(events),
        _compile(events),
        _graphs(events),
        _engine_init(events),
        Phase("api server", _between(_first_event(events, _ENGINE_INIT), serving[0] if serving else None),
              f"listening on {serving[1]['url']}" if serving else "not listening yet"),
    ]
    kv = _first(events, _KV)
    listening = serving[0] if serving else None
    return Startup(
        phases=tuple(phases),
        ready_seconds=_between(start or first, listening),
        vllm_version=engine[1]["version"] if engine else None,
        kv_cache_tokens=int(kv[1]["tokens"].replace(",", "")) if kv else None,
        log_seconds=_between(first, listening),
        ready_from="start" if start is not None else "first log line",
    )


def _first_event(events: list[_Event], pattern: re.Pattern[str]) -> _Event | None:
    found = _first(events, pattern)
    return found[0] if found else None


def _model_load(events: list[_Event]) -> Phase:
    loading = _first(events, _MODEL_LOADING)
    if loading:
        return Phase("model load", float(loading[1]["s"]), f"{loading[1]['gib']} GiB of weights per GPU")
    weights = _first(events, _WEIGHTS)
    if weights:
        return Phase("model load", float(weights[1]["s"]), "")
    started = _first_event(events, _LOAD_START)
    return Phase("model load", None, "started, not finished" if started else "not started")


def _compile(events: list[_Event]) -> Phase:
    total = _first(events, _COMPILE_TOTAL)
    cached = _first_event(events, _COMPILE_CACHED)
    missed = _first_event(events, _COMPILE_MISS)
    if cached and not missed:
        note = "from the compile cache"
    elif missed:
        note = "cache present but not loadable: compiled again"
    else:
        note = "compiled (no cache)"
    if total:
        return Phase("compile", float(total[1]["s"]), note)
    start = _first_event(events, _COMPILE_START)
    if start is None and cached is None:
        return Phase("compile", None, "not run (eager mode)")
    done = [e for e in events if _COMPILE_SAVED.search(e.message) or _COMPILE_CACHED.search(e.message)]
    return Phase("compile", _between(start or cached, done[-1] if done else None), note)


def _graphs(events: list[_Event]) -> Phase:
    graphs = _first(events, _GRAPHS)
    if graphs is None:
        return Phase("cuda graphs", None, "not captured (eager mode or no CUDA)")
    gib = graphs[1]["gib"]
    return Phase("cuda graphs", float(graphs[1]["s"]), f"{gib} GiB" if gib else "")


def _engine_init(events: list[_Event]) -> Phase:
    init = _first(events, _ENGINE_INIT)
    kv = _first(events, _KV)
    note = f"KV cache {kv[1]['tokens']} tokens" if kv else ""
    return Phase("engine init", float(init[1]["s"]) if init else None,
                 ("profile, KV cache, warm-up; " + note).rstrip("; "))


SKIPPED = ("not run", "not captured")  # notes of phases that do not happen (eager mode, no CUDA)


def current(log: str) -> str:
    """The phase a start is in now, from its log so far: the first unfinished one after the last done
    (before any line: "python start", the interpreter and imports)."""
    if not _events(log, 2000):
        return "python start"
    startup = parse(log)
    done = [i for i, phase in enumerate(startup.phases) if phase.seconds is not None]
    for phase in startup.phases[done[-1] + 1 if done else 1:]:
        if not phase.note.startswith(SKIPPED):
            return phase.name
    return "api server"


def table(startup: Startup) -> str:
    lines = []
    for phase in startup.phases:
        seconds = f"{phase.seconds:7.1f} s" if phase.seconds is not None else "      — "
        lines.append(f"  {phase.name:<14} {seconds}  {phase.note}".rstrip())
    ready = f"{startup.ready_seconds:.1f} s" if startup.ready_seconds is not None else "not yet"
    since = "  since it started" if startup.ready_from == "start" else "  since vLLM's first log line"
    lines.append(f"  {'ready after':<14} {ready}{since if startup.ready_seconds is not None else ''}")
    return "\n".join(lines) + "\n"
