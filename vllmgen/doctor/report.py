"""Render check results as a plain-text table (for people) or JSON (for tools)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict

from vllmgen.doctor.checks import STATUSES, CheckResult

_MARK = {"ok": "OK", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}


def summary(results: Sequence[CheckResult]) -> dict[str, int]:
    counts = Counter(r.status for r in results)
    return {status: counts.get(status, 0) for status in STATUSES}


def render_table(results: Sequence[CheckResult], title: str | None = None) -> str:
    """One row per check; a failed or warned check's fix goes on the line under it."""
    name_width = max([len("CHECK"), *(len(r.name) for r in results)])
    lines = [title] if title else []
    lines.append(f"{'STATUS':<6}  {'CHECK':<{name_width}}  DETAIL")
    for r in results:
        lines.append(f"{_MARK[r.status]:<6}  {r.name:<{name_width}}  {r.detail}")
        if r.fix and r.status in ("fail", "warn"):
            lines.append(f"{'':<6}  {'':<{name_width}}  fix: {r.fix}")
    counts = summary(results)
    lines.append(", ".join(f"{counts[s]} {s}" for s in STATUSES))
    return "\n".join(lines) + "\n"


def to_dicts(results: Sequence[CheckResult]) -> list[dict[str, str | None]]:
    return [asdict(r) for r in results]


def render_json(results: Sequence[CheckResult], **extra: object) -> str:
    """A stable document: results in order, counts, and ok = nothing failed."""
    doc: dict[str, object] = dict(extra)
    doc["ok"] = not any(r.status == "fail" for r in results)
    doc["summary"] = summary(results)
    doc["results"] = to_dicts(results)
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
