"""``vllmgen status``: each node's containers, the cluster view and the endpoint's health.

Read-only and quick: short timeouts, and a node that does not answer is reported, not fatal.
``problems`` lists, in words, everything that is not as the spec says; status exits 1 if any: among
them an engine that died behind a living API server (a fatal line in its log since it started, or
/health failing while the process runs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vllmgen.plan.plan import Plan
from vllmgen.runner import faults, gateway_step, identity, keyless, phases, servers, startup
from vllmgen.runner.executor import EngineError, Executor
from vllmgen.runner.host import HostError
from vllmgen.runner.http import HttpClient
from vllmgen.runner.orphans import NODE_LABEL, describe, scan
from vllmgen.runner.verify import base_url
from vllmgen.targets.docker.engine import docker_engine, has_images


def collect(plan: Plan, executors: Mapping[str, Executor], http: HttpClient, api_key: str | None = None) -> dict[str, Any]:
    nodes = []
    head_running = False
    chosen = [node for node in plan.nodes if node.name in executors]
    # each node's engine asked at the same time (over ssh, each host's round trips overlap the others')
    side_by_side = len(chosen) > 1 and all(executors[node.name].concurrent for node in chosen)
    with ThreadPoolExecutor(max_workers=len(chosen) if side_by_side else 1) as pool:
        looked = list(pool.map(lambda node: _look(plan, node, executors[node.name]), chosen))
    for node, (entry, _) in zip(chosen, looked, strict=True):
        nodes.append(entry)
        if node.role == "head" and any(c["status"] == "running" for c in entry["containers"]):
            head_running = True
    stray = [{"node": state.labels.get(NODE_LABEL), "container": state.name, "status": state.status,
              "engine of": name, "why": describe(state)}
             for name, state in scan(plan, {node.name: found for node, (_, found) in zip(chosen, looked, strict=True)},
                                     executors)]

    head = executors.get(plan.head.name)
    cluster: dict[str, Any] | None = None
    if plan.backend == "ray" and head is not None:
        want = sum(node.gpus for node in plan.nodes)
        cluster = {"expected_nodes": len(plan.nodes), "expected_gpus": want}
        if head_running:
            try:
                view = docker_engine(head).cluster_view(plan.head.container.name)
            except EngineError as exc:
                view, cluster["error"] = None, str(exc)
            if view is not None:
                names = {node.address: node.name for node in plan.nodes}
                cluster.update(nodes=[names.get(address, address) for address in view.nodes], gpus=view.gpus)
        else:
            cluster["error"] = "the head container is not running"

    # the head's own server; the gateway in front of it has its own entry (gateway_step.report)
    endpoint: dict[str, Any] = {"url": base_url(plan.direct_endpoint), "served_name": plan.endpoint.served_name}
    if head is not None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        health = http.request("GET", f"{endpoint['url']}/health", headers, timeout=3)
        endpoint["health"] = health.status or health.body
        if health.status == 401 and plan.endpoint.api_key and not api_key:
            endpoint["health"] = "401 (behind the API key; set its variable to check health)"
        models = http.request("GET", f"{endpoint['url']}/v1/models", headers, timeout=3)
        endpoint["models_status"] = models.status or models.body
        if models.status == 200:
            try:
                endpoint["models"] = [m.get("id") for m in models.json().get("data", [])]
            except (ValueError, AttributeError):
                pass
        elif models.status == 401 and not api_key:
            endpoint["models_status"] = "401 (set the API key's variable to list models)"
        if plan.endpoint.api_key is not None:  # what a client without the key gets (no key needed to ask)
            # what clients reach: the front door (a gateway always fronts a keyed deployment); the servers
            # and router behind it listen on loopback or the private network, where vLLM's holes are known
            urls = [base_url(plan.endpoint)] + ([plan.router.url] if plan.router and not plan.gateway else [])
            endpoint["without_key"] = [keyless.without_key(http, url, plan.endpoint.served_name).as_dict()
                                       for url in dict.fromkeys(urls)]
        if head_running:  # the serving node's start, phase by phase, from its log, since it started
            container = plan.head.container.name
            try:
                started = head.started_at(container)
            except (EngineError, HostError):
                started = None
            endpoint["startup"] = startup.report(plan.head.name, container, startup.read_log(head, container),
                                                 started=started)
            endpoint["head_running"] = True
    report: dict[str, Any] = {"deployment": plan.name, "backend": plan.backend, "nodes": nodes, "cluster": cluster,
              "endpoint": endpoint, "orphans": [{k: v for k, v in o.items() if k != "why"} for o in stray]}
    report.update(servers.report(plan, executors, http, api_key))
    report.update(gateway_step.report(plan, executors, http, api_key))
    report["problems"] = problems(report) + servers.problems(report) + gateway_step.problems(report) + [
        f"orphan: {o['container']} ({o['why']}) on {o['engine of']}'s engine: `vllmgen down SPEC` removes it"
        for o in stray]
    running = {entry["node"] for entry in nodes for c in entry["containers"] if c["status"] == "running"}
    logs = startup.node_logs(plan, executors) if running else {}
    report["engine_faults"] = engine_faults(plan, {node: log for node, log in logs.items() if node in running})
    report["problems"][:0] = [fault_problem(fault) for fault in report["engine_faults"]]
    if head_running:  # NCCL's transports on a multi-GPU deployment, from every node's log
        report["engine"] = startup.read(plan, executors, logs)
    report["healthy"] = not report["problems"]
    return report


def engine_faults(plan: Plan, logs: Mapping[str, str]) -> list[dict[str, Any]]:
    """Per running node, the fatal line its engine logged since its latest start (``vllmgen.runner.faults``):
    an engine that died behind an API server still running."""
    found = []
    for node in plan.nodes:
        fault = faults.scan(phases.latest_run(logs[node.name])) if node.name in logs else None
        if fault is not None:
            found.append({"node": node.name, "container": node.container.name, "kind": fault.kind,
                          "line": fault.line, "cause": fault.cause, "fix": fault.fix})
    return found


def fault_problem(fault: Mapping[str, Any]) -> str:
    cause = f"; root cause: {fault['cause']}" if fault["cause"] and fault["cause"] not in fault["line"] else ""
    kind = f" ({fault['kind']})" if fault["kind"] != "engine" else ""
    return (f"node {fault['node']}: the engine failed{kind} while {fault['container']} runs: "
            f"{fault['line']}{cause}; what to do: {fault['fix']}")


def _look(plan: Plan, node: Any, executor: Executor) -> tuple[dict[str, Any], list[Any]]:
    """One node's entry in the report, and every container of the deployment its engine has."""
    entry: dict[str, Any] = {"node": node.name, "role": node.role, "address": node.address,
                             "endpoint": executor.endpoint or "local", "containers": []}
    try:
        found = executor.list_containers(plan.name)
    except (EngineError, HostError) as exc:
        entry["error"] = str(exc)
        return entry, []
    mine = [state for state in found if state.labels.get(NODE_LABEL) == node.name
            and not servers.is_router(state.labels) and not gateway_step.is_gateway(state.labels)]
    if not mine:
        entry["problem"] = f"no container {node.container.name}"
    for state in mine:
        current = _current(executor, plan, node, state)
        entry["containers"].append({"name": state.name, "status": state.status, "exit_code": state.exit_code,
                                    "current": current})
        if not state.running:
            entry["problem"] = f"{state.name} is {state.status}" + (
                f" (exit code {state.exit_code})" if state.status == "exited" else "")
        elif not current:
            entry["problem"] = f"{state.name} is not the spec's (its definition or image changed): apply again"
    return entry, found


