"""The Docker target's files: the image's Dockerfile, daemon.json, and per node start/stop.sh and a compose file."""

from __future__ import annotations

import json

from vllmgen.plan.plan import Plan
from vllmgen.render.rayprobe import GPUS_SED, RAY_PROBE
from vllmgen.render.router_artifacts import artifacts as router_files
from vllmgen.targets.docker.dockercli import run_options
from vllmgen.targets.kit import File, RenderKit


def artifacts(plan: Plan, kit: RenderKit) -> list[File]:
    files: list[File] = [
        ("Dockerfile", kit.template("Dockerfile.j2", **kit.context), False),
        ("daemon.json", json.dumps(plan.daemon, indent=2, sort_keys=True, allow_nan=False) + "\n", False),
    ]
    if plan.serve_exec:
        files.append(("serve.sh", kit.template("serve.sh.j2", **kit.context, serve=plan.serve_exec,
                                               probe=RAY_PROBE, gpus_sed=GPUS_SED), True))
    for node in plan.nodes:
        node_context = {
            **kit.context,
            "node": node,
            "options": run_options(node.container),
            "uses_deploy_dir": any(mount.anchor == "deploy_dir" for mount in node.container.mounts),
        }
        files += [
            (f"nodes/{node.name}/start.sh", kit.template("start.sh.j2", **node_context), True),
            (f"nodes/{node.name}/stop.sh", kit.template("stop.sh.j2", **node_context), True),
            (f"nodes/{node.name}/compose.yaml", kit.compose(plan, node), False),
        ]
    if plan.router:
        files += [(path, text, path.endswith(".sh")) for path, text in router_files(plan).items()]
    return files
