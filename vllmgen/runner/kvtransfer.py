"""Proof that prefill/decode disaggregation really moved the KV cache (apply's ``kv-transfer`` step, status).

An answer through the router is not enough: a decode instance that cannot reach its prefill's blocks
recomputes the prompt and still answers. So a completion is sent through the front door, and then each
decode instance must show (1) the NIXL handshake in its log and (2) vLLM's NIXL transfer counters on its
``/metrics`` moved by that request: more transfers, more bytes, and no failed transfer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# vLLM's NIXL connector metrics (vllm/distributed/kv_transfer/kv_connector/v1/nixl/stats.py, 0.26 and 0.32),
# observed on the side that reads the blocks: the decode instance
TRANSFERS = "vllm:nixl_xfer_time_seconds_count"
BYTES = "vllm:nixl_bytes_transferred_sum"
FAILED = "vllm:nixl_num_failed_transfers"  # a counter: exposed with _total
# what the decode's log says when it has met a prefill (base_worker.py)
HANDSHAKE = ("NIXL compatibility check passed", "Transfer plan:")
PROMPT = ("Disaggregated serving moves the key-value cache of this prompt from the prefill instance to the "
          "decode instance, which then generates the answer without computing the prompt again. ") * 2

WAIT_S = 30.0  # vLLM logs its stats every few seconds; the counters follow within that
_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)(?:\s+\d+)?$")


@dataclass(frozen=True)
class Counters:
    transfers: float = 0.0
    bytes: float = 0.0
    failed: float = 0.0
    seen: bool = False  # the NIXL metrics are on /metrics at all

    def as_dict(self) -> dict[str, float | bool]:
        return {"transfers": self.transfers, "bytes": self.bytes, "failed": self.failed, "nixl_metrics": self.seen}


def counters(metrics: str) -> Counters:
    """The NIXL counters in a Prometheus text page, summed over their labels (engines, DP ranks)."""
    sums = {TRANSFERS: 0.0, BYTES: 0.0, FAILED: 0.0}
    seen = False
    for line in metrics.splitlines():
        match = _SAMPLE.match(line.strip())
        if not match:
            continue
        name = match.group(1)
        name = FAILED if name in (FAILED, f"{FAILED}_total") else name
        if name in sums:
            seen = True
            try:
                sums[name] += float(match.group(3))
            except ValueError:
                continue
    return Counters(sums[TRANSFERS], sums[BYTES], sums[FAILED], seen)


def handshakes(log: str) -> list[str]:
    """The decode log's NIXL handshake lines."""
    return [line.strip() for line in log.splitlines() if any(mark in line for mark in HANDSHAKE)]


@dataclass(frozen=True)
class Evidence:
    moved: bool
    detail: str


def judge(before: Counters, after: Counters, log: str) -> Evidence:
    """Whether one request's KV cache moved to this decode: handshake in its log, counters up, none failed."""
    lines = handshakes(log)
    if not after.seen:
        return Evidence(False, "its /metrics has no vllm:nixl_* metrics: the NIXL connector never reported a "
                        "transfer (not loaded, or the decode recomputed every prompt)")
    transfers, moved_bytes = after.transfers - before.transfers, after.bytes - before.bytes
    failed = after.failed - before.failed
    if failed > 0:
        return Evidence(False, f"{failed:.0f} NIXL transfer(s) failed during the request")
    if transfers < 1 or moved_bytes <= 0:
        return Evidence(False, f"no KV blocks moved for the request (transfers {before.transfers:.0f} -> "
                        f"{after.transfers:.0f}, bytes {before.bytes:.0f} -> {after.bytes:.0f}): the decode "
                        "recomputed the prompt")
    if not lines:
        return Evidence(False, "KV bytes were counted but its log has no NIXL handshake line")
    return Evidence(True, f"{transfers:.0f} NIXL transfer(s), {moved_bytes:.0f} bytes of KV cache read; "
                    f"log: {lines[-1][-120:]}")


@dataclass(frozen=True)
class Verdict:
    moved: bool  # at least one decode instance read the request's KV cache
    lines: tuple[str, ...]  # per decode instance, what was seen


def judge_all(before: Mapping[str, Counters], now: Mapping[str, tuple[Counters, str]]) -> Verdict:
    """The router sends the request to one decode instance: one of them must show the transfer."""
    seen = {name: judge(before.get(name, Counters()), *reading) for name, reading in now.items()}
    moved = tuple(f"{name}: {e.detail}" for name, e in seen.items() if e.moved)
    return Verdict(True, moved) if moved else Verdict(False, tuple(f"{name}: {e.detail}" for name, e in seen.items()))


def wait_moved(read: Callable[[], Mapping[str, tuple[Counters, str]]], before: Mapping[str, Counters], *,
               timeout: float = WAIT_S, interval: float = 1.0, sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> Verdict:
    """Until the counters show the transfer (vLLM publishes them with its next stats), or the deadline."""
    deadline = clock() + timeout
    while True:
        verdict = judge_all(before, read())
        if verdict.moved or clock() >= deadline:
            return verdict
        sleep(interval)


def completion_body(served_name: str) -> dict[str, object]:
    return {"model": served_name, "prompt": PROMPT, "max_tokens": 16, "temperature": 0}


def summary(per_decode: Mapping[str, Counters]) -> list[str]:
    return [f"{name}: {c.transfers:.0f} NIXL transfer(s), {c.bytes:.0f} bytes, {c.failed:.0f} failed"
            + ("" if c.seen else " (no vllm:nixl_* metrics yet)") for name, c in per_decode.items()]