def _current(executor: Executor, plan: Plan, node: Any, state: Any) -> bool:
    """Started from this spec's definition and, when apply started it, on the image the node has now."""
    plan_hash = dict(node.container.labels).get(identity.HASH_LABEL, "")
    if not identity.same_definition(state.labels, plan_hash):
        return False
    if identity.IMAGE_LABEL not in state.labels or not has_images(executor):  # a process: no image
        return True
    try:
        return state.labels[identity.IMAGE_LABEL] == (docker_engine(executor).image_id(plan.image.tag) or "")
    except (EngineError, HostError):
        return False


def problems(report: dict[str, Any]) -> list[str]:
    """Everything not as the spec says, one sentence each, naming the node."""
    found = []
    for node in report["nodes"]:
        if "error" in node:
            found.append(f"node {node['node']} ({node['endpoint']}): unreachable: {node['error']}")
        elif "problem" in node:
            found.append(f"node {node['node']}: {node['problem']}")
    cluster = report["cluster"]
    if cluster is not None:
        if "error" in cluster:
            found.append(f"ray cluster: {cluster['error']}")
        elif len(cluster.get("nodes", ())) < cluster["expected_nodes"] or cluster.get("gpus", 0) < cluster["expected_gpus"]:
            found.append(f"ray cluster: {len(cluster.get('nodes', ()))} of {cluster['expected_nodes']} nodes, "
                         f"{cluster.get('gpus', 0):g} of {cluster['expected_gpus']} GPUs")
    endpoint = report["endpoint"]
    if "health" in endpoint and endpoint["health"] != 200 and not str(endpoint["health"]).startswith("401 (behind"):
        alive = ""
        if endpoint.get("head_running"):
            rows = {row["name"]: row for row in endpoint.get("startup", {}).get("phases", [])}
            listened = rows.get("api server", {}).get("seconds") is not None
            alive = (", while the head's API server process runs: " + (
                "its engine stopped serving" if listened else "still starting, or its engine died before serving")
                + " (see its log: `docker logs` or run/<node>.log)")
        found.append(f"endpoint {endpoint['url']}/health: {endpoint['health']}{alive}")
    for exposed in endpoint.get("without_key", []):
        if exposed["open"]:
            found.append(f"{exposed['url']} answers without the API key: {', '.join(exposed['open'])} "
                         "(clients must come through the front door, which checks the key on every path)")
    return found


