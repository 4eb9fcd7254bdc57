"""What ``apply`` would do on each node, given what runs there now: the plan that ``vllmgen plan`` prints
and that ``apply`` computes first, prints, and then carries out.

Read-only: through the same executors as apply, it reads daemon.json (and merges it in memory), the
image's labels, the containers' labels and this deployment's containers. Per node: the daemon.json
keys that change, whether the image is built, and what happens to the container (create, replace and
why, nothing); and the orphans (this deployment's containers of nodes no longer in the spec) apply
removes. The same decisions drive apply (its head and workers steps call ``decisions``). Given the steps'
context (runner.context.StepContext), as every step helper is.
"""

from __future__ import annotations

import json
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass
from typing import Any

from vllmgen.errors import EXIT_DRIFT, RunnerError, VllmgenError
from vllmgen.runner import identity, orphans
from vllmgen.runner.context import StepContext
from vllmgen.runner.executor import GPUS_LABEL, IMAGE_HASH_LABEL, dockerfile_for, image_hash
from vllmgen.runner.gateway_step import decide as decide_gateway
from vllmgen.runner.progress import fail
from vllmgen.targets import registry
from vllmgen.targets.docker import daemon_step
from vllmgen.targets.docker.engine import docker_engine

NEW_IMAGE = "sha256:new-build"  # the ID a container gets from an image not built yet
RESTARTING_POLICIES = ("always", "unless-stopped")  # containers Docker starts again after its restart


class Cancelled(VllmgenError):
    """Apply was not allowed to stop running containers: the changes stay pending (exit 1)."""

    exit_code = EXIT_DRIFT


@dataclass(frozen=True)
class NodeChange:
    node: str
    container: str
    action: str  # create, replace, unchanged
    why: str
    running: bool  # a running container is replaced
    image: str  # build, unchanged
    image_why: str
    daemon_keys: tuple[str, ...] = ()  # daemon.json keys that change ("" when none)
    daemon_path: str = ""


@dataclass(frozen=True)
class Orphan:
    engine_of: str  # the node whose engine holds it
    container: str
    node: str | None  # its io.vllmgen.node label
    status: str


@dataclass(frozen=True)
class FrontChange:
    """The router's or the gateway's container: started after the servers, so the plan shows no image or
    daemon.json of theirs (apply builds the router's image in its step)."""

    node: str
    container: str
    action: str  # create, replace, unchanged
    why: str
    running: bool


@dataclass(frozen=True)
class Images:
    """Per node: whether its image is built (and why), and the image ID its container will get
    (``NEW_IMAGE`` until a build gives the real one)."""

    plan: dict[str, tuple[str, str]]  # node -> (build | unchanged, why)
    ids: dict[str, str]


