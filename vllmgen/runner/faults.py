"""Lines in a vLLM log that mean its engine failed, and what to try: pure, text in, a verdict out.

A failed engine does not always end its API server: after ``EngineCore failed to start`` the
server can hang, alive and never healthy. The runner reads the log as it comes (``Scanner.feed``)
and stops a wait on the first such line, quoting it, the root cause (the exception a traceback
ends with) and a fix; the doctor's where one exists.

vLLM logs a traceback through its logger, every line with its prefix
(``(EngineCore pid=9) ERROR 04-30 19:50:08 [core.py:1108] Traceback ...``); a plain Python
traceback has none. Both are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vllmgen.doctor.gpu import DRIVER_FIX

# `(EngineCore_DP0 pid=12) ERROR 11-26 13:42:04 [core.py:133] `, `(APIServer pid=7) INFO:     `, or none
_PREFIX = re.compile(
    r"^(?:\d{4}-\d\d-\d\dT[\d:.]+Z?\s)?(?:\((?P<proc>[^)]*)\)\s+)?"
    r"(?:(?:\x1b\[[0-9;]*m)?(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)(?:\x1b\[[0-9;]*m)?"
    r"(?:\s+\d\d-\d\d\s\d\d:\d\d:\d\d(?:\.\d+)?\s+\[[^\]]*\])?:?\s)?"
)
_TRACEBACK = "Traceback (most recent call last):"
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Failure)\b(?::.*)?$")
_ENGINE_PROCESS = re.compile(r"^(?:EngineCore|Worker|VllmWorker|RayWorker)")

FIT_FIX = ("the model, its KV cache and activations do not fit: free the GPUs of other processes; lower "
           "serve.gpu_memory_utilization (room for activations and CUDA graphs) or serve.max_model_len, set "
           "serve.enforce_eager (no CUDA graphs), or spread the model over more GPUs (tensor_parallel_size); "
           "`vllmgen doctor SPEC` estimates the fit (model.fit)")
KV_FIX = ("nothing is left for the KV cache: raise serve.gpu_memory_utilization or lower serve.max_model_len; "
          "`vllmgen doctor SPEC` estimates the fit (model.fit)")
NCCL_FIX = ("NCCL could not connect the GPUs: run `vllmgen doctor SPEC --node NODE` on each node (driver vs "
            "CUDA, InfiniBand HCAs, the NIC); the NCCL INFO/WARN lines above the error name the transport that "
            "failed; across hosts, cluster.nic must name the interface that reaches the other nodes")
ENGINE_FIX = ("the engine's own error is quoted above (the root cause), its traceback in the log below; fix what "
              "it names in the spec (serve options, model, GPUs) and apply again")


@dataclass(frozen=True)
class _Kind:
    name: str
    pattern: re.Pattern[str]
    fix: str
    rank: int  # the most specific kind seen names the fix: OOM before "engine failed to start"


_KINDS = (
    _Kind("driver", re.compile(r"CUDA driver version is insufficient|Found no NVIDIA driver|"
                               r"no CUDA-capable device is detected"),
          f"{DRIVER_FIX}; `vllmgen doctor SPEC` checks the driver against the image's CUDA (gpu.driver_vs_cuda)", 3),
    _Kind("out of memory", re.compile(r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory"), FIT_FIX, 3),
    _Kind("no KV cache", re.compile(r"No available memory for the cache blocks|"
                                    r"larger than the available KV cache memory|"
                                    r"Available KV cache memory: -"), KV_FIX, 3),
    _Kind("NCCL", re.compile(r"\bnccl(?:UnhandledCudaError|SystemError|InternalError|InvalidArgument|"
                             r"InvalidUsage|RemoteError)\b|\bNCCL error\b|DistBackendError"), NCCL_FIX, 3),
    _Kind("engine", re.compile(r"EngineCore failed to start|Engine core initialization failed|"
                                      r"EngineCore encountered a fatal error|Failed core proc|"
                                      r"Engine core proc \S+ died|[Ee]ngine core (?:proc )?died|EngineDeadError|"
                                      r"WorkerProc failed to start|WorkerProc hit an exception"), ENGINE_FIX, 1),
)
_RAISED = _Kind("exception", re.compile(r"(?!)"), ENGINE_FIX, 2)  # a traceback an engine process ended with
# exception lines that only wrap the root cause ("See root cause above")
_WRAPPER = re.compile(r"Engine core initialization failed|EngineDeadError|Failed core proc|"
                      r"^(?:[\w.]+\.)?(?:SystemExit|KeyboardInterrupt)\b")


@dataclass(frozen=True)
class Fault:
    kind: str
    line: str  # the log line that said it, as logged
    cause: str | None  # the exception the last traceback ended with, when it says more than the line
    fix: str

    def text(self) -> str:
        kind = f" ({self.kind})" if self.kind != "engine" else ""
        said = f"the engine failed{kind}: {self.line.strip()}"
        if self.cause and self.cause not in self.line:
            said += f"\n  root cause: {self.cause}"
        return said


def message(line: str) -> tuple[str | None, str]:
    """The process tag (``EngineCore_DP0 pid=12``) and the message of one log line, without vLLM's prefix."""
    match = _PREFIX.match(line)
    assert match is not None  # every part is optional
    return match["proc"], line[match.end():]


@dataclass
class Scanner:
    """Reads a log line by line: the fatal lines seen, and the exception each traceback ended with."""

    found: list[tuple[_Kind, str]] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)  # root causes, oldest first
    engine_tracebacks: int = 0  # tracebacks an engine or worker process ended with
    _in_traceback: bool = False

    def feed(self, line: str) -> bool:
        """Read one line; True when it is the first sign of a failed engine."""
        before = bool(self.found)
        proc, text = message(line.rstrip("\n"))
        if text.strip() == _TRACEBACK:
            self._in_traceback = True
        elif self._in_traceback and text and not text[0].isspace() and _EXCEPTION.match(text.strip()):
            self._in_traceback = False
            self.exceptions.append(text.strip())
            if proc and _ENGINE_PROCESS.match(proc) and not _WRAPPER.search(text):
                self.engine_tracebacks += 1
                self.found.append((_RAISED, line.strip()))
        for kind in _KINDS:
            if kind.pattern.search(text):
                self.found.append((kind, line.strip()))
                break
        return bool(self.found) and not before

    def fault(self) -> Fault | None:
        """The failure the lines so far show: the first fatal line, the most specific kind's fix."""
        if not self.found:
            return None
        first_kind, first_line = self.found[0]
        specific = max(self.found, key=lambda item: item[0].rank)[0]
        return Fault(specific.name if specific.rank > first_kind.rank else first_kind.name, first_line,
                     self.cause(), specific.fix)

    def cause(self) -> str | None:
        """The exception the latest traceback that is not a mere wrapper ended with."""
        return next((e for e in reversed(self.exceptions) if not _WRAPPER.search(e)), None)


def scan(log: str) -> Fault | None:
    """The failure a whole log shows, if any."""
    scanner = Scanner()
    for line in log.splitlines():
        scanner.feed(line)
    return scanner.fault()
