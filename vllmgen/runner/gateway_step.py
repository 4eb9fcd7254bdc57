"""The front door in the runner: apply's ``gateway`` step, its line in the plan, status and down.

The gateway starts last, once every API server (and the router) is healthy; it is replaced when its
config-hash, its image or the API key changes (the key's keyed fingerprint is a label, as for the
nodes). apply then verifies through its public URL (``Plan.endpoint``): /health and the client API
with the key, and a request without the key refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vllmgen.plan import label_names
from vllmgen.plan.gateway import ROLE
from vllmgen.plan.plan import Plan
from vllmgen.runner import identity, secrets, verify
from vllmgen.runner.executor import EngineError, Executor, RunRequest
from vllmgen.runner.host import HostError
from vllmgen.runner.http import HttpClient, Keyed
from vllmgen.runner.progress import fail

if TYPE_CHECKING:
    from vllmgen.runner.steps import Apply, Step

ROLE_LABEL = label_names.ROLE
STEP = "gateway"


def is_gateway(labels: Mapping[str, str]) -> bool:
    return labels.get(ROLE_LABEL) == ROLE


def wanted_labels(run: Apply) -> dict[str, str]:
    plan = run.plan
    assert plan.gateway is not None and plan.gateway_container is not None
    # the image by its (pinned) reference, not its ID: Docker pulls a missing one only when it starts it
    return identity.run_labels(dict(plan.gateway_container.labels)[identity.HASH_LABEL], plan.gateway_container.image,
                               run.fingerprint)


def decide(run: Apply) -> tuple[str, str, bool]:
    """create / replace / unchanged, why, and whether it runs now."""
    plan = run.plan
    assert plan.gateway is not None and plan.gateway_container is not None
    name, container = plan.gateway.node, plan.gateway_container
    executor = run.executors[name]
    state = run._engine(name, STEP, lambda: executor.inspect(container.name))
    if state is None:
        return "create", "not there", False
    if state.labels.get(label_names.DEPLOYMENT) != plan.name or not is_gateway(state.labels):
        raise fail(name, STEP, f"a container named {container.name} exists and is not this deployment's gateway",
                   f"remove or rename it (docker rm -f {container.name}); vllmgen touches only its own containers")
    why = identity.why_replaced(state.labels, wanted_labels(run), dict(container.labels)[identity.HASH_LABEL])
    was_on = state.labels.get(label_names.NODE)
    if not why and was_on != plan.gateway.node:  # the orphan scan would remove it, as another node's gateway
        why = f"it is node {was_on}'s gateway; the spec puts it on {plan.gateway.node}"
    if why:
        return "replace", why, state.running
    if not state.running:
        return "replace", f"it is {state.status} (exit code {state.exit_code})", False
    return "unchanged", "running, config-hash matches", True


def step_gateway(run: Apply, step: Step) -> None:
    plan = run.plan
    gateway, container = plan.gateway, plan.gateway_container
    assert gateway is not None and container is not None
    name = gateway.node
    executor = run.executors[name]
    action, why, _ = decide(run)
    if action != "unchanged":
        files = tuple(m.source for m in container.mounts if m.anchor == "deploy_dir")
        remote = f"{run.options.remote_dir}/{plan.name}"
        if not remote.startswith("/"):
            remote = run._engine(name, step.name, lambda: f"{executor.host.home()}/{remote}")
        node_dir = run._engine(name, step.name, lambda: executor.prepare_deploy_dir(run.deploy_dir, files, remote))
        if action == "replace":
            run.progress.say(f"{step.name}: removing {container.name}: {why}", name)
            run._engine(name, step.name, lambda: executor.remove(container.name))
        values = {secret.name: run.secrets[secret.name] for secret in container.secrets if secret.name in run.secrets}
        request = RunRequest(container, node_dir, values, False, wanted_labels(run))
        run._engine(name, step.name, lambda: executor.run(request),
                    "the gateway's image or nginx executable is missing? see gateway.image / gateway.nginx")
        _settle(run, step.name)
    api_key = secrets.api_key(plan, run.secrets)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    verify.wait_healthy(Keyed(run.http, headers), name, plan.endpoint, run.progress,
                        timeout=min(run.options.timeout, 120), alive=lambda: _alive(run, step.name), step=step.name,
                        what=f"the gateway at {gateway.url} (/health, with the key)", interval=1.0,
                        logs=lambda: executor.logs(container.name, tail=20))
    passed = verify.verify(run.http, name, plan.endpoint, api_key, run.progress,
                           logs=lambda: executor.logs(container.name, tail=40))
    result = {"create": "created", "replace": "replaced", "unchanged": "unchanged"}[action]
    run._outcome(step.name, name, result, f"{gateway.url} in front of {', '.join(gateway.upstreams)}; "
                 + "; ".join(passed))


def _settle(run: Apply, step: str) -> None:
    """nginx that exited already (a bad key, a port in use) is reported here, with its log; a later exit
    is seen by the health wait's ``_alive`` (no fixed wait: readiness is an event)."""
    plan = run.plan
    assert plan.gateway is not None and plan.gateway_container is not None
    name, container = plan.gateway.node, plan.gateway_container.name
    executor = run.executors[name]
    state = run._engine(name, step, lambda: executor.inspect(container))
    if state is not None and not state.running and state.status != "created":
        raise fail(name, step, f"{container} exited at once (exit code {state.exit_code})",
                   "see its log below; fix the spec (gateway.*) or free the port, and apply again",
                   executor.logs(container))