@dataclass(frozen=True)
class Changes:
    deployment: str
    nodes: tuple[NodeChange, ...]
    orphans: tuple[Orphan, ...]
    gateway: FrontChange | None = None
    router: FrontChange | None = None

    @property
    def fronts(self) -> tuple[tuple[str, FrontChange], ...]:
        """The router and the gateway in the plan, in the order apply starts them."""
        return tuple((what, front) for what, front in (("router", self.router), ("gateway", self.gateway))
                     if front is not None)

    @property
    def pending(self) -> bool:
        return bool(self.orphans) or any(
            n.action != "unchanged" or n.image == "build" or n.daemon_keys for n in self.nodes) or any(
            front.action != "unchanged" for _, front in self.fronts)

    def disruptive(self) -> list[str]:
        """Running containers this plan stops: replaced, or removed as orphans."""
        out = [f"{n.container} on {n.node} ({n.why})" for n in self.nodes if n.action == "replace" and n.running]
        out += [f"{front.container} on {front.node} ({front.why})" for _, front in self.fronts
                if front.action == "replace" and front.running]
        out += [f"{o.container} on {o.engine_of} (orphan)" for o in self.orphans if o.status == "running"]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "pending": self.pending,
                "nodes": [asdict(n) | {"daemon_keys": list(n.daemon_keys)} for n in self.nodes],
                "orphans": [asdict(o) for o in self.orphans],
                "router": asdict(self.router) if self.router else None,
                "gateway": asdict(self.gateway) if self.gateway else None}

    def as_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n"

    def text(self) -> str:
        lines = []
        for n in self.nodes:
            lines.append(f"node {n.node}:")
            if n.daemon_keys:
                lines.append(f"  daemon.json  change {n.daemon_path}: {', '.join(n.daemon_keys)} (Docker restarts)")
            lines.append(f"  image        {'build' if n.image == 'build' else 'nothing'}"
                         + (f" ({n.image_why})" if n.image_why else ""))
            verb = {"create": "create", "replace": "replace", "unchanged": "nothing"}[n.action]
            lines.append(f"  container    {verb} {n.container} ({n.why})")
        for what, front in self.fronts:
            verb = {"create": "create", "replace": "replace", "unchanged": "nothing"}[front.action]
            lines.append(f"{what} on {front.node}:")
            lines.append(f"  container    {verb} {front.container} ({front.why})")
        for o in self.orphans:
            lines.append(f"orphan: remove {o.container} on {o.engine_of}'s engine "
                         f"(node {o.node or '?'} is no longer in the spec; {o.status})")
        if self.pending:
            count = sum(1 for n in self.nodes if n.action != "unchanged") + sum(
                1 for _, front in self.fronts if front.action != "unchanged")
            lines.append(f"changes pending: {count} container(s) to create or replace, "
                         f"{sum(1 for n in self.nodes if n.image == 'build')} image build(s), "
                         f"{sum(1 for n in self.nodes if n.daemon_keys)} daemon.json change(s), "
                         f"{len(self.orphans)} orphan(s) to remove")
        else:
            lines.append("nothing to do: the deployment is as the spec says")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Convergence:
    """What apply converges to (as docker-compose's ConvergencePlan): the changes ``vllmgen plan`` prints,
    and what apply's steps then carry out: the daemon.json merges read, the image decisions and IDs."""

    changes: Changes
    daemon_merges: dict[str, daemon_step.Change]
    images: Images


def compute(context: StepContext) -> Convergence:
    """The plan, after apply's preflight (secrets resolved): read through the context's executors,
    returned as a value; apply keeps it for the steps."""
    names = tuple(n.name for n in context.plan.nodes if n.name in context.executors)
    docker = registry.target(context.plan.runtime).docker  # a Docker target's own: daemon.json, the image
    merges = daemon_step.read_all(context, names) if context.plan.daemon and docker else {}
    image = _images(context, names) if docker else Images({name: ("unchanged", "") for name in names}, {})
    images = image.plan
    restarts = {name for name, change in merges.items() if change.merge.changed}
    decided = decisions(context, image, restarts)
    nodes = []
    for name in names:
        action, why, running = decided[name]
        change = merges.get(name)
        keys = tuple(change.merge.changes) if change and change.merge.changed else ()
        nodes.append(NodeChange(name, context.plan.node(name).container.name, action, why, running,
                                images[name][0], images[name][1], keys, change.path if change else ""))
    plan = context.plan
    router = None
    if plan.router and plan.router.node in context.executors and plan.router_container:
        router = FrontChange(plan.router.node, plan.router_container.name, *decide_router(context))
    gateway = None
    if plan.gateway and plan.gateway.node in context.executors and plan.gateway_container:
        gateway = FrontChange(plan.gateway.node, plan.gateway_container.name, *decide_gateway(context))
    return Convergence(Changes(plan.name, tuple(nodes), tuple(_orphans(context, names)), gateway, router), merges,
                       image)


ROUTER_STEP = "router"


def router_labels(context: StepContext, image_id: str) -> dict[str, str]:
    """The run labels of the router's container started from ``image_id``: the API key's fingerprint only
    when it holds the key (P/D), so a new key replaces it then, as the gateway."""
    container = context.plan.router_container
    assert container is not None
    return identity.run_labels(dict(container.labels)[identity.HASH_LABEL], image_id,
                               context.fingerprint if container.secrets else identity.NO_SECRETS)


