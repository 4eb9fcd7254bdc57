"""Fatal lines in a vLLM log (vllmgen.runner.faults): what ends apply's wait at once, and what must not.

The failing logs are written in vLLM's own formats (its logger's prefix on every traceback line, as
`logger.exception("EngineCore failed to start.")` prints them; the API server's RuntimeError after
it); the healthy ones are the recorded starts in tests/fixtures (CPU, and the H100s with NCCL INFO)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vllmgen.runner import faults

FIXTURES = Path(__file__).parent / "fixtures"
ENGINE = "(EngineCore_DP0 pid=241794) ERROR 09-18 10:34:29 [core.py:718] "
API = "(APIServer pid=241601) ERROR 09-18 10:34:31 [api_server.py:1] "


def _traceback(prefix: str, *last: str) -> list[str]:
    return [prefix + "Traceback (most recent call last):",
            prefix + '  File "/venv/lib/python3.12/site-packages/vllm/v1/engine/core.py", line 709, in run_engine_core',
            prefix + "    engine_core = EngineCoreProc(*args, **kwargs)",
            *(prefix + line for line in last)]


OOM = "\n".join([ENGINE + "EngineCore failed to start.",
                 *_traceback(ENGINE, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. "
                                     "GPU 0 has a total capacity of 79.19 GiB of which 1.06 GiB is free."),
                 *_traceback(API, "RuntimeError: Engine core initialization failed. See root cause above. "
                                  "Failed core proc(s): {'EngineCore_DP0': 1}")])


def test_out_of_memory_quotes_the_first_line_the_root_cause_and_the_fit_fix() -> None:
    fault = faults.scan(OOM)
    assert fault is not None and fault.kind == "out of memory"
    assert fault.line == ENGINE + "EngineCore failed to start."
    assert fault.cause.startswith("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "vllmgen doctor SPEC" in fault.fix and "gpu_memory_utilization" in fault.fix
    assert fault.text().splitlines() == [f"the engine failed (out of memory): {ENGINE}EngineCore failed to start.",
                                         f"  root cause: {fault.cause}"]


def test_the_root_cause_is_the_engines_exception_not_the_servers_wrapper() -> None:
    log = "\n".join([ENGINE + "EngineCore failed to start.",
                     *_traceback(ENGINE, "ValueError: Hybrid KV cache manager is disabled but failed to convert "
                                         "the KV cache specs to one unified type."),
                     *_traceback(API, "RuntimeError: Engine core initialization failed. See root cause above. "
                                      "Failed core proc(s): {'EngineCore_DP0': 1}")])
    fault = faults.scan(log)
    assert fault is not None and fault.kind == "exception"  # an engine process's traceback: more than the line
    assert fault.cause.startswith("ValueError: Hybrid KV cache manager is disabled")
    assert fault.line == ENGINE + "EngineCore failed to start."


@pytest.mark.parametrize("line, kind", [
    ("torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:3690, unhandled cuda error", "NCCL"),
    ("ncclUnhandledCudaError: Call to CUDA function failed.", "NCCL"),
    ("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`", "no KV cache"),
    ("RuntimeError: CUDA driver version is insufficient for CUDA runtime version", "driver"),
    ("RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}", "engine"),
    ("Engine core proc EngineCore_DP0 died unexpectedly, shutting down client.", "engine"),
    ("EngineCore encountered a fatal error.", "engine"),
])
def test_each_known_fatal_line_is_recognised(line: str, kind: str) -> None:
    scanner = faults.Scanner()
    assert scanner.feed("(APIServer pid=1) INFO 11-26 10:00:00 [api_utils.py:1] vLLM API server version 0.32.0") is False
    assert scanner.feed(API + line) is True  # the first sign ends the wait's patience
    assert scanner.fault().kind == kind
    assert scanner.feed(API + line) is False  # said once


def test_a_plain_traceback_is_remembered_but_is_no_failure_by_itself() -> None:
    """A traceback without vLLM's prefix (a warning's, a plugin's) is only a cause: it fails the wait when the
    process then exits (runner.watch quotes it), not while the server may still come up."""
    scanner = faults.Scanner()
    for line in _traceback("", "ImportError: cannot import name 'x' from 'y'"):
        scanner.feed(line)
    assert scanner.fault() is None
    assert scanner.cause() == "ImportError: cannot import name 'x' from 'y'"


@pytest.mark.parametrize("path", sorted((FIXTURES / "vllm-logs").glob("*.log")) + sorted(
    (FIXTURES / "gpu" / "h100").glob("engine-*.log")), ids=lambda p: p.name)
def test_recorded_healthy_starts_have_no_fatal_line(path: Path) -> None:
    assert faults.scan(path.read_text(encoding="utf-8")) is None
