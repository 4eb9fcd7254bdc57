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
from vllmgen.render.templates import header, template
from vllmgen.targets import registry
from vllmgen.targets.kit import RenderKit

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
    serve_config = _serve_config(plan)
    kit = RenderKit(context=context, template=template, serve_config=serve_config, compose=_compose,
                    compose_file=compose_file)
    target = registry.target(plan.runtime)
    own = [Artifact(path, text, executable) for path, text, executable in target.artifacts(plan, kit)]
    if not target.host_files:  # the target's files are the whole folder (Kubernetes: manifests only)
        own.sort(key=lambda artifact: artifact.path)
        return [*own, Artifact(MANIFEST, _manifest(plan, own, made_from))]
    shared = [
        Artifact(SERVE_CONFIG_FILE, serve_config),
        Artifact("secrets.env.example", template("secrets.env.example.j2", **context)),
        Artifact("README.md", template("README.md.j2", **context)),
    ]
    return _finish(plan, shared + own, made_from)


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
