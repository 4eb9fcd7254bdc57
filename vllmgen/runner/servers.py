"""Several API servers (replicas, hybrid/external DP) and the router in front of them: apply's
``servers`` and ``router`` steps, and their part of ``status``.

The router is started only once every API server behind it answers /health (it would answer 502
for a server still loading), then verified end to end through its own URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vllmgen.plan.plan import LABEL_PREFIX, Endpoint, Plan
from vllmgen.plan.router import Worker
from vllmgen.render.router_artifacts import ROLE, router_container
from vllmgen.runner import identity, verify
from vllmgen.runner.changes import offline_refused
from vllmgen.runner.executor import EngineError, Executor, RunRequest, image_hash
from vllmgen.runner.host import HostError
from vllmgen.runner.progress import fail

if TYPE_CHECKING:
    from vllmgen.runner.steps import Apply, Step

ROLE_LABEL = f"{LABEL_PREFIX}.role"
NODE_LABEL = f"{LABEL_PREFIX}.node"
ROUTER_DOCKERFILE = "router/Dockerfile"


def is_router(labels: Mapping[str, str]) -> bool:
    return labels.get(ROLE_LABEL) == ROLE


def api_servers(plan: Plan) -> tuple[Worker, ...]:
    """Every node that runs an API server, head first (the router's workers when there is one)."""
    return tuple(Worker(node, url) for node, url in plan.server_urls)


def several(plan: Plan) -> bool:
    return len(api_servers(plan)) > 1


def _endpoint_at(plan: Plan, url: str) -> Endpoint:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return replace(plan.direct_endpoint, address=host.strip("[]"), port=int(port))


def router_dockerfile(deploy_dir: Path, base: str, override: str | None) -> str:
    """router/Dockerfile as apply builds it (and bundle, to the same label): FROM swapped for ``override``."""
    text = (deploy_dir / ROUTER_DOCKERFILE).read_text(encoding="utf-8")
    return text.replace(f"FROM {base}\n", f"FROM {override}\n", 1) if override else text


# --- apply ------------------------------------------------------------------------------------


def step_servers(run: Apply, step: Step) -> None:
    """Wait until every API server in scope answers /health, naming the one that does not."""
    for server in api_servers(run.plan):
        if server.node not in run.executors or server.node == run.plan.head.name:
            continue  # the head's server is waited for by verify
        executor = run.executors[server.node]
        container = run.plan.node(server.node).container.name
        verify.wait_healthy(executor, _endpoint_at(run.plan, server.url), run.progress, timeout=run.options.timeout,
                            alive=lambda: run._alive(step.name), step=step.name,
                            what=f"the API server at {server.url} (/health)", interval=run.options.health_poll,
                            logs=lambda e=executor, c=container: e.logs(c, tail=20), watches=run._watching())
        run._outcome(step.name, server.node, "ok", f"{server.url}/health 200")


def step_router(run: Apply, step: Step) -> None:
    plan, router = run.plan, run.plan.router
    assert router is not None
    name = router.node
    executor = run.executors[name]
    # only healthy servers go behind the router: each one's /health once more, now
    for server in router.workers:
        result = executor.http("GET", f"{server.url}/health", timeout=5)
        if result.status != 200:
            raise fail(server.node, step.name, f"{server.url}/health answers {result.status or result.body}; "
                       "the router is not started in front of a server that is not healthy",
                       f"start node {server.node} first (`vllmgen apply SPEC --node {server.node}`)")
    container = router_container(plan)
    dockerfile = router_dockerfile(run.deploy_dir, router.base_image, run.options.router_base_image)
    labels = {"io.vllmgen.image-hash": image_hash(dockerfile)}
    existing = run._engine(name, step.name, lambda: executor.image_labels(router.image))
    if existing is None or existing.get("io.vllmgen.image-hash") != labels["io.vllmgen.image-hash"]:
        if plan.offline:
            raise offline_refused(name, step.name, f"{router.image} is not on the node" if existing is None
                                  else f"{router.image} was built from another router/Dockerfile")
        run._engine(name, step.name, lambda: executor.build_image(
            run.deploy_dir / "router", router.image, dockerfile, labels,
            lambda line: run.progress.say(f"{step.name}: {line}", name)))
    image_id = run._engine(name, step.name, lambda: executor.image_id(router.image)) or ""
    wanted = identity.run_labels(dict(container.labels)[identity.HASH_LABEL], image_id, identity.NO_SECRETS)
    state = run._engine(name, step.name, lambda: executor.inspect(container.name))
    if state is not None and state.running and state.labels.get(identity.HASH_LABEL) == wanted[identity.HASH_LABEL]:
        result = "unchanged"
    else:
        if state is not None:
            run._engine(name, step.name, lambda: executor.remove(container.name))
        run._engine(name, step.name, lambda: executor.run(RunRequest(container, "", {}, False, wanted)))
        result = "created" if state is None else "replaced"
    endpoint = replace(plan.direct_endpoint, address=router.reach, port=router.port)
    verify.wait_healthy(executor, endpoint, run.progress, timeout=min(run.options.timeout, 120),
                        alive=lambda: None, step=step.name, what=f"the router at {router.url} (/health)",
                        interval=1.0, logs=lambda: executor.logs(container.name, tail=20))
    api_key = run.secrets.get("VLLM_API_KEY") if plan.endpoint.api_key else None
    passed = verify.verify(executor, endpoint, api_key, run.progress,
                           logs=lambda: executor.logs(container.name, tail=40), public=plan.gateway is None)
    run._outcome(step.name, name, result, f"{router.url} in front of {len(router.workers)} server(s); "
                 + "; ".join(passed))


# --- status -----------------------------------------------------------------------------------


def report(plan: Plan, executors: Mapping[str, Executor], api_key: str | None) -> dict[str, Any]:
    """Per API server health, and the router's container and health."""
    out: dict[str, Any] = {}
    probe = next(iter(executors.values()), None)
    if probe is None:
        return out
    if several(plan):
        out["servers"] = []
        for server in api_servers(plan):
            health = probe.http("GET", f"{server.url}/health", timeout=3)
            out["servers"].append({"node": server.node, "url": server.url, "health": health.status or health.body})
    router = plan.router
    if router is not None and router.node in executors:
        executor = executors[router.node]
        entry: dict[str, Any] = {"node": router.node, "url": router.url, "container": router.container_name}
        try:
            state = executor.inspect(router.container_name)
            entry["status"] = state.status if state else "absent"
        except (EngineError, HostError) as exc:
            entry["status"] = f"unreachable: {exc}"
        health = executor.http("GET", f"{router.url}/health", timeout=3)
        entry["health"] = health.status or health.body
        out["router"] = entry
    return out


def problems(extra: Mapping[str, Any]) -> list[str]:
    found = [f"API server on node {s['node']} ({s['url']}): /health {s['health']}"
             for s in extra.get("servers", []) if s["health"] != 200]
    router = extra.get("router")
    if router is not None:
        if router["status"] != "running":
            found.append(f"router {router['container']} on node {router['node']}: {router['status']}")
        elif router["health"] != 200:
            found.append(f"router {router['url']}/health: {router['health']}")
    return found


def lines(extra: Mapping[str, Any]) -> list[str]:
    out = [f"server {s['node']} {s['url']}: /health {s['health']}" for s in extra.get("servers", [])]
    router = extra.get("router")
    if router is not None:
        out.append(f"router {router['url']} ({router['container']} on {router['node']}): {router['status']}, "
                   f"/health {router['health']}")
    return out