def decide_router(context: StepContext, image_id: str | None = None) -> tuple[str, str, bool]:
    """The router's container: create / replace / unchanged, why, and whether it runs now. ``image_id``:
    its image's, once the router step has built it; None (the plan, before any build): the image it runs."""
    router, container = context.plan.router, context.plan.router_container
    assert router is not None and container is not None
    executor = context.executors[router.node]
    state = context.engine(router.node, ROUTER_STEP, lambda: executor.inspect(container.name))
    if state is None:
        return "create", "not there", False
    wanted = router_labels(context, state.labels.get(identity.IMAGE_LABEL, "") if image_id is None else image_id)
    if state.running and state.labels.get(identity.HASH_LABEL) == wanted[identity.HASH_LABEL]:
        return "unchanged", "running, config-hash matches", True
    why = identity.why_replaced(state.labels, wanted, dict(container.labels)[identity.HASH_LABEL])
    return "replace", why or f"it is {state.status} (exit code {state.exit_code})", state.running


def _images(context: StepContext, names: tuple[str, ...]) -> Images:
    """Per node: build (and why) or unchanged, and the image ID its container gets."""
    try:
        dockerfile = dockerfile_for(context.deploy_dir, context.options.base_image)
    except (OSError, ValueError) as exc:
        raise fail(None, "image", str(exc), "run `vllmgen render SPEC` first") from exc
    wanted = image_hash(dockerfile)
    images: dict[str, tuple[str, str]] = {}
    ids: dict[str, str] = {}
    for name in names:
        executor = context.executors[name]
        labels = context.engine(name, "image", lambda e=executor: docker_engine(e).image_labels(context.plan.image.tag))  # type: ignore[misc]  # mypy cannot type a lambda with defaults
        if labels is None:
            images[name] = ("build", f"{context.plan.image.tag} is not on the node")
        elif labels.get(IMAGE_HASH_LABEL) != wanted:
            images[name] = ("build", "the Dockerfile changed" + (" (--base-image)" if context.options.base_image else ""))
        else:
            images[name] = ("unchanged", "")
        if context.plan.offline and images[name][0] == "build":
            images[name] = offline_refusal(images[name][1])
        ids[name] = (NEW_IMAGE if images[name][0] == "build" else
                     context.engine(name, "image", lambda e=executor: docker_engine(e).image_id(context.plan.image.tag)) or "")  # type: ignore[misc]  # mypy cannot type a lambda with defaults
    return Images(images, ids)


OFFLINE_TODO = "carry it with `vllmgen bundle SPEC -o DIR` and `vllmgen bundle load DIR --node NAME` (or --all)"
OFFLINE_REFUSES = "offline: true: apply refuses to build or pull it"


def offline_refusal(why: str) -> tuple[str, str]:
    """offline: true never builds or pulls: the image must be what `vllmgen bundle load` placed. The
    plan shows the refused build; ``refuse_offline_builds`` stops apply on it before anything changes."""
    return "build", f"{why}; {OFFLINE_REFUSES}: {OFFLINE_TODO}"


def refuse_offline_builds(context: StepContext, planned: Changes) -> None:
    if not context.plan.offline or context.options.dry_run:
        return
    for change in planned.nodes:
        if change.image == "build":
            why = change.image_why.split(f"; {OFFLINE_REFUSES}")[0]
            raise fail(change.node, "image", f"{why}, and offline: true forbids building or pulling it", OFFLINE_TODO)


def offline_refused(node: str, step: str, why: str) -> RunnerError:
    """The same refusal for an image a later step would build (the router's)."""
    return fail(node, step, f"{why}, and offline: true forbids building or pulling it", OFFLINE_TODO)


def _orphans(context: StepContext, names: tuple[str, ...]) -> list[Orphan]:
    listed = {name: context.engine(name, "orphans", lambda e=context.executors[name]: e.list_containers(context.plan.name))  # type: ignore[misc]  # mypy cannot type a lambda with defaults
              for name in names}
    return [Orphan(name, state.name, state.labels.get(orphans.NODE_LABEL), state.status)
            for name, state in orphans.scan(context.plan, listed, context.executors)]


def _step(context: StepContext, name: str) -> str:
    return "head" if context.plan.node(name).role == "head" else "workers"


