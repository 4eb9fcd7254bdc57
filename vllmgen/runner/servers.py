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

from vllmgen.plan import label_names
from vllmgen.plan.plan import Endpoint, Plan
from vllmgen.plan.router import ROLE, Worker
from vllmgen.runner import identity, kvtransfer, verify
from vllmgen.runner import secrets as deployment_secrets
from vllmgen.runner.changes import offline_refused
from vllmgen.runner.dryrun import DryRunHttp
from vllmgen.runner.executor import EngineError, Executor, RunRequest, dockerfile_for, image_hash
from vllmgen.runner.host import HostError
from vllmgen.runner.http import HttpClient
from vllmgen.runner.progress import fail
from vllmgen.targets.docker.engine import docker_engine

if TYPE_CHECKING:
    from vllmgen.runner.steps import Apply, Step

ROLE_LABEL = label_names.ROLE
NODE_LABEL = label_names.NODE
ROUTER_DOCKERFILE = "router/Dockerfile"


def is_router(labels: Mapping[str, str]) -> bool:
    return labels.get(ROLE_LABEL) == ROLE


def api_servers(plan: Plan) -> tuple[Worker, ...]:
    """Every API server, head first, as the plan holds it (Plan.server_urls: exposure.api_servers, or P/D's
    instances); the router's workers are the same list."""
    return tuple(Worker(node, url) for node, url in plan.server_urls)


def several(plan: Plan) -> bool:
    return len(api_servers(plan)) > 1


def _endpoint_at(plan: Plan, url: str) -> Endpoint:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return replace(plan.direct_endpoint, address=host.strip("[]"), port=int(port))


def router_dockerfile(deploy_dir: Path, base: str, override: str | None) -> str:
    """router/Dockerfile as apply builds it (and bundle, to the same label): its FROM (``base``) swapped for
    ``override``, as the deployment's own Dockerfile is (executor.dockerfile_for)."""
    return dockerfile_for(deploy_dir / Path(ROUTER_DOCKERFILE).parent, override)


# --- apply ------------------------------------------------------------------------------------


def step_servers(run: Apply, step: Step) -> None:
    """Wait until every API server in scope answers /health, naming the one that does not."""
    for server in api_servers(run.plan):
        if server.node not in run.executors or server.node == run.plan.head.name:
            continue  # the head's server is waited for by verify
        executor = run.executors[server.node]
        container = run.plan.node(server.node).container.name
        verify.wait_healthy(run.http, server.node, _endpoint_at(run.plan, server.url), run.progress,
                            timeout=run.options.timeout,
                            alive=lambda: run._alive(step.name), step=step.name,
                            what=f"the API server at {server.url} (/health)", interval=run.options.health_poll,
                            logs=lambda e=executor, c=container: e.logs(c, tail=20), watches=run._watching())  # type: ignore[misc]  # mypy cannot type a lambda with defaults
        run._outcome(step.name, server.node, "ok", f"{server.url}/health 200")


def step_router(run: Apply, step: Step) -> None:
    plan, router = run.plan, run.plan.router
    assert router is not None
    name = router.node
    executor = run.executors[name]
    # only healthy servers go behind the router: each one's /health once more, now
    for server in router.workers:
        health = run.http.request("GET", f"{server.url}/health", timeout=5)
        if health.status != 200:
            raise fail(server.node, step.name, f"{server.url}/health answers {health.status or health.body}; "
                       "the router is not started in front of a server that is not healthy",
                       f"start node {server.node} first (`vllmgen apply SPEC --node {server.node}`)")
    container = plan.router_container
    assert container is not None
    image_id = _router_image(run, step, name) if run.target.docker else ""
    # in P/D mode the router holds the API key (vllmgen.plan.router.WORKER_KEY_ENV): a new key replaces it, as
    # the gateway is replaced
    key = deployment_secrets.api_key(plan, run.secrets)
    router_secrets = {secret.name: key for secret in container.secrets if key is not None}
    wanted = identity.run_labels(dict(container.labels)[identity.HASH_LABEL], image_id,
                                 run.fingerprint if container.secrets else identity.NO_SECRETS)
    state = run._engine(name, step.name, lambda: executor.inspect(container.name))
    if state is not None and state.running and state.labels.get(identity.HASH_LABEL) == wanted[identity.HASH_LABEL]:
        result = "unchanged"
    else:
        node_dir = ""
        if not run.target.docker:  # its run.sh (nodes/<node>.router/) goes where the node's scripts are
            node_dir = run._engine(name, step.name, lambda: executor.prepare_deploy_dir(
                run.deploy_dir, (), f"{run.options.remote_dir}/{plan.name}"))
        if state is not None:
            run._engine(name, step.name, lambda: executor.remove(container.name))
        run._engine(name, step.name, lambda: executor.run(RunRequest(container, node_dir, router_secrets, False, wanted)),
                    "is the vllm-router executable there? see router.executable" if not run.target.docker
                    else None)
        result = "created" if state is None else "replaced"
    endpoint = replace(plan.direct_endpoint, address=router.reach, port=router.port)
    verify.wait_healthy(run.http, name, endpoint, run.progress, timeout=min(run.options.timeout, 120),
                        alive=lambda: None, step=step.name, what=f"the router at {router.url} (/health)",
                        interval=1.0, logs=lambda: executor.logs(container.name, tail=20))
    api_key = deployment_secrets.api_key(plan, run.secrets)
    passed = verify.verify(run.http, name, endpoint, api_key, run.progress,
                           logs=lambda: executor.logs(container.name, tail=40), public=plan.gateway is None)
    run._outcome(step.name, name, result, f"{router.url} in front of {len(router.workers)} server(s); "
                 + "; ".join(passed))


