"""What changed between two versions of a deployment, read from their plans (never from file diffs).

A reviewer wants "worker-1: --max-model-len 16248 -> 32768; NCCL_IB_HCA added", not forty lines of
regenerated scripts. Changes are grouped per scope (the deployment, then each node) and per concern
(image, serve, env, secrets, mounts, devices, ports, layout, daemon). Secrets appear by name and
source only: a plan holds no secret values, so none can leak here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from vllmgen.plan import label_names
from vllmgen.plan.plan import Container, NodePlan, Plan, SecretEnv
from vllmgen.targets import registry

CONCERNS = ("layout", "image", "serve", "env", "secrets", "mounts", "devices", "ports", "daemon", "runtime",
            "monitoring")
DEPLOYMENT = "deployment"
EVERY_NODE = "every node"
# the containers beside the nodes' (planned as theirs are): scopes no node name can take (a space)
ROUTER, GATEWAY = "the router", "the gateway"


@dataclass(frozen=True)
class Change:
    scope: str  # "deployment" or a node's name
    concern: str
    item: str
    before: str | None  # None: added
    after: str | None  # None: removed

    @property
    def kind(self) -> str:
        return "added" if self.before is None else "removed" if self.after is None else "changed"


def compare(old: Plan | None, new: Plan) -> list[Change]:
    """Every difference from ``old`` to ``new``; ``old`` None means the deployment is new."""
    if old is None:
        return [Change(DEPLOYMENT, "layout", "deployment", None, _layout_line(new))] + [
            Change(node.name, "layout", "node", None, _node_line(node)) for node in new.nodes
        ]
    changes = list(_deployment(old, new))
    old_nodes = {node.name: node for node in old.nodes}
    per_node: dict[str, list[Change]] = {}
    added = []
    for node in new.nodes:
        before = old_nodes.pop(node.name, None)
        if before is None:
            added.append(Change(node.name, "layout", "node", None, _node_line(node)))
        else:
            per_node[node.name] = list(_node(before, node, old, new))
    changes.extend(_hoist_shared(per_node))
    changes.extend(added)
    changes.extend(Change(name, "layout", "node", _node_line(node), None) for name, node in old_nodes.items())
    changes.extend(_sidecar(ROUTER, old.router_container, new.router_container,
                            old.router.node if old.router else "", new.router.node if new.router else ""))
    changes.extend(_sidecar(GATEWAY, old.gateway_container, new.gateway_container,
                            old.gateway.node if old.gateway else "", new.gateway.node if new.gateway else ""))
    return changes


def _sidecar(scope: str, old: Container | None, new: Container | None, old_node: str, new_node: str
             ) -> Iterable[Change]:
    """The router's or the gateway's container: added, removed, or what in it changed (its command's flags,
    where it runs, and the container itself as a node's is compared)."""
    if old is None or new is None:
        yield from _pair(scope, "layout", "container", old and f"{old.name} on {old_node}",
                         new and f"{new.name} on {new_node}")
        return
    yield from _pair(scope, "layout", "on", old_node, new_node)
    yield from _pair(scope, "image", "image", old.image or None, new.image or None)
    yield from _keyed(scope, "serve", _flags(old.command), _flags(new.command))
    yield from _container(scope, old, new)
    # what its files hold (the gateway's nginx.conf) shows only here: apply replaces the container on it
    yield from _pair(scope, "runtime", "config hash (apply replaces it)", dict(old.labels).get(label_names.CONFIG_HASH),
                     dict(new.labels).get(label_names.CONFIG_HASH))


def _hoist_shared(per_node: dict[str, list[Change]]) -> list[Change]:
    """A change every node shares is said once, under "every node", not once per node."""
    def key(change: Change) -> tuple[str, str, str | None, str | None]:
        return change.concern, change.item, change.before, change.after

    shared: set[tuple[str, str, str | None, str | None]] = set()
    if len(per_node) > 1:
        sets = [{key(change) for change in changes} for changes in per_node.values()]
        shared = set.intersection(*sets)
    first = next(iter(per_node.values()), [])
    out = [Change(EVERY_NODE, *key(change)) for change in first if key(change) in shared]
    for changes in per_node.values():
        out.extend(change for change in changes if key(change) not in shared)
    return out


# --- the deployment as a whole --------------------------------------------------------------------


def _deployment(old: Plan, new: Plan) -> Iterable[Change]:
    def change(concern: str, item: str, before: Any, after: Any) -> Iterable[Change]:
        yield from _pair(DEPLOYMENT, concern, item, before, after)

    yield from change("layout", "name", old.name, new.name)
    yield from change("layout", "backend", old.backend, new.backend)
    yield from change("layout", "head", old.head.name, new.head.name)
    yield from change("image", "tag", old.image.tag, new.image.tag)
    yield from change("image", "base", old.image.base, new.image.base)
    yield from change("image", "pip index", old.image.pip_index_url, new.image.pip_index_url)
    yield from change("image", "uv index", old.image.uv_index_url, new.image.uv_index_url)
    yield from _keyed(DEPLOYMENT, "image", _requirements(old.image.requirements),
                      _requirements(new.image.requirements))
    yield from _keyed(DEPLOYMENT, "serve", _config_flags(old.serve_config), _config_flags(new.serve_config))
    yield from change("serve", "model", old.model_ref, new.model_ref)
    yield from change("serve", "endpoint", _endpoint(old), _endpoint(new))
    yield from _keyed(DEPLOYMENT, "daemon", _json_values(old.daemon), _json_values(new.daemon))
    yield from _keyed(DEPLOYMENT, "secrets", _secrets(old.secrets), _secrets(new.secrets))
    yield from _keyed(DEPLOYMENT, "monitoring", _monitoring(old), _monitoring(new))
    yield from _keyed(DEPLOYMENT, "gateway", _gateway(old), _gateway(new))


def _gateway(plan: Plan) -> dict[str, str]:
    gateway = plan.gateway
    if gateway is None:
        return {}
    return {
        "on": f"{gateway.node}, public {gateway.url}",
        "forwards to": ", ".join(gateway.upstreams),
        "metrics from": gateway.metrics_from or "nobody",
        **({"image": gateway.image} if registry.target(plan.runtime).docker else {"nginx": gateway.nginx}),
    }


def _monitoring(plan: Plan) -> dict[str, str]:
    watch = plan.monitoring
    if watch is None:
        return {}
    return {
        "on": f"{watch.node} ({watch.address})",
        "targets": ", ".join(target.address for target in watch.targets),
        "scrape interval": watch.scrape_interval,
        "images": f"{watch.prometheus_image}, {watch.grafana_image}",
        "ports": f"Prometheus {watch.prometheus_port}, Grafana {watch.grafana_port}",
    }


def _endpoint(plan: Plan) -> str:
    return f"{plan.endpoint.url} serving {plan.endpoint.served_name}"


def _requirements(requirements: tuple[str, ...]) -> dict[str, str]:
    """Pinned packages keyed by name, so a version bump reads as one change, not a removal and an add."""
    out = {}
    for requirement in requirements:
        name, sep, version = requirement.partition("==")
        out[name if sep else requirement] = version if sep else "as given"
    return out


def _config_flags(config: Mapping[str, Any]) -> dict[str, str]:
    return {f"--{key}": _value(value) for key, value in config.items()}


def _json_values(mapping: Mapping[str, Any]) -> dict[str, str]:
    return {key: _value(value) for key, value in mapping.items()}


def _secrets(secrets: Iterable[SecretEnv]) -> dict[str, str]:
    return {secret.name: _secret_source(secret) for secret in secrets}


def _secret_source(secret: SecretEnv) -> str:
    return f"from ${secret.from_env}" if secret.from_env else f"from file {secret.from_file}"


# --- one node --------------------------------------------------------------------------------


def _node(old: NodePlan, new: NodePlan, old_plan: Plan, new_plan: Plan) -> Iterable[Change]:
    name = new.name
    yield from _pair(name, "layout", "address", old.address, new.address)
    yield from _pair(name, "layout", "role", old.role, new.role)
    yield from _pair(name, "layout", "rank", str(old.rank), str(new.rank))
    yield from _pair(name, "layout", "gpus", str(old.gpus), str(new.gpus))
    yield from _pair(name, "layout", "docker_host", old.docker_host, new.docker_host)
    yield from _keyed(name, "serve", _flags(old_plan.serve_argv(old)), _flags(new_plan.serve_argv(new)))
    if old.container.entrypoint != "vllm" or new.container.entrypoint != "vllm":
        yield from _pair(name, "serve", "command", _command(old.container), _command(new.container))
    yield from _container(name, old.container, new.container)


def _container(name: str, old: Container, new: Container) -> Iterable[Change]:
    yield from _pair(name, "runtime", "container", old.name, new.name)
    yield from _keyed(name, "env", dict(old.env), dict(new.env))
    yield from _keyed(name, "mounts", _mounts(old), _mounts(new))
    yield from _pair(name, "devices", "gpus", old.gpus, new.gpus)
    yield from _keyed(name, "devices", dict.fromkeys(old.devices, "device"), dict.fromkeys(new.devices, "device"))
    yield from _keyed(name, "devices", {f"cap {c}": "granted" for c in old.cap_add},
                      {f"cap {c}": "granted" for c in new.cap_add})
    yield from _keyed(name, "devices", {f"ulimit {u}": f"{s}:{h}" for u, s, h in old.ulimits},
                      {f"ulimit {u}": f"{s}:{h}" for u, s, h in new.ulimits})
    yield from _pair(name, "ports", "network", old.network_mode, new.network_mode)
    yield from _keyed(name, "ports", {f"{h}->{c}": "published" for h, c in old.ports},
                      {f"{h}->{c}": "published" for h, c in new.ports})
    yield from _pair(name, "runtime", "ipc", _ipc(old), _ipc(new))
    yield from _pair(name, "runtime", "restart", old.restart, new.restart)
    yield from _pair(name, "runtime", "healthcheck", _health(old), _health(new))


def _health(container: Container) -> str | None:
    check = container.healthcheck
    if check is None:
        return None
    probe = check.command.rsplit(" ", 1)[-1]  # the URL the probe opens
    return f"{probe} every {check.interval_s}s, start period {check.start_period_s}s"


def _ipc(container: Container) -> str:
    return "host" if container.ipc_host else f"private (shm {container.shm_size or 'default'})"


def _mounts(container: Container) -> dict[str, str]:
    def source(mount: Any) -> str:
        prefix = {"home": "~/", "deploy_dir": "<deployment folder>/"}.get(mount.anchor, "")
        return prefix + mount.source + (" (read-only)" if mount.read_only else "")

    return {mount.target: source(mount) for mount in container.mounts}


def _command(container: Container) -> str:
    return " ".join([container.entrypoint, *container.command])


def _flags(argv: tuple[str, ...] | None) -> dict[str, str]:
    """``vllm serve`` words as flag -> value; positional words (the model) under their position."""
    if argv is None:
        return {}
    out: dict[str, str] = {}
    key: str | None = None
    positional = 0
    for word in argv:
        if word.startswith("-") and len(word) > 1:
            flag, eq, value = word.partition("=")
            key = flag
            out[key] = value if eq else "(set)"
        elif key is not None:
            out[key] = word if out[key] == "(set)" else f"{out[key]} {word}"
        else:
            out[f"argument {positional}"] = word
            positional += 1
    return out


# --- pairs and mappings ------------------------------------------------------------------------


def _pair(scope: str, concern: str, item: str, before: Any, after: Any) -> Iterable[Change]:
    if before != after:
        yield Change(scope, concern, item, None if before is None else str(before),
                     None if after is None else str(after))


def _keyed(scope: str, concern: str, before: Mapping[str, str], after: Mapping[str, str]) -> Iterable[Change]:
    for key in sorted(set(before) | set(after)):
        yield from _pair(scope, concern, key, before.get(key), after.get(key))


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _layout_line(plan: Plan) -> str:
    gpus = sum(node.gpus for node in plan.nodes)
    return f"{plan.name}: {len(plan.nodes)} node(s), {gpus} GPU(s), backend {plan.backend}, image {plan.image.tag}"


def _node_line(node: NodePlan) -> str:
    return f"{node.role} at {node.address}, {node.gpus} GPU(s)"


def as_json(changes: list[Change]) -> str:
    return json.dumps({"changes": [asdict(c) | {"kind": c.kind} for c in changes], "count": len(changes)},
                      indent=2, sort_keys=True) + "\n"


def _grouped(changes: list[Change]) -> dict[str, list[Change]]:
    groups: dict[str, list[Change]] = {}
    for change in changes:
        groups.setdefault(change.scope, []).append(change)
    return groups


def _scope_title(scope: str) -> str:
    return scope if scope in (DEPLOYMENT, EVERY_NODE, ROUTER, GATEWAY) else f"node {scope}"


def as_text(changes: list[Change]) -> str:
    if not changes:
        return "no changes\n"
    lines = []
    for scope, group in _grouped(changes).items():
        lines.append(f"{_scope_title(scope)}:")
        for change in group:
            if change.kind == "changed":
                what = f"{change.before} -> {change.after}"
            else:
                what = f"{change.kind} ({change.after if change.before is None else change.before})"
            lines.append(f"  {change.concern:<8} {change.item}: {what}")
    return "\n".join(lines) + "\n"


def as_markdown(changes: list[Change], title: str) -> str:
    lines = [f"### vllmgen diff: {_cell(title)}", ""]
    if not changes:
        return "\n".join([*lines, "No changes.", ""])
    lines.append(f"{len(changes)} change(s).")
    for scope, group in _grouped(changes).items():
        lines += ["", f"**{_scope_title(scope)}**", "", "| concern | item | before | after |", "|---|---|---|---|"]
        lines += [f"| {c.concern} | {_code(c.item)} | {_code(c.before)} | {_code(c.after)} |" for c in group]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(text: str | None) -> str:
    if text is None:
        return "—"
    # a code span fenced with more backticks than it holds in a row, so no value can end it early;
    # inside a table a pipe still needs its backslash (GFM), a backslash itself is literal there
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text.replace('|', chr(92) + '|').replace(chr(10), ' ')} {fence}"
