"""Orphans: this deployment's containers (by label) whose node is no longer in the spec.

A node renamed or removed from the spec leaves its container running where it was; ``status``
shows it and ``down`` removes it. Only engines the spec still reaches can be looked at: a host that
left the spec altogether is not (``docker ps --filter label=io.vllmgen.deployment=NAME`` there).
"""

from __future__ import annotations

from vllmgen.plan.plan import LABEL_PREFIX, Plan
from vllmgen.runner.executor import ContainerState

NODE_LABEL = f"{LABEL_PREFIX}.node"
DEPLOYMENT_LABEL = f"{LABEL_PREFIX}.deployment"
ROLE_LABEL = f"{LABEL_PREFIX}.role"


def orphans(plan: Plan, found: list[ContainerState]) -> list[ContainerState]:
    names = {node.name for node in plan.nodes}
    fronts = {"router": plan.router.node if plan.router else None,
              "gateway": plan.gateway.node if plan.gateway else None}
    return [state for state in found
            if (state.labels.get(NODE_LABEL) != fronts[state.labels[ROLE_LABEL]]
                if state.labels.get(ROLE_LABEL) in fronts else state.labels.get(NODE_LABEL) not in names)]


def describe(state: ContainerState) -> str:
    node = state.labels.get(NODE_LABEL)
    if state.labels.get(ROLE_LABEL) in ("router", "gateway"):
        return f"a {state.labels[ROLE_LABEL]} on node {node}, where the spec has none"
    return f"node {node}, no longer in the spec" if node else "no node label"
