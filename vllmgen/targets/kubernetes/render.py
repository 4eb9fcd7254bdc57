"""build/<name>/ for the Kubernetes target: kustomization.yaml, one file per object, a Secret template,
the router's Dockerfile (when there is a router) and a short runbook. Byte-stable: every mapping's keys
sorted, written by the project's YAML writer (every string double-quoted)."""

from __future__ import annotations

import shlex
from typing import Any

from vllmgen.plan import label_names
from vllmgen.plan.plan import Plan
from vllmgen.render import yamlout
from vllmgen.render.router_artifacts import dockerfile as router_dockerfile
from vllmgen.targets.kit import File, RenderKit
from vllmgen.targets.kubernetes.manifests import LWS_API, objects, secret_template
from vllmgen.targets.kubernetes.plan import KubernetesPlan

KUSTOMIZATION = "kustomization.yaml"
SECRET_TEMPLATE = "secret.template.yaml"


def sorted_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_keys(item) for item in value]
    return value


def dump(obj: dict[str, Any], header: str) -> str:
    return yamlout.dump(sorted_keys(obj), header)


def artifacts(plan: Plan, header: str) -> list[tuple[str, str]]:
    k8s = plan.kubernetes
    assert k8s is not None
    made = objects(k8s, header)
    files = [(path, dump(obj, f"{header}\n{obj['kind']} {obj['metadata']['name']}")) for path, obj in made]
    kustomization: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                                     "resources": sorted(path for path, _ in made)}
    if k8s.namespace:
        kustomization["namespace"] = k8s.namespace
    files.append((KUSTOMIZATION, dump(kustomization,
                                      f"{header}\nkubectl apply -k . (the Secret first: see README.md)")))
    secret_note = ("Names only: fill in the values outside git, or create it with kubectl (README.md); "
                   "not in kustomization.yaml")
    files.append((SECRET_TEMPLATE, dump(secret_template(k8s, header), f"{header}\n{secret_note}")))
    if plan.router:
        files.append(("router/Dockerfile", router_dockerfile(plan.router, header)))
    files.append(("README.md", readme(plan, k8s, header)))
    return files


def target_artifacts(plan: Plan, kit: RenderKit) -> list[File]:
    """The registry's entry: the whole folder (manifests, kustomization, README), and the Dockerfile when the
    pods pull an image built from the spec's base."""
    header = kit.context["header"]
    files = [(path, text, False) for path, text in artifacts(plan, header)]
    k8s = plan.kubernetes
    if k8s is not None and k8s.image == plan.image.tag:
        files.append(("Dockerfile", kit.template("Dockerfile.j2", plan=plan, header=header), False))
    return files


def readme(plan: Plan, k8s: KubernetesPlan, header: str) -> str:
    where = f" -n {k8s.namespace}" if k8s.namespace else ""
    layout = (f"one LeaderWorkerSet ({LWS_API}): {k8s.replicas} group(s) of {k8s.group_size} pods, "
              f"{k8s.leader.gpus} GPU(s) each; the leader runs the API server, the workers are headless"
              if k8s.layout == "leaderworkerset" else
              "prefill/decode disaggregation: a Deployment and a Service per instance (" +
              ", ".join(f"`{k8s.instance_name(pod)}` {pod.gpus} GPU(s)" for pod in k8s.pods) +
              "), vllm-router in P/D mode in front"
              if k8s.layout == "disaggregated" else
              f"one Deployment of {k8s.replicas} replica(s), {k8s.leader.gpus} GPU(s) each")
    secret_args = " ".join(f"--from-file={key}={shlex.quote(where)}" if how == "file"
                           else f"--from-file={key}=<(printf '%s' \"${{{where}}}\")"
                           for key, how, where in k8s.secret_sources)
    front, front_port = (k8s.gateway_name, k8s.gateway.port) if k8s.gateway else (
        (k8s.router_name, k8s.router.port) if k8s.router else (k8s.service_name, k8s.port))
    lines = [
        f"<!-- {header} -->",
        f"# {plan.name} on Kubernetes",
        "",
        f"Layout: {layout}. Clients use the Service `{front}` (port {front_port}).",
        "",
        "vllmgen reaches no cluster: these are the commands to run (or let Argo CD / Flux apply this folder).",
        "",
        "```sh",
    ]
    if k8s.layout == "leaderworkerset":
        lines.append("# needs the LeaderWorkerSet controller: https://lws.sigs.k8s.io/docs/installation/")
    if k8s.secret_keys:
        lines.append("# bash: each value goes through a pipe, never on a command line (secret.template.yaml: its keys)")
        lines.append(f"kubectl{where} create secret generic {k8s.secret_name} {secret_args}")
    lines += [
        f"kubectl apply -k build/{plan.name}",
        f"kubectl{where} get {'leaderworkerset' if k8s.layout == 'leaderworkerset' else 'deployment'},pods,services "
        f"-l {label_names.DEPLOYMENT}={plan.name}",
        f"kubectl delete -k build/{plan.name}",
        "```",
        "",
        f"- Start-up: the startupProbe allows {k8s.startup_failure_threshold} x {k8s.probe_period_s} s = "
        f"{k8s.startup_budget_s} s, covering vLLM's ready timeout ({k8s.ready_timeout_s} s, "
        "VLLM_ENGINE_READY_TIMEOUT_S).",
        f"- Caches: the engine and Hugging Face caches live on the claim `{k8s.cache_claim}` (ReadWriteMany), "
        "so a restarted pod skips compilation.",
        "- Monitoring: API server pods carry `prometheus.io/scrape`, `prometheus.io/port` and `prometheus.io/path` "
        "annotations for Prometheus's Kubernetes pod discovery.",
    ]
    if plan.router and k8s.router and not k8s.router.discovers:
        lines.append(f"- Router: build and push `{plan.router.image}` from router/Dockerfile; it reaches each "
                     "instance by its Service's name and sends the Secret's API key to them itself.")
    elif plan.router:
        lines.append(f"- Router: build and push `{plan.router.image}` from router/Dockerfile; it finds the API "
                     "server pods by label (a Role lets it list them).")
    if k8s.image == plan.image.tag:
        lines.append(f"- Image: `{k8s.image}` adds packages to {plan.image.base}: build it from the Dockerfile "
                     "beside this file and push it where the cluster pulls from (or set runtime.image).")
    return "\n".join(lines) + "\n"
