"""What an engine's log says after apply: the start-up phases (``vllmgen.phases``) and, on a
multi-GPU deployment, the transport NCCL chose per peer (``vllmgen.nccl``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vllmgen import nccl, phases
from vllmgen.plan import Plan
from vllmgen.runner.executor import Executor
from vllmgen.runner.progress import Progress


def read(plan: Plan, executors: Mapping[str, Executor]) -> dict[str, Any]:
    """Phases of the head's start and the NCCL transports seen in every node's log in scope."""
    out: dict[str, Any] = {}
    head = executors.get(plan.head.name)
    if head is not None:
        out["startup"] = phases.parse(head.logs(plan.head.container.name, tail=0)).as_dict()
    if sum(node.gpus for node in plan.nodes) > 1:
        text = "\n".join(executors[n.name].logs(n.container.name, tail=0) for n in plan.nodes if n.name in executors)
        report = nccl.parse(text)
        hcas = any(dict(n.container.env).get("NCCL_IB_HCA") for n in plan.nodes)
        out["nccl"] = {"version": report.version, "transports": list(report.transports),
                       "links": [[link.src, link.dst, link.transport] for link in report.links],
                       "networks": list(report.networks), "summary": report.summary(),
                       "warnings": nccl.warnings(report, multi_node=len(plan.nodes) > 1, ib_hcas=hcas)}
    return out


def report_startup(plan: Plan, executors: Mapping[str, Executor], progress: Progress) -> dict[str, Any]:
    found = read(plan, executors)
    if "startup" in found:
        startup = phases.parse(executors[plan.head.name].logs(plan.head.container.name, tail=0))
        progress.say("startup phases (from the engine's log):\n" + phases.table(startup).rstrip(), plan.head.name)
    if "nccl" in found:
        progress.say(found["nccl"]["summary"], plan.head.name)
        for warning in found["nccl"]["warnings"]:
            progress.say(f"warning: {warning}", plan.head.name)
    return found