def decide(context: StepContext, name: str, image: Images, restart: bool = False) -> tuple[str, str, bool]:
    """create / replace / unchanged, why, and whether the container is running now; ``image``: the image
    decisions (the plan's, or apply's once its image step ran); ``restart``: Docker restarts on the node
    first (daemon.json), which stops a container without a restarting policy."""
    executor, node = context.executors[name], context.plan.node(name)
    container = node.container
    state = context.engine(name, _step(context, name), lambda: executor.inspect(container.name))
    if state is None:
        return "create", "not there", False
    if (state.labels.get(orphans.DEPLOYMENT_LABEL) != context.plan.name
            or state.labels.get(orphans.NODE_LABEL) != name):
        raise fail(name, _step(context, name),
                   f"a container named {container.name} exists and is not this deployment's node {name}"
                   f" (labels {dict(state.labels) or 'none'})",
                   f"remove or rename it (docker rm -f {container.name}); vllmgen touches only its own containers")
    # the image is built before the container starts: its ID is known then; until then, the rest is compared
    rebuilt = image.ids.get(name) == NEW_IMAGE and identity.IMAGE_LABEL in state.labels
    wanted = context.run_request(name, state.labels[identity.IMAGE_LABEL] if rebuilt else image.ids.get(name, "")).labels
    why = identity.why_replaced(state.labels, wanted, dict(container.labels)[identity.HASH_LABEL])
    if why:
        return "replace", why, state.running
    if state.labels.get(GPUS_LABEL) != wanted.get(GPUS_LABEL):
        return ("replace", "it was started " + ("without" if state.labels.get(GPUS_LABEL) else "with") + " GPUs",
                state.running)
    if not state.running:
        return "replace", f"it is {state.status} (exit code {state.exit_code})", False
    if rebuilt:
        return "replace", f"the image is rebuilt ({image.plan[name][1]}): a new image ID", True
    if restart and container.restart not in RESTARTING_POLICIES:
        return "replace", "Docker restarts for daemon.json, which stops it", True
    return "unchanged", "running, config-hash matches", True


def decisions(context: StepContext, image: Images,
              restarts: AbstractSet[str] = frozenset()) -> dict[str, tuple[str, str, bool]]:
    """Every node's decision; a multi-node group replaced together; ``--node`` never replaces one alone."""
    names = [n.name for n in context.plan.nodes if n.name in context.executors]
    group = len(context.plan.nodes) > 1
    whole = group and len(names) == len(context.plan.nodes)
    # under --node, the daemon-json step refuses a restart beneath a running group (daemon_step)
    decided = {name: decide(context, name, image, name in restarts and (whole or not group)) for name in names}
    if context.plan.backend == "replicas":  # independent servers: each is replaced on its own
        return decided
    if group and not whole:
        _refuse_partial_replace(context, decided)
    if whole and any(action != "unchanged" for action, _, _ in decided.values()):
        # Ray workers and torch.distributed followers belong to one head: restart the group together
        for name, (action, _, running) in decided.items():
            if action == "unchanged":
                decided[name] = ("replace", "another node of the group changes; the group restarts together", running)
    return decided


def _refuse_partial_replace(context: StepContext, decided: dict[str, tuple[str, str, bool]]) -> None:
    """``--node`` on a multi-node deployment may start a missing container, never replace one: Ray
    workers and torch.distributed followers join their head once, so one node restarted alone leaves
    the group broken while apply would report success."""
    replaced = {name: why for name, (action, why, _) in decided.items() if action == "replace"}
    if not replaced:
        return
    name, why = next(iter(replaced.items()))
    others = ", ".join(n.name for n in context.plan.nodes if n.name not in decided)
    raise fail(name, _step(context, name),
               f"{context.plan.node(name).container.name} would be replaced ({why}), but it is one node of a"
               f" {len(context.plan.nodes)}-node {context.plan.backend} group ({others} not in scope): replaced alone,"
               " it would not rejoin the others; no container was touched",
               "restart the group together: `vllmgen apply SPEC --all` from a machine that reaches every node;"
               " or `vllmgen down SPEC --node NAME` on every node, then `vllmgen apply SPEC --node NAME` on the"
               " head first and on each worker after it")
