"""The cluster step: every node joined before vLLM serves.

Ray: every node's address and every GPU in the head's ``ray.cluster_resources()``; a worker that
never joins is named with its address. mp: the followers joined and the model loaded (the head's
/health), the progress line naming the start phase.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vllmgen.plan.plan import NodePlan
from vllmgen.runner import verify
from vllmgen.runner.progress import WaitTimeout, fail, wait_for
from vllmgen.targets.docker.engine import docker_engine

if TYPE_CHECKING:
    from vllmgen.runner.steps import Apply


def run(apply: Apply, step: str) -> None:
    if apply.plan.backend == "mp":
        _note_missing_workers(apply)
        verify.wait_healthy(apply.http, apply.plan.head.name, apply.plan.direct_endpoint, apply.progress,
                            timeout=apply.options.timeout, alive=lambda: (apply._alive(step), apply._phase())[1], step=step,
                            what="the followers to join and the model to load (/health)",
                            interval=apply.options.health_poll, logs=apply._head_logs, watches=apply._watching())
        apply._outcome(step, apply.plan.head.name, "ok", f"{len(apply.plan.nodes)} node(s), /health 200")
        return
    _ray_cluster(apply, step)


def _note_missing_workers(apply: Apply) -> None:
    for node in apply.plan.workers:
        if node.name not in apply.executors:
            apply.progress.say(f"{node.name} is started by its own `vllmgen apply SPEC --node {node.name}` on "
                           f"{node.address}; waiting for it", apply.plan.head.name)


def _ray_cluster(apply: Apply, step: str) -> None:
    head_node = apply.plan.head
    head = apply.executors[head_node.name]
    container = head_node.container.name
    want_gpus = sum(node.gpus for node in apply.plan.nodes)
    want_nodes = {node.address: node.name for node in apply.plan.nodes}
    _note_missing_workers(apply)
    seen: list[tuple[float, tuple[str, ...]]] = []

    def todo(node: NodePlan) -> str:
        if node.role == "head":
            return f"read its log below (docker logs {container}); fix the spec and apply again"
        return (f"{node.name} ({node.address}) stopped before joining the Ray cluster at {head_node.address}: "
                f"check that {node.address} is its address on a network that reaches {head_node.address}, "
                "and read its log below")

    def poll() -> tuple[bool | None, str]:
        apply._alive(step, todo)
        view = apply._engine(head_node.name, step, lambda: docker_engine(head).cluster_view(container))
        if view is None:
            return None, "Ray is not answering in the head yet"
        seen[:] = [(view.gpus, view.nodes)]
        status = f"{len(view.nodes)} of {len(want_nodes)} nodes, {view.gpus:g} of {want_gpus} GPUs"
        joined = set(want_nodes) <= set(view.nodes) and view.gpus >= want_gpus
        return (True if joined else None), status

    try:
        wait_for(apply.progress, f"{len(want_nodes)} Ray node(s) with {want_gpus} GPU(s)", poll,
                 timeout=apply.options.timeout, interval=apply.options.poll, node=head_node.name)
    except WaitTimeout as exc:
        gpus, alive = seen[0] if seen else (0.0, ())
        missing = [(address, name) for address, name in want_nodes.items() if address not in alive]
        if not missing:
            raise fail(head_node.name, step,
                       f"the Ray cluster has {gpus:g} of {want_gpus} GPUs after {exc.waited:.0f}s",
                       f"check --num-gpus in each node's command (docker exec {container} ray status)") from exc
        first_address, first = missing[0]
        names = ", ".join(f"{name} ({address})" for address, name in missing)
        executor = apply.executors.get(first)
        logs = executor.logs(apply.plan.node(first).container.name) if executor else None
        raise fail(first, step,
                   f"{names} did not join the Ray cluster at {head_node.address} within {exc.waited:.0f}s "
                   f"({exc.last})",
                   f"check that {first_address} is the address of {first} on a network that reaches "
                   f"{head_node.address}, and that the Ray port is open between them; "
                   f"`docker exec {container} ray status` shows who joined", logs) from exc
    apply._outcome(step, head_node.name, "ok", f"{len(want_nodes)} node(s), {want_gpus} GPU(s)")
