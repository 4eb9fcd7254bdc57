"""Render the process runtime's per-node files: run.sh, start.sh, stop.sh and a systemd unit.

``render`` calls ``node_files`` with its own template function (so this module does not
import it). The process translation of the node's container is ``process.launch``; the protocol
the scripts and the runner share (records, lock, marker, kept environment) is ``process``'s too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from vllmgen.plan.plan import Container, NodePlan, Plan
from vllmgen.targets.kit import File, RenderKit
from vllmgen.targets.process import process

_RESTART = {"no": "no", "always": "always", "unless-stopped": "always", "on-failure": "on-failure"}


def writable_paths(container: Container, home: str) -> list[str]:
    """What the unit's sandbox leaves writable besides the deployment folder: the folders the container
    mounts read-write (the Hugging Face and engine caches). A folder under the home is opened at its
    first component (~/.cache): the sandbox cannot create a missing folder, and that one exists."""
    out: set[str] = set()
    for mount in container.mounts:
        if mount.read_only or mount.anchor == "deploy_dir":
            continue
        out.add(f"{home}/{mount.source.split('/')[0]}" if mount.anchor == "home" else mount.source)
    return sorted(out)


def record_format(deployment: str, node: str) -> str:
    """The start of a record as run.sh writes it, as the regular expression stop.sh and start.sh read it by:
    a PID > 1 and a start time, then this deployment and node (names are DNS labels: nothing to escape)."""
    return (f'^[{{]"pid": ([1-9][0-9]{{0,9}}), "start": "([0-9]{{1,20}})", '
            f'"deployment": "{deployment}", "node": "{node}", ')


def gateway_node(plan: Plan) -> NodePlan | None:
    """The gateway as the process runtime starts it: a node of its own, ``<node>.gateway`` (node names are
    DNS labels, without dots), so its run.sh, record, lock, marker and unit are every node's."""
    if plan.gateway is None or plan.gateway_container is None:
        return None
    return NodePlan(name=f"{plan.gateway.node}.gateway", address=plan.gateway.listen, role="worker", rank=-1,
                    gpus=0, container=plan.gateway_container, docker_host=None)


def router_node(plan: Plan) -> NodePlan | None:
    """vllm-router as the process runtime starts it (prefill/decode disaggregation): ``<node>.router``, as the
    gateway is ``<node>.gateway``."""
    if plan.router is None or plan.router_container is None:
        return None
    return NodePlan(name=f"{plan.router.node}.router", address=plan.router.address, role="worker", rank=-1,
                    gpus=0, container=plan.router_container, docker_host=None)


def node_files(plan: Plan, node: NodePlan, context: dict[str, Any],
               template: Callable[..., str], what: str = "vllm serve",
               role: str = "gateway") -> list[tuple[str, str, bool]]:
    """(path, text, executable) for one node; ``what`` it runs, in the scripts' comments."""
    container = node.container
    unit = process.unit_name(plan.name, node.name)
    home = plan.process_home or "%h"  # a system unit's %h is root's home, whatever User= says
    secret_sources = [s.from_env or s.name for s in container.secrets if not s.from_file]
    node_context = {**context, "node": node, "what": what,
                    # what this process reads, under the names it gets them (the router's key is OPENAI_API_KEY)
                    "secrets": [(s, s.from_env or s.name) for s in container.secrets],
                    "role": node.role if what == "vllm serve" else role, "launch": process.launch(container), "unit": unit,
                    "restart": _RESTART[container.restart], "memlock": bool(container.ulimits),
                    "env_secrets": [s.from_env for s in container.secrets if s.from_env],
                    "deployments": process.DEPLOYMENTS, "marker": process.marker(plan.name, node.name),
                    "marker_env": process.MARKER_ENV, "keep_environ": process.KEEP_ENVIRON, "run_labels_env": process.RUN_LABELS_ENV,
                    "lock_busy": process.LOCK_BUSY, "kept_env": list(process.KEPT_ENV),
                    "secret_sources": secret_sources,
                    "labels_json": json.dumps(dict(container.labels), sort_keys=True),
                    "record_format": record_format(plan.name, node.name),
                    "user": plan.process_user, "home": home, "writable": writable_paths(container, home)}
    base = f"nodes/{node.name}"
    return [
        (f"{base}/run.sh", template("process-run.sh.j2", **node_context), True),
        (f"{base}/start.sh", template("process-start.sh.j2", **node_context), True),
        (f"{base}/stop.sh", template("process-stop.sh.j2", **node_context), True),
        (f"{base}/{unit}", template("process.service.j2", **node_context), False),
    ]


def artifacts(plan: Plan, kit: RenderKit) -> list[File]:
    """No Dockerfile, daemon.json or compose: per node (and the gateway's) run/start/stop.sh and a unit."""
    files: list[File] = []
    for node in plan.nodes:
        files += node_files(plan, node, kit.context, kit.template)
    gateway = gateway_node(plan)
    if gateway is not None:
        files += node_files(plan, gateway, kit.context, kit.template, what="the gateway (nginx)")
    router = router_node(plan)
    if router is not None:  # only prefill/decode disaggregation allows a router with processes (rules.parallel)
        files += node_files(plan, router, kit.context, kit.template, what="vllm-router", role="router")
    return files
