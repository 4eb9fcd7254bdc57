"""Stage 4, render: a ``Plan`` -> the bytes of every artifact, in memory, deterministically.

Shell and Dockerfile text comes from templates (vllmgen.render.templates, which quote every value);
structured files (JSON, YAML) are serialised, never templated.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from vllmgen import __version__
from vllmgen.plan.plan import SERVE_CONFIG_FILE, NodePlan, Plan, SecretEnv
from vllmgen.render import fingerprint, monitoring, yamlout
from vllmgen.render.compose_yaml import compose_file
from vllmgen.render.gateway_artifacts import artifacts as gateway_files
from vllmgen.render.gateway_artifacts import open_ports
from vllmgen.render.rayprobe import GPUS_SED, RAY_PROBE
from vllmgen.render.router_artifacts import artifacts as router_files
from vllmgen.render.templates import header, template
from vllmgen.targets.docker.dockercli import run_options
from vllmgen.targets.process.render import gateway_node, node_files

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Artifact:
    path: str  # relative to the deployment directory, '/'-separated
    content: str
    executable: bool = False

    @property
    def data(self) -> bytes:
        return self.content.encode("utf-8")


def render(plan: Plan, made_from: dict[str, Any] | None = None) -> list[Artifact]:
    """Every artifact of one deployment, sorted by path, the manifest last."""
    context = {"plan": plan, "header": header(plan), "secrets": _secret_sources(plan), "ports": open_ports(plan)}
    if plan.runtime == "process":
        return _finish(plan, _process_artifacts(plan, context), made_from)
    artifacts = [
        Artifact("Dockerfile", template("Dockerfile.j2", **context)),
        Artifact("daemon.json", json.dumps(plan.daemon, indent=2, sort_keys=True, allow_nan=False) + "\n"),
        Artifact(SERVE_CONFIG_FILE, _serve_config(plan)),
        Artifact("secrets.env.example", template("secrets.env.example.j2", **context)),
        Artifact("README.md", template("README.md.j2", **context)),
    ]
    if plan.serve_exec:
        artifacts.append(Artifact("serve.sh", template("serve.sh.j2", **context, serve=plan.serve_exec,
                                                        probe=RAY_PROBE, gpus_sed=GPUS_SED), True))
    for node in plan.nodes:
        node_context = {
            **context,
            "node": node,
            "options": run_options(node.container),
            "uses_deploy_dir": any(mount.anchor == "deploy_dir" for mount in node.container.mounts),
        }
        artifacts += [
            Artifact(f"nodes/{node.name}/start.sh", template("start.sh.j2", **node_context), True),
            Artifact(f"nodes/{node.name}/stop.sh", template("stop.sh.j2", **node_context), True),
            Artifact(f"nodes/{node.name}/compose.yaml", _compose(plan, node)),
        ]
    if plan.router:
        artifacts += [Artifact(path, text, path.endswith(".sh")) for path, text in router_files(plan).items()]
    return _finish(plan, artifacts, made_from)


def _process_artifacts(plan: Plan, context: dict[str, Any]) -> list[Artifact]:
    """runtime.kind: process: no Dockerfile, daemon.json or compose; per node run/start/stop and a unit."""
    artifacts = [
        Artifact(SERVE_CONFIG_FILE, _serve_config(plan)),
        Artifact("secrets.env.example", template("secrets.env.example.j2", **context)),
        Artifact("README.md", template("README.md.j2", **context)),
    ]
    for node in plan.nodes:
        artifacts += [Artifact(path, text, executable) for path, text, executable in
                      node_files(plan, node, context, template)]
    gateway = gateway_node(plan)
    if gateway is not None:
        artifacts += [Artifact(path, text, executable) for path, text, executable in
                      node_files(plan, gateway, context, template, what="the gateway (nginx)")]
    return artifacts


def _finish(plan: Plan, artifacts: list[Artifact], made_from: dict[str, Any] | None) -> list[Artifact]:
    if plan.gateway:
        context = {"plan": plan, "header": header(plan)}
        artifacts += [Artifact(path, text, executable)
                      for path, text, executable in gateway_files(plan, context)]
    if plan.monitoring:
        artifacts += [Artifact(path, text) for path, text in monitoring.artifacts(plan.monitoring, header(plan)).items()]
    artifacts.sort(key=lambda artifact: artifact.path)
    artifacts.append(Artifact(MANIFEST, _manifest(plan, artifacts, made_from)))
    return artifacts


def _secret_sources(plan: Plan) -> list[tuple[SecretEnv, str]]:
    return [(secret, secret.from_env or secret.name) for secret in plan.secrets]


def _serve_config(plan: Plan) -> str:
    text = (
        f"{header(plan)}\n"
        f"Options shared by every node of '{plan.name}' (vllm serve --config).\n"
        "Per-node flags (node rank, --headless) are on each node's command line."
    )
    return yamlout.dump(plan.serve_config, text)


def _compose(plan: Plan, node: NodePlan) -> str:
    text = f"{header(plan)}\nNode {node.name} ({node.role}) of '{plan.name}': docker compose -f compose.yaml up -d"
    return compose_file(node.container, node.name, text, node.gpu_ids)


def _manifest(plan: Plan, artifacts: list[Artifact], made_from: dict[str, Any] | None) -> str:
    files = {artifact.path: hashlib.sha256(artifact.data).hexdigest() for artifact in artifacts}
    manifest = {
        "generated_by": f"vllmgen {__version__}",
        "spec": plan.spec_file,
        "deployment": plan.name,
        "files": files,
    }
    if made_from is not None:
        manifest["inputs"] = {**made_from, "outputs_sha256": fingerprint.outputs_sha256(files)}
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"
