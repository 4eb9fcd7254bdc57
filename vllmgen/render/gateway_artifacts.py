"""The gateway's files: gateway/nginx.conf and gateway/entrypoint.sh, with start.sh, stop.sh and
compose.yaml (Docker) or start.sh and stop.sh (process runtime). The container is the plan's
``gateway_container``, so scripts, compose, runner and dry run read one definition."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from vllmgen.plan import gateway as front_door
from vllmgen.plan.plan import Plan



def artifacts(plan: Plan, context: dict[str, Any], template: Callable[..., str],
              compose_file: Callable[..., str]) -> list[tuple[str, str, bool]]:
    """(path, text, executable) of every gateway/ file."""
    from vllmgen.targets.docker.dockercli import run_options
    from vllmgen.render.shell import quote_word

    gateway, container = plan.gateway, plan.gateway_container
    assert gateway is not None and container is not None
    top = re.sub(r"[\x00-\x1f\x7f]", "?", context["header"])  # one comment line in nginx.conf and the scripts
    secrets = [(secret, secret.from_env or secret.name) for secret in container.secrets]
    local = {**context, "gateway": gateway, "container": container, "secrets": secrets}
    files = [
        (front_door.CONF_FILE, front_door.nginx_conf(gateway, plan.name, top), False),
        (front_door.ENTRYPOINT_FILE, front_door.entrypoint(top), True),
    ]
    if plan.runtime == "process":  # its run/start/stop.sh and unit: render_process, as every node's
        return files
    text = (f"{top}\nThe gateway of '{plan.name}' on node {gateway.node}: start the API servers first; "
            f"docker compose -f compose.yaml up -d\nclients use {gateway.url}")
    compose = compose_file(container, front_door.ROLE, text)
    # compose resolves a relative volume from this file's folder; the plan anchors them at the deployment folder
    compose = compose.replace('"../../gateway/', '"../gateway/').replace("../../secrets.env.example", "../secrets.env.example")
    stop = ("#!/usr/bin/env bash\n"
            f"# {top}\n"
            "# Stops and removes the gateway container.\n"
            "set -euo pipefail\n\n"
            f"container={quote_word(container.name)}\n"
            'if docker container inspect "${container}" >/dev/null 2>&1; then\n'
            '    docker rm --force "${container}" >/dev/null\n'
            "    printf 'removed %s\\n' \"${container}\"\n"
            "else\n"
            "    printf '%s is not there\\n' \"${container}\"\n"
            "fi\n")
    return files + [
        ("gateway/start.sh", template("gateway-start.sh.j2", **local, options=run_options(container)), True),
        ("gateway/stop.sh", stop, True),
        ("gateway/compose.yaml", compose, False),
    ]


def open_ports(plan: Plan) -> list[tuple[str, str, str, str]]:
    """The runbook's table: (what, address:port, who may reach it, what it answers), one row per port the
    deployment opens, from the plan (the addresses are vllmgen.plan.exposure's)."""
    from vllmgen.spec import addresses
    from vllmgen.plan import exposure

    def who(host: str) -> str:
        ip = addresses.parse_ip(host)
        if ip is not None and ip.is_loopback:
            return "loopback: this node only"
        if host in exposure.EVERY_INTERFACE:
            return "every interface (the spec says so): firewall it"
        return "private network: the deployment's nodes and vllmgen; keep it off public networks"

    rows = []
    if plan.gateway:
        gateway = plan.gateway
        rows.append(("gateway (nginx)", addresses.host_port(gateway.listen or "0.0.0.0", gateway.port),
                     "public: the clients", "with the API key only: " + ", ".join(f"`{p}`" for p in
                                                                                front_door.CLIENT_PATHS)
                     + (f"; `/metrics` from {gateway.metrics_from}" if gateway.metrics_from else "")
                     + "; 401 without the key, 404 for anything else"))
    for node in plan.nodes:
        argv = plan.serve_argv(node) or ()
        if node.name not in dict(plan.server_urls) or "--host" not in argv:
            continue
        bind = argv[argv.index("--host") + 1]
        port = int(dict(plan.server_urls)[node.name].rsplit(":", 1)[1])
        if node.container.ports:  # a bridge network: Docker's port map is what listens on the host
            published = str(node.container.ports[0][0])
            bind = published.rsplit(":", 1)[0].strip("[]") if ":" in published else "0.0.0.0"
        rows.append((f"vLLM API server ({node.name})", addresses.host_port(bind, port), who(bind),
                     "all of vLLM's paths; with a key it checks `/v1/*` only (`/invocations`, `/tokenize`, "
                     "`/metrics` answer without it)"))
    if plan.router:
        router = plan.router
        rows.append((f"vllm-router ({router.node})", addresses.host_port(router.host, router.port), who(router.host),
                     "forwards everything to the servers; `/add_worker`, `/remove_worker` answer without a key"))
    head = plan.head
    if plan.backend == "ray":
        port = next((w.split("=", 1)[1] for w in head.container.command if w.startswith("--port=")), "")
        rows.append(("Ray GCS (head)", f"{addresses.url_host(head.address)}:{port}", who(head.address),
                     "Ray's cluster protocol (and whatever Ray opens beside it)"))
    if "master-port" in plan.serve_config:
        rows.append(("torch.distributed master (head)", addresses.host_port(head.address,
                                                                            plan.serve_config["master-port"]),
                     who(head.address), "the nodes' process group"))
    if "data-parallel-rpc-port" in plan.serve_config:
        where = plan.serve_config.get("data-parallel-address", head.address)
        rows.append(("data-parallel RPC (rank 0)", addresses.host_port(where, plan.serve_config[
            "data-parallel-rpc-port"]), who(where), "the DP ranks' coordination"))
    if plan.monitoring:
        watch = plan.monitoring
        bind = watch.address if addresses.parse_ip(watch.address) else "0.0.0.0"
        rows.append(("Prometheus", addresses.host_port(bind, watch.prometheus_port), who(bind), "metrics, no login"))
        rows.append(("Grafana", addresses.host_port(bind, watch.grafana_port), who(bind), "dashboards"))
    return rows