def _router_image(run: Apply, step: Step, name: str) -> str:
    """Build router/Dockerfile's image on the router's node unless it is there already; its ID."""
    router = run.plan.router
    assert router is not None
    executor = run.executors[name]
    dockerfile = router_dockerfile(run.deploy_dir, router.base_image, run.options.router_base_image)
    labels = {label_names.IMAGE_HASH: image_hash(dockerfile)}
    existing = run._engine(name, step.name, lambda: docker_engine(executor).image_labels(router.image))
    if existing is None or existing.get(label_names.IMAGE_HASH) != labels[label_names.IMAGE_HASH]:
        if run.plan.offline:
            raise offline_refused(name, step.name, f"{router.image} is not on the node" if existing is None
                                  else f"{router.image} was built from another router/Dockerfile")
        run._engine(name, step.name, lambda: docker_engine(executor).build_image(
            run.deploy_dir / "router", router.image, dockerfile, labels,
            lambda line: run.progress.say(f"{step.name}: {line}", name)))
    return run._engine(name, step.name, lambda: docker_engine(executor).image_id(router.image)) or ""


def _decode_reading(run: Apply, worker: Worker, headers: Mapping[str, str]) -> tuple[kvtransfer.Counters, str]:
    """A decode instance's NIXL counters (/metrics) and its whole log."""
    executor = run.executors[worker.node]
    metrics = run.http.request("GET", f"{worker.url}/metrics", headers, timeout=10)
    log = executor.logs(run.plan.node(worker.node).container.name, tail=None)
    return kvtransfer.counters(metrics.body if metrics.status == 200 else ""), log


def step_kv_transfer(run: Apply, step: Step) -> None:
    """A completion through the front door, then the proof that a decode instance read its KV cache over NIXL
    (a decode that recomputed the prompt answers too, and fails here)."""
    plan, router = run.plan, run.plan.router
    assert router is not None
    decodes = [worker for worker in router.decode if worker.node in run.executors]
    if not decodes:
        run._outcome(step.name, router.node, "skipped", "no decode instance in scope (--node)")
        return
    api_key = deployment_secrets.api_key(plan, run.secrets)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    before = {worker.node: _decode_reading(run, worker, headers)[0] for worker in decodes}
    front = plan.endpoint.url if plan.gateway else router.url
    answer = run.http.request("POST", f"{front}/v1/completions", headers,
                              kvtransfer.completion_body(plan.endpoint.served_name), timeout=120)
    if run.options.dry_run or isinstance(run.http, DryRunHttp):
        # the requests above are printed; what they would read back is not there to judge
        run._outcome(step.name, router.node, "ok", "(dry run) the decode instances' /metrics and logs would be read")
        return
    if answer.status != 200:
        raise fail(router.node, step.name, f"POST {front}/v1/completions: HTTP {answer.status or ''} "
                   f"{' '.join(answer.body.split())[:300]}", "read the router's and the instances' logs")
    evidence = kvtransfer.wait_moved(
        lambda: {worker.node: _decode_reading(run, worker, headers) for worker in decodes}, before)
    if not evidence.moved:
        raise fail(router.node, step.name, "the completion was answered, but no decode instance read its KV cache "
                   "from a prefill instance: " + "; ".join(evidence.lines),
                   "check the NIXL side channel (VLLM_NIXL_SIDE_CHANNEL_HOST/PORT), that nixl is installed beside "
                   "vLLM, and the decode's log below",
                   run.executors[decodes[0].node].logs(plan.node(decodes[0].node).container.name, tail=30))
    run._outcome(step.name, router.node, "ok", f"{front}/v1/completions answered; " + "; ".join(evidence.lines))


# --- status -----------------------------------------------------------------------------------


def report(plan: Plan, executors: Mapping[str, Executor], http: HttpClient, api_key: str | None) -> dict[str, Any]:
    """Per API server health, and the router's container and health."""
    out: dict[str, Any] = {}
    if not executors:
        return out
    if several(plan):
        out["servers"] = []
        for server in api_servers(plan):
            health = http.request("GET", f"{server.url}/health", timeout=3)
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
        health = http.request("GET", f"{router.url}/health", timeout=3)
        entry["health"] = health.status or health.body
        out["router"] = entry
        if router.disaggregated:  # how much KV cache each decode instance has read over NIXL so far
            out["kv_transfer"] = {worker.node: kvtransfer.counters(
                metrics.body if (metrics := http.request("GET", f"{worker.url}/metrics", timeout=5)).status == 200
                else "").as_dict() for worker in router.decode}
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
    for name, seen in extra.get("kv_transfer", {}).items():
        out.append(f"kv transfer into {name}: {seen['transfers']:.0f} NIXL transfer(s), {seen['bytes']:.0f} bytes, "
                   f"{seen['failed']:.0f} failed" + ("" if seen["nixl_metrics"] else " (no vllm:nixl_* metrics)"))
    return out
