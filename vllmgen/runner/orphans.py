"""Orphans: this deployment's containers (by label) whose node is no longer in the spec.

A node renamed or removed from the spec leaves its container running where it was; ``status``
shows it and ``down`` removes it. Only engines the spec still reaches can be looked at: a host that
left the spec altogether is not (``docker ps --filter label=io.vllmgen.deployment=NAME`` there).
"""

from __future__ import annotations

from collections.abc import Mapping

from vllmgen.plan import label_names
from vllmgen.plan.plan import Plan
from vllmgen.runner.executor import ContainerState, Executor

NODE_LABEL = label_names.NODE
DEPLOYMENT_LABEL = label_names.DEPLOYMENT
ROLE_LABEL = label_names.ROLE


def orphans(plan: Plan, found: list[ContainerState]) -> list[ContainerState]:
    names = {node.name for node in plan.nodes}
    fronts = {"router": plan.router.node if plan.router else None,
              "gateway": plan.gateway.node if plan.gateway else None}
    return [state for state in found
            if (state.labels.get(NODE_LABEL) != fronts[state.labels[ROLE_LABEL]]
                if state.labels.get(ROLE_LABEL) in fronts else state.labels.get(NODE_LABEL) not in names)]


def scan(plan: Plan, found: Mapping[str, list[ContainerState]],
         executors: Mapping[str, Executor]) -> list[tuple[str, ContainerState]]:
    """Every orphan once, as (the node whose engine holds it, its state), in ``found``'s order: two nodes
    may share an engine, which then lists the same container for both."""
    stray: list[tuple[str, ContainerState]] = []
    seen: set[tuple[str, str]] = set()  # (engine, container)
    for name, listed in found.items():
        for state in orphans(plan, listed):
            key = (executors[name].endpoint or "local", state.name)
            if key not in seen:
                seen.add(key)
                stray.append((name, state))
    return stray


def describe(state: ContainerState) -> str:
    node = state.labels.get(NODE_LABEL)
    if state.labels.get(ROLE_LABEL) in ("router", "gateway"):
        return f"a {state.labels[ROLE_LABEL]} on node {node}, where the spec has none"
    return f"node {node}, no longer in the spec" if node else "no node label"
