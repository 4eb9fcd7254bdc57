"""A started container or process, followed from its start: its output line by line as it is written,
and its end the moment it comes.

Apply's waits read these instead of sleeping: ready is the moment vLLM logs that it serves (Uvicorn's
"Application startup complete"), confirmed by one /health; an engine that logs a fatal line
(``vllmgen.runner.faults``) ends the wait within seconds, quoting it, even while its API server lives on;
a container or process that exits is seen at once. /health is still polled, at a short interval,
for a server whose log says nothing we know.

Executors give a ``Follow`` (``Executor.follow``): the Docker SDK's log stream (``logs(stream=True,
follow=True)``, read by a thread), or the process runtime's log file, tailed, and its child polled.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Protocol

from vllmgen.runner import faults, phases
from vllmgen.runner.progress import Progress, WaitTimeout, fail

READY = re.compile(r"Application startup complete|Uvicorn running on")
FAULT_GRACE_S = 2.0  # after a fatal line: the traceback that names the root cause follows within this
TICK_S = 0.1  # how often a wait looks at what its followers read


class Follow(Protocol):
    def read(self) -> list[str] | None: ...  # new lines, never blocking; None once it ended and all was read
    def exit_code(self) -> int | None: ...  # after the end: its exit status, when known
    def close(self) -> None: ...


@dataclass
class Watch:
    """What one container or process said since it started, and whether it still runs."""

    node: str
    container: str
    follow: Follow
    lines: list[str] = field(default_factory=list)
    scanner: faults.Scanner = field(default_factory=faults.Scanner)
    ready_at: float | None = None  # monotonic time the ready line was read
    fault_at: float | None = None  # monotonic time the first fatal line was read
    ended: bool = False

    def pump(self, clock: Callable[[], float] = time.monotonic) -> bool:
        """Read what is new; True when anything was."""
        if self.ended:
            return False
        new = self.follow.read()
        if new is None:
            self.ended = True
            return True
        for line in new:
            self.lines.append(line)
            if self.scanner.feed(line) and self.fault_at is None:
                self.fault_at = clock()
            if self.ready_at is None and READY.search(line):
                self.ready_at = clock()
        return bool(new)

    def log(self, tail: int | None = None) -> str:
        return "\n".join(self.lines[-tail:] if tail else self.lines)

    def phase(self) -> str:
        """The start phase its log shows now."""
        return phases.current(self.log())

    def failure(self, clock: Callable[[], float] = time.monotonic) -> faults.Fault | None:
        """The engine's failure, once its root cause had time to follow (or the output ended)."""
        if self.fault_at is None or (not self.ended and clock() - self.fault_at < FAULT_GRACE_S):
            return None
        return self.scanner.fault()

    def close(self) -> None:
        self.follow.close()


# --- the process runtime: a log file and a child --------------------------------------------------


class FileFollow:
    """A log file read from its start as it grows; its end when ``running`` says the process is gone."""

    def __init__(self, path: Path, running: Callable[[], bool], exit_code: Callable[[], int | None]):
        self._path = path
        self._running = running
        self._exit_code = exit_code
        self._offset = 0
        self._partial = b""
        self._done = False

    def read(self) -> list[str] | None:
        if self._done:
            return None
        alive = self._running()  # asked before reading: what it wrote before it ended is read below
        try:
            with open(self._path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except OSError:
            data = b""
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        if not alive:
            if self._partial:
                lines.append(self._partial)
                self._partial = b""
            if not lines:
                self._done = True
                return None
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]

    def exit_code(self) -> int | None:
        return self._exit_code()

    def close(self) -> None:
        self._done = True


# --- Docker: a log stream read by a thread ----------------------------------------------------------


