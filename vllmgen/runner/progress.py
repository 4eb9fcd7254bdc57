"""What a person sees while the runner works: one line per action, elapsed time on long waits.

Lines go to stderr (stdout is reserved for the dry-run's commands and for ``status``), each
prefixed with the time since the run began, and the node when there is one.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO, TypeVar

from vllmgen.errors import RunnerError

T = TypeVar("T")


class Progress:
    def __init__(self, stream: TextIO | None = None, *, clock: Callable[[], float] = time.monotonic):
        self._stream = stream
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return self._clock() - self._start

    def say(self, message: str, node: str | None = None) -> None:
        where = f"{node}: " if node else ""
        with self._lock:
            stream = self._stream or sys.stderr
            print(f"[{self.elapsed():6.1f}s] {where}{message}", file=stream, flush=True)


class WaitTimeout(Exception):
    """Raised by ``wait_for`` when the deadline passes; ``last`` is the last status seen."""

    def __init__(self, waited: float, last: str):
        super().__init__(f"still waiting after {waited:.0f}s: {last}")
        self.waited = waited
        self.last = last


def wait_for(
    progress: Progress,
    what: str,
    poll: Callable[[], tuple[T | None, str]],
    *,
    timeout: float,
    interval: float = 2.0,
    report_every: float = 10.0,
    node: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``poll`` until it returns a value; report ``what`` and the poll's status line as it goes.

    ``poll`` returns (value or None, status text); it may raise RunnerError to stop at once (for
    example when a container exited). Raises WaitTimeout after ``timeout`` seconds.
    """
    start = clock()
    next_report = start + report_every
    progress.say(f"waiting for {what} (up to {timeout:.0f}s)", node)
    while True:
        value, status = poll()
        now = clock()
        if value is not None:
            done = f"{what}: ok after {now - start:.0f}s"
            progress.say(f"{done} ({status})" if status else done, node)
            return value
        if now - start >= timeout:
            raise WaitTimeout(now - start, status)
        if now >= next_report:
            progress.say(f"still waiting for {what}, {now - start:.0f}s: {status}", node)
            next_report = now + report_every
        sleep(min(interval, max(0.0, timeout - (now - start))))


def fail(node: str | None, step: str, what: str, todo: str | None = None, logs: str | None = None) -> RunnerError:
    """A RunnerError naming the node, the step, what happened and what to do about it."""
    where = f"node {node}, step {step}" if node else f"step {step}"
    message = f"{where}: {what}"
    if todo:
        message += f"\n  what to do: {todo}"
    if logs:
        lines = logs.rstrip().splitlines()
        message += "\n  last log lines:\n" + "\n".join(f"    | {line}" for line in lines)
    return RunnerError(message)
