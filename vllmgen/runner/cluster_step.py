"""The cluster step: every node joined before vLLM serves.

Ray: every node's address and every GPU in the head's ``ray.cluster_resources()``; a worker that
never joins is named with its address. mp: the followers joined and the model loaded (the head's
/health), the progress line naming the start phase.
"""

from __future__ import annotations

from vllmgen.plan.plan import NodePlan
from vllmgen.runner import verify
from vllmgen.runner.context import StepContext
from vllmgen.runner.progress import WaitTimeout, fail, wait_for
from vllmgen.targets.docker.engine import docker_engine


def run(context: StepContext, step: str) -> None:
    if context.plan.backend == "mp":
        _note_missing_workers(context)

        def alive() -> str:
            context.alive(step)
            return context.phase()

        verify.wait_healthy(context.http, context.plan.head.name, context.plan.direct_endpoint, context.progress,
                            timeout=context.options.timeout, alive=alive, step=step,
                            what="the followers to join and the model to load (/health)",
                            interval=context.options.health_poll, logs=context.head_logs, watches=context.watching())
        context.record(step, context.plan.head.name, "ok", f"{len(context.plan.nodes)} node(s), /health 200")
        return
    _ray_cluster(context, step)


def _note_missing_workers(context: StepContext) -> None:
    for node in context.plan.workers:
        if node.name not in context.executors:
            context.progress.say(f"{node.name} is started by its own `vllmgen apply SPEC --node {node.name}` on "
                           f"{node.address}; waiting for it", context.plan.head.name)


def _ray_cluster(context: StepContext, step: str) -> None:
    head_node = context.plan.head
    head = context.executors[head_node.name]
    container = head_node.container.name
    want_gpus = sum(node.gpus for node in context.plan.nodes)
    want_nodes = {node.address: node.name for node in context.plan.nodes}
    _note_missing_workers(context)
    seen: list[tuple[float, tuple[str, ...]]] = []

    def todo(node: NodePlan) -> str:
        if node.role == "head":
            return f"read its log below (docker logs {container}); fix the spec and apply again"
        return (f"{node.name} ({node.address}) stopped before joining the Ray cluster at {head_node.address}: "
                f"check that {node.address} is its address on a network that reaches {head_node.address}, "
                "and read its log below")

    def poll() -> tuple[bool | None, str]:
        context.alive(step, todo)
        view = context.engine(head_node.name, step, lambda: docker_engine(head).cluster_view(container))
        if view is None:
            return None, "Ray is not answering in the head yet"
        seen[:] = [(view.gpus, view.nodes)]
        status = f"{len(view.nodes)} of {len(want_nodes)} nodes, {view.gpus:g} of {want_gpus} GPUs"
        joined = set(want_nodes) <= set(view.nodes) and view.gpus >= want_gpus
        return (True if joined else None), status

    try:
        wait_for(context.progress, f"{len(want_nodes)} Ray node(s) with {want_gpus} GPU(s)", poll,
                 timeout=context.options.timeout, interval=context.options.poll, node=head_node.name)
    except WaitTimeout as exc:
        gpus, alive = seen[0] if seen else (0.0, ())
        missing = [(address, name) for address, name in want_nodes.items() if address not in alive]
        if not missing:
            raise fail(head_node.name, step,
                       f"the Ray cluster has {gpus:g} of {want_gpus} GPUs after {exc.waited:.0f}s",
                       f"check --num-gpus in each node's command (docker exec {container} ray status)") from exc
        first_address, first = missing[0]
        names = ", ".join(f"{name} ({address})" for address, name in missing)
        executor = context.executors.get(first)
        logs = executor.logs(context.plan.node(first).container.name) if executor else None
        raise fail(first, step,
                   f"{names} did not join the Ray cluster at {head_node.address} within {exc.waited:.0f}s "
                   f"({exc.last})",
                   f"check that {first_address} is the address of {first} on a network that reaches "
                   f"{head_node.address}, and that the Ray port is open between them; "
                   f"`docker exec {container} ray status` shows who joined", logs) from exc
    context.record(step, head_node.name, "ok", f"{len(want_nodes)} node(s), {want_gpus} GPU(s)")
