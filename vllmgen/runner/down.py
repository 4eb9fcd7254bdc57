"""``vllmgen down``: remove what apply started, by label: orphans first, then workers, then the head."""

from __future__ import annotations

from collections.abc import Mapping

from vllmgen.plan.plan import Plan
from vllmgen.runner import orphans
from vllmgen.runner.context import engine_hint
from vllmgen.runner.executor import ContainerState, EngineError, Executor
from vllmgen.runner.gateway_step import is_gateway
from vllmgen.runner.progress import Progress, fail
from vllmgen.runner.servers import is_router
from vllmgen.runner.steps import NODE_LABEL


def down(plan: Plan, executors: Mapping[str, Executor], progress: Progress | None = None) -> list[str]:
    """Remove this deployment's containers (by label) from the nodes in scope: orphans (nodes no longer in
    the spec) first, then workers, then the head."""
    progress = progress or Progress()
    order = [n for n in plan.workers if n.name in executors] + [n for n in (plan.head,) if n.name in executors]
    found: dict[str, list[ContainerState]] = {}
    for node in order:
        try:
            found[node.name] = executors[node.name].list_containers(plan.name)
        except EngineError as exc:
            raise fail(node.name, "down", str(exc), engine_hint(str(exc))) from exc
    removed: list[str] = []
    for name, state in orphans.scan(plan, found, executors):
        _remove(executors[name], name, state, f"orphan: {orphans.describe(state)}", progress)
        removed.append(state.name)
    # the gateway first (clients stop reaching anything), then the router, then the servers behind them
    for front, role in ((is_gateway, "gateway"), (is_router, "router")):
        for node in order:
            for state in found[node.name]:
                if front(state.labels) and state.labels.get(NODE_LABEL) == node.name and state.name not in removed:
                    _remove(executors[node.name], node.name, state, role, progress)
                    removed.append(state.name)
    for node in order:
        mine = [state for state in found[node.name] if state.labels.get(NODE_LABEL) == node.name
                and not is_router(state.labels) and not is_gateway(state.labels)]
        if not mine:
            progress.say("down: nothing to remove", node.name)
        for state in mine:
            _remove(executors[node.name], node.name, state, state.status, progress)
            removed.append(state.name)
    return removed


def _remove(executor: Executor, node: str, state: ContainerState, why: str, progress: Progress) -> None:
    try:
        executor.remove(state.name)
    except EngineError as exc:
        raise fail(node, "down", f"removing {state.name}: {exc}") from exc
    progress.say(f"down: removed {state.name} ({why})", node)
