"""What an engine's log says after apply: the start-up phases (``vllmgen.phases``) and, on a
multi-GPU deployment, the transport NCCL chose per peer (``vllmgen.nccl``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vllmgen import nccl, phases
from vllmgen.plan import Plan
from vllmgen.runner.executor import Executor
from vllmgen.runner.progress import Progress


def _logs(plan: Plan, executors: Mapping[str, Executor]) -> dict[str, str]:
    """Each node's whole engine log, read once."""
    # tail None: the whole log (the process executor's, and the Executor protocol's on the plan branch)
    return {n.name: executors[n.name].logs(n.container.name, tail=None)  # type: ignore[arg-type]
            for n in plan.nodes if n.name in executors}


def read(plan: Plan, executors: Mapping[str, Executor], logs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Phases of the head's start and the NCCL transports seen in every node's log in scope."""
    logs = _logs(plan, executors) if logs is None else logs
    out: dict[str, Any] = {}
    if plan.head.name in logs:
        out["startup"] = phases.parse(logs[plan.head.name]).as_dict()
    if sum(node.gpus for node in plan.nodes) > 1:
        text = "\n".join(logs.values())
        report = nccl.parse(text)
        hcas = any(dict(n.container.env).get("NCCL_IB_HCA") for n in plan.nodes)
        out["nccl"] = {"version": report.version, "transports": list(report.transports),
                       "links": [[link.src, link.dst, link.transport] for link in report.links],
                       "networks": list(report.networks), "summary": report.summary(),
                       "warnings": nccl.warnings(report, multi_node=len(plan.nodes) > 1, ib_hcas=hcas)}
    return out


def report_startup(plan: Plan, executors: Mapping[str, Executor], progress: Progress) -> dict[str, Any]:
    logs = _logs(plan, executors)
    found = read(plan, executors, logs)
    if "startup" in found:
        startup = phases.parse(logs[plan.head.name])
        progress.say("startup phases (from the engine's log):\n" + phases.table(startup).rstrip(), plan.head.name)
    if "nccl" in found:
        progress.say(found["nccl"]["summary"], plan.head.name)
        for warning in found["nccl"]["warnings"]:
            progress.say(f"warning: {warning}", plan.head.name)
    return found