class StreamFollow:
    """Lines from ``open_stream(since)`` (an iterator of byte chunks that ends when the container stops),
    read by a thread. A stream that breaks while ``running()`` still says yes is opened again from the
    last line's time stamp (``timestamps`` lines: ``<RFC 3339> <text>``)."""

    def __init__(self, open_stream: Callable[[float | None], object], running: Callable[[], bool],
                 exit_code: Callable[[], int | None], name: str = "log-follow"):
        self._open = open_stream
        self._running = running
        self._exit_code = exit_code
        self._queue: SimpleQueue[str | None] = SimpleQueue()  # None: it ended
        self._closed = threading.Event()
        self._stream: object | None = None
        self._ended = False
        self._thread = threading.Thread(target=self._pump, name=name, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        """Until the container stops; a stream that keeps breaking is given up (the waits' polls remain)."""
        since: float | None = None
        last = ""  # Docker's stamps have a fixed width: they compare as text
        barren = 0  # streams in a row that broke without a line: five, and following is given up
        while barren < 5:
            partial = b""
            before = last
            try:
                self._stream = stream = self._open(since)
                for chunk in stream:  # type: ignore[attr-defined]
                    *lines, partial = (partial + chunk).split(b"\n")
                    for raw in lines:
                        stamp, _, text = raw.decode("utf-8", "replace").rstrip("\r").partition(" ")
                        if stamp <= last:
                            continue  # read again after a reconnect
                        last, since = stamp, _epoch(stamp) or since
                        self._queue.put(text)
            except Exception:  # noqa: BLE001 - the stream broke: asked below whether the container ended
                pass
            if partial:
                self._queue.put(partial.decode("utf-8", "replace").partition(" ")[2])
            if self._closed.is_set():
                return
            try:
                running = self._running()
            except Exception:  # noqa: BLE001 - the engine does not answer: its end is not seen here
                return
            if not running:
                self._queue.put(None)
                return
            barren = barren + 1 if last == before else 0
            time.sleep(0.5)

    def read(self) -> list[str] | None:
        if self._ended:
            return None
        out: list[str] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except Empty:
                return out
            if item is None:
                self._ended = True
                return out or None
            out.append(item)

    def exit_code(self) -> int | None:
        return self._exit_code()

    def close(self) -> None:
        self._closed.set()
        stream = self._stream
        if stream is not None and hasattr(stream, "close"):
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - closing a broken stream
                pass


def _epoch(stamp: str) -> float | None:
    """Docker's RFC 3339 stamp (nanoseconds) as seconds since the epoch, microseconds kept."""
    try:
        head, _, frac = stamp.rstrip("Z").partition(".")
        at = datetime.fromisoformat(head).replace(tzinfo=timezone.utc)
        return at.timestamp() + float(f"0.{frac[:6] or 0}")
    except ValueError:
        return None


# --- the wait -------------------------------------------------------------------------------------


def raise_if_failed(watches: Sequence[Watch], step: str, clock: Callable[[], float] = time.monotonic) -> None:
    """A watched engine that logged a fatal line, or a container or process that ended, stops the wait."""
    for watch in watches:
        fault = watch.failure(clock)
        if fault is not None:
            raise fail(watch.node, step, fault.text(), fault.fix, watch.log(tail=25))
        if watch.ended:
            cause = watch.scanner.cause()
            raise fail(watch.node, step, f"{watch.container} exited (exit code {watch.follow.exit_code()})"
                       + (f": {cause}" if cause else ""),
                       "read its log below; fix the spec and apply again", watch.log(tail=15))


def wait(progress: Progress, what: str, node: str, check: Callable[[], tuple[bool, str]], *,
         watches: Sequence[Watch], timeout: float, interval: float, step: str,
         report_every: float = 10.0, clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> None:
    """Until ``check`` (one /health) says yes: asked at once when ``node``'s watch reads the ready line,
    else every ``interval``; a watched failure raises (``raise_if_failed``). WaitTimeout after ``timeout``."""
    serving = next((w for w in watches if w.node == node), None)
    start = clock()
    next_check, next_report = start, start + report_every
    asked_ready = False
    status = "not asked yet"
    progress.say(f"waiting for {what} (up to {timeout:.0f}s)", node)
    while True:
        for watch in watches:
            watch.pump(clock)
        raise_if_failed(watches, step, clock)
        now = clock()
        ready = serving is not None and serving.ready_at is not None
        if now >= next_check or (ready and not asked_ready):
            by_line = ready and not asked_ready
            asked_ready = asked_ready or ready
            passed, status = check()
            now = clock()
            if passed:
                how = "; asked when its log said it serves" if by_line else ""
                progress.say(f"{what}: ok after {now - start:.1f}s ({status}{how})", node)
                return
            next_check = now + (min(interval, 0.5) if ready else interval)  # serving, not healthy yet: soon
        if now - start >= timeout:
            raise WaitTimeout(now - start, status)
        if now >= next_report:
            progress.say(f"still waiting for {what}, {now - start:.0f}s: {status}", node)
            next_report = now + report_every
        pause = TICK_S if watches else next_check - now
        sleep(max(0.0, min(pause, next_check - now, start + timeout - now)))
