"""runner.watch: a start followed by its output and exit, and the wait that reads it instead of sleeping.

FileFollow against a real file and a real child process; StreamFollow against a stream that breaks and
is opened again; the wait with a fake clock: the ready line asks /health at once, a fatal line ends the
wait after the grace that lets its root cause arrive, an exit ends it at once."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vllmgen.errors import RunnerError
from vllmgen.runner import watch
from vllmgen.runner.progress import Progress, WaitTimeout

READY = "INFO:     Application startup complete."
FATAL = "(EngineCore pid=9) ERROR 12-03 10:00:02 [core.py:1108] EngineCore failed to start."


def test_file_follow_reads_as_written_and_ends_with_the_process(tmp_path: Path) -> None:
    log = tmp_path / "n0.log"
    code = "import sys, time; print('one', flush=True); time.sleep(0.5); print('two', end='', flush=True); sys.exit(3)"
    with open(log, "wb") as out:
        child = subprocess.Popen([sys.executable, "-c", code], stdout=out)
    follow = watch.FileFollow(log, lambda: child.poll() is None, lambda: child.poll())
    lines: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        new = follow.read()
        if new is None:
            break
        lines += new
        time.sleep(0.05)
    assert lines == ["one", "two"]  # the last line, without its newline, once the process ended
    assert follow.exit_code() == 3
    assert follow.read() is None


class _Chunks:
    """A Docker log stream: ``<stamp> <text>\\n`` chunks; breaks (ends) after ``cut`` chunks the first time."""

    def __init__(self, lines: list[str], cut: int):
        self.lines, self.cut, self.opened = lines, cut, []

    def open(self, since: float | None) -> object:
        self.opened.append(since)
        lines = self.lines if len(self.opened) > 1 else self.lines[:self.cut]
        return iter(f"2026-12-03T10:00:0{i}.000000000Z {text}\n".encode() for i, text in enumerate(lines))


def test_stream_follow_opens_a_broken_stream_again_without_repeating_lines() -> None:
    chunks = _Chunks(["a", "b", "c"], cut=2)
    states = iter([True, False])  # running when the first stream broke; stopped when the second ended
    follow = watch.StreamFollow(chunks.open, lambda: next(states), lambda: 0)
    lines: list[str] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        new = follow.read()
        if new is None:
            break
        lines += new
        time.sleep(0.02)
    assert lines == ["a", "b", "c"]
    assert chunks.opened[0] is None and chunks.opened[1] == pytest.approx(1796292001.0)  # since the last line's stamp


class _Lines:
    """A Follow fed by the test: lines appear when the fake clock passes their time."""

    def __init__(self, clock: list[float], timed: list[tuple[float, str | None]]):
        self.clock, self.timed, self.code = clock, list(timed), None

    def read(self) -> list[str] | None:
        if self.code is not None:
            return None
        due = [text for at, text in self.timed if at <= self.clock[0]]
        self.timed = [(at, text) for at, text in self.timed if at > self.clock[0]]
        if None in due:
            self.code = 1  # ended: what it wrote first is read now, the end at the next read
        return [text for text in due if text is not None]

    def exit_code(self) -> int | None:
        return self.code

    def close(self) -> None:
        pass


def _wait(timed: list[tuple[float, str | None]], healthy_from: float, timeout: float = 100.0):
    clock = [0.0]
    asked: list[float] = []

    def check() -> tuple[bool, str]:
        asked.append(clock[0])
        return clock[0] >= healthy_from, "HTTP 200" if clock[0] >= healthy_from else "no answer"

    def sleep(seconds: float) -> None:
        clock[0] += max(seconds, 0.001)

    follows = [watch.Watch("n0", "c0", _Lines(clock, timed))]
    stream = io.StringIO()
    try:
        watch.wait(Progress(stream, clock=lambda: clock[0]), "the model", "n0", check, watches=follows,
                   timeout=timeout, interval=1.0, step="verify", clock=lambda: clock[0], sleep=sleep)
        return clock[0], asked, None
    except (RunnerError, WaitTimeout) as exc:
        return clock[0], asked, exc


def test_the_ready_line_asks_health_at_once() -> None:
    ended, asked, error = _wait([(1.0, "INFO 12-03 10:00:00 [core.py:1] loading"), (30.05, READY)], healthy_from=30.05)
    assert error is None
    assert 30.05 <= ended < 30.2  # within a tick of the line, not at the next 1 s poll
    assert asked[0] == 0.0 and len(asked) <= 33  # polled every second as a fallback until then


def test_a_fatal_line_ends_the_wait_after_its_root_cause_arrived() -> None:
    traceback = ["(EngineCore pid=9) ERROR 12-03 10:00:02 [core.py:1108] Traceback (most recent call last):",
                 '(EngineCore pid=9) ERROR 12-03 10:00:02 [core.py:1108]   File "core.py", line 1, in x',
                 "(EngineCore pid=9) ERROR 12-03 10:00:02 [core.py:1108] ValueError: max_model_len is too large"]
    ended, _, error = _wait([(5.0, FATAL), *((5.5, line) for line in traceback)], healthy_from=1e9)
    assert isinstance(error, RunnerError)
    assert 5.0 + watch.FAULT_GRACE_S <= ended < 5.0 + watch.FAULT_GRACE_S + 0.3  # the server hangs on: no exit
    assert "node n0, step verify: the engine failed (exception): " + FATAL in str(error)
    assert "root cause: ValueError: max_model_len is too large" in str(error)


def test_an_exit_ends_the_wait_at_once_with_its_cause() -> None:
    lines = ["Traceback (most recent call last):", '  File "x.py", line 1, in <module>',
             "ModuleNotFoundError: No module named 'vllm'"]
    ended, _, error = _wait([*((2.0, line) for line in lines), (2.0, None)], healthy_from=1e9)
    assert isinstance(error, RunnerError) and ended < 2.2
    assert "c0 exited (exit code 1): ModuleNotFoundError: No module named 'vllm'" in str(error)


def test_no_ready_line_and_no_answer_times_out() -> None:
    ended, asked, error = _wait([], healthy_from=1e9, timeout=5.0)
    assert isinstance(error, WaitTimeout) and 5.0 <= ended < 5.2 and len(asked) == 5  # at 0, 1, 2, 3, 4 s


def test_a_stream_that_cannot_be_opened_is_given_up_without_a_false_end() -> None:
    """The engine refuses the log stream but the container runs: following stops after five tries
    (the waits' /health and inspect polls remain), and no end is reported that did not happen."""
    opened: list[float | None] = []

    def refuse(since: float | None) -> object:
        opened.append(since)
        raise OSError("the engine refused the stream")

    follow = watch.StreamFollow(refuse, lambda: True, lambda: None)
    deadline = time.monotonic() + 10
    while len(opened) < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    quiet_until = time.monotonic() + 0.7
    while time.monotonic() < quiet_until:  # and no sixth try comes
        assert len(opened) == 5
        time.sleep(0.1)
    assert follow.read() == []  # nothing, and not None: it did not end