def _alive(run: Apply, step: str) -> None:
    plan = run.plan
    assert plan.gateway is not None and plan.gateway_container is not None
    name, container = plan.gateway.node, plan.gateway_container.name
    executor = run.executors[name]
    state = run._engine(name, step, lambda: executor.inspect(container))
    if state is None or not state.running:
        raise fail(name, step, f"{container} is {'gone' if state is None else 'exited'}",
                   "read its log below; then `vllmgen apply` again",
                   executor.logs(container, tail=15) if state is not None else None)


# --- status -----------------------------------------------------------------------------------


def report(plan: Plan, executors: Mapping[str, Executor], http: HttpClient, api_key: str | None) -> dict[str, Any]:
    gateway, container = plan.gateway, plan.gateway_container
    if gateway is None or container is None or gateway.node not in executors:
        return {}
    executor = executors[gateway.node]
    entry: dict[str, Any] = {"node": gateway.node, "url": gateway.url, "container": container.name}
    try:
        state = executor.inspect(container.name)
        entry["status"] = state.status if state else "absent"
        if state is not None:
            entry["current"] = identity.same_definition(state.labels, dict(container.labels)[identity.HASH_LABEL])
    except (EngineError, HostError) as exc:
        entry["status"] = f"unreachable: {exc}"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    health = http.request("GET", f"{gateway.url}/health", headers, timeout=3)
    entry["health"] = health.status or health.body
    refused = http.request("GET", f"{gateway.url}/v1/models", timeout=3)
    entry["without_key"] = refused.status or refused.body
    return {"gateway": entry}


def problems(extra: Mapping[str, Any]) -> list[str]:
    entry = extra.get("gateway")
    if entry is None:
        return []
    found = []
    if entry["status"] != "running":
        found.append(f"gateway {entry['container']} on node {entry['node']}: {entry['status']}")
    elif entry.get("current") is False:
        found.append(f"gateway {entry['container']} is not the spec's (its config changed): apply again")
    elif entry["health"] not in (200, 401):  # 401: up and refusing; status was not given the key
        found.append(f"gateway {entry['url']}/health: {entry['health']}")
    if entry["status"] == "running" and entry["without_key"] != 401:
        found.append(f"gateway {entry['url']}/v1/models without the API key: {entry['without_key']}, expected 401")
    return found


def lines(extra: Mapping[str, Any]) -> list[str]:
    entry = extra.get("gateway")
    if entry is None:
        return []
    return [f"gateway {entry['url']} ({entry['container']} on {entry['node']}): {entry['status']}, /health "
            f"{entry['health']}, without the key {entry['without_key']}"]