def healthy(report: dict[str, Any]) -> bool:
    return bool(report.get("healthy"))


def table(report: dict[str, Any]) -> str:
    rows = [("NODE", "ROLE", "CONTAINER", "STATE", "SPEC")]
    for node in report["nodes"]:
        if "error" in node:
            rows.append((node["node"], node["role"], "-", "unreachable (below)", "-"))
            continue
        if not node["containers"]:
            rows.append((node["node"], node["role"], "-", "absent", "-"))
        for c in node["containers"]:
            state = c["status"] + (f" ({c['exit_code']})" if c["status"] == "exited" else "")
            rows.append((node["node"], node["role"], c["name"], state, "current" if c["current"] else "stale"))
    rows += [(o["engine of"], "-", o["container"], o["status"], f"orphan ({o['node'] or 'no node'})")
             for o in report.get("orphans", [])]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    cluster = report["cluster"]
    if cluster is not None:
        if "nodes" in cluster:
            lines.append(f"ray cluster: {len(cluster['nodes'])} of {cluster['expected_nodes']} nodes "
                         f"({', '.join(cluster['nodes'])}), {cluster['gpus']:g} of {cluster['expected_gpus']} GPUs")
        else:
            lines.append(f"ray cluster: unknown ({cluster.get('error', 'no answer')})")
    endpoint = report["endpoint"]
    models = ", ".join(endpoint.get("models", [])) or str(endpoint.get("models_status", "-"))
    lines.append(f"endpoint {endpoint['url']}: /health {endpoint.get('health', '-')}; models: {models}")
    for exposed in endpoint.get("without_key", []):
        refused = sum(1 for status in exposed["paths"].values() if status in (401, 403, 404, "no answer"))
        lines.append(f"without the API key at {exposed['url']}: {refused} of {len(exposed['paths'])} paths refused"
                     + (f"; readable: {', '.join(exposed['readable'])}" if exposed["readable"] else ""))
    if endpoint.get("startup"):
        lines.append(startup.table(endpoint["startup"]))
    lines += servers.lines(report)
    lines += gateway_step.lines(report)
    engine = report.get("engine") or {}
    if "nccl" in engine:
        lines.append(engine["nccl"]["summary"])
    lines += [f"problem: {problem}" for problem in report.get("problems", [])]
    lines.append("healthy" if report.get("healthy") else f"unhealthy: {len(report.get('problems', []))} problem(s)")
    return "\n".join(lines)


def as_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True)
