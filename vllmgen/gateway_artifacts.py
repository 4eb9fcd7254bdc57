"""The gateway's files: gateway/nginx.conf and gateway/entrypoint.sh, with start.sh, stop.sh and
compose.yaml (Docker) or start.sh and stop.sh (process runtime). The container is the plan's
``gateway_container``, so scripts, compose, runner and dry run read one definition."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from vllmgen import gateway as front_door
from vllmgen.plan import Plan

PROCESS_STEM = "gateway"  # run/gateway.{pid,log} of start.sh (node names are DNS labels: no clash with a node's)


def artifacts(plan: Plan, context: dict[str, Any], template: Callable[..., str],
              compose_file: Callable[..., str]) -> list[tuple[str, str, bool]]:
    """(path, text, executable) of every gateway/ file."""
    from vllmgen.dockercli import run_options
    from vllmgen.shell import quote_word

    gateway, container = plan.gateway, plan.gateway_container
    assert gateway is not None and container is not None
    top = re.sub(r"[\x00-\x1f\x7f]", "?", context["header"])  # one comment line in nginx.conf and the scripts
    secrets = [(secret, secret.from_env or secret.name) for secret in container.secrets]
    local = {**context, "gateway": gateway, "container": container, "secrets": secrets, "stem": PROCESS_STEM}
    files = [
        (front_door.CONF_FILE, front_door.nginx_conf(gateway, plan.name, top), False),
        (front_door.ENTRYPOINT_FILE, front_door.entrypoint(top), True),
    ]
    if plan.runtime == "process":
        return files + [
            ("gateway/start.sh", template("gateway-process-start.sh.j2", **local), True),
            ("gateway/stop.sh", template("gateway-process-stop.sh.j2", **local), True),
        ]
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
