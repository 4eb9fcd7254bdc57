"""The Kubernetes target's rules: what its manifests need that no single field can say.

The other runtimes' ``runtime:`` fields are refused by the model (unknown keys); the rest of the spec
that only the Docker or process runtime reads (daemon.json, docker_host, host folders, the host
monitoring stack) is refused here, where it is set, rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterator

from vllmgen.plan import parallel
from vllmgen.plan.engine import ready_timeout
from vllmgen.spec.model import Spec
from vllmgen.spec.rules.core import Finding
from vllmgen.targets.kubernetes.spec import GPU_RESOURCE, KubernetesRuntime

# K8s injects <SERVICE>_PORT=tcp://... into pods: a Service 'vllm' sets VLLM_PORT, and vLLM refuses to start
FORBIDDEN_SERVICE_NAMES = ("vllm",)
# (path, what reads it): set in a Kubernetes spec, each would be ignored
HOST_ONLY = (
    (("docker",), "the Docker daemon's daemon.json"),
    (("model", "hf_cache"), "a host folder; the HF cache lives on runtime.cache_claim"),
    (("caches", "host_path"), "a host folder; the engine caches live on runtime.cache_claim"),
    (("monitoring", "node"), "the host Prometheus/Grafana stack; pods carry Prometheus annotations"),
    (("monitoring", "bind"), "the host Prometheus/Grafana stack; pods carry Prometheus annotations"),
    (("gateway", "node"), "a host; the gateway is a Deployment"),
    (("gateway", "address"), "a host address; the gateway's Service is runtime.gateway_service_type"),
    (("router", "node"), "a host; the router is a Deployment"),
    (("router", "volumes"), "host bind mounts"),
)
NODE_HOST_ONLY = {
    "docker_host": "the Docker endpoint of a host",
    "gpu_ids": "a host's GPU indexes; the device plugin picks the GPUs",
    "python_env": "the process runtime",
    "vllm": "the process runtime",
    "hf_cache": "a host folder; the HF cache lives on runtime.cache_claim",
    "model_host_path": "a per-host folder; every pod mounts the same model volume",
}


def kubernetes_rules(spec: Spec) -> Iterator[Finding]:
    settings = spec.runtime
    if not isinstance(settings, KubernetesRuntime):
        return
    yield from (Finding(path, message) for path, message in _findings(spec, settings))


def _findings(spec: Spec, settings: KubernetesRuntime) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if spec.disaggregation is not None:
        yield from _disaggregation(spec, settings)
        yield from _common(spec, settings)
        return
    group = len(spec.nodes) > 1 and not parallel.replicas(spec)
    if spec.cluster.backend == "ray":
        yield ("cluster", "backend"), ("the Kubernetes target runs multi-node vLLM with the mp backend in a "
                                       "LeaderWorkerSet: write backend: mp")
    if group and parallel.across_nodes(spec) and spec.serve.data_parallel.lb == "external":
        yield ("serve", "data_parallel", "lb"), ("a LeaderWorkerSet group has one API server set: use lb: hybrid "
                                                 "or internal (or backend: replicas for independent servers)")
    # size vs nodes: a group is the nodes one instance spans
    size = len(spec.nodes) if group else 1
    if settings.group_size is not None and settings.group_size != size:
        what = (f"the {len(spec.nodes)} nodes one instance spans" if group
                else "1: each replica is a pod of its own (a Deployment)")
        yield ("runtime", "group_size"), f"group_size {settings.group_size} must equal {what}"
    if not group and settings.replicas != 1:
        yield ("runtime", "replicas"), ("replicas counts LeaderWorkerSet groups; a Deployment's replicas are the "
                                        "nodes listed (one pod each)")
    # GPU limits vs gpus: the pod's GPUs are the node's
    for section in ("limits", "requests"):
        wanted = getattr(settings.resources, section).get(GPU_RESOURCE)
        if wanted is not None and wanted != str(spec.head.gpus):
            yield (("runtime", "resources", section, GPU_RESOURCE),
                   f"{GPU_RESOURCE} {wanted} differs from the pod's GPUs (nodes[].gpus = {spec.head.gpus}); "
                   "leave it out: vllmgen sets it from nodes[].gpus")
    for index, node in enumerate(spec.nodes[1:], start=1):
        first = spec.nodes[0]
        for field in ("gpus", "nic", "ib_hcas", "env"):
            if getattr(node, field) != getattr(first, field):
                yield (("nodes", index, field),
                       f"every pod of a {'group' if group else 'Deployment'} is made from one template: "
                       f"{field} must match nodes[0]'s")
    yield from _common(spec, settings)


def _disaggregation(spec: Spec, settings: KubernetesRuntime) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """P/D: each instance is a Deployment of one pod that the scheduler places (instances[].node only names
    the host the rules check GPUs against); its GPUs come from the group's tensor x data parallel size."""
    assert spec.disaggregation is not None
    for group in ("prefill", "decode"):
        for index, instance in enumerate(getattr(spec.disaggregation, group).instances):
            if instance.gpu_ids is not None:
                yield (("disaggregation", group, "instances", index, "gpu_ids"),
                       "only the Docker and process runtimes read this (a host's GPU indexes; the device plugin "
                       "picks the GPUs): remove it")
    if settings.group_size is not None:
        yield ("runtime", "group_size"), "each prefill/decode instance is a Deployment of one pod: remove group_size"
    if settings.replicas != 1:
        yield ("runtime", "replicas"), "each prefill/decode instance is a Deployment of one pod: list more instances"
    for section in ("limits", "requests"):
        if GPU_RESOURCE in getattr(settings.resources, section):
            yield (("runtime", "resources", section, GPU_RESOURCE),
                   f"each instance's {GPU_RESOURCE} is its tensor x data parallel size: leave it out")


def _common(spec: Spec, settings: KubernetesRuntime) -> Iterator[tuple[tuple[str | int, ...], str]]:
    # the startup probe's budget covers the ready timeout vLLM itself allows
    ready = ready_timeout(spec).seconds
    if settings.startup_failure_threshold is not None:
        budget = settings.startup_failure_threshold * settings.probe_period_s
        if budget < ready:
            yield (("runtime", "startup_failure_threshold"),
                   f"the startupProbe allows {settings.startup_failure_threshold} x {settings.probe_period_s} s = "
                   f"{budget} s, less than the engine's ready timeout ({ready} s): the kubelet would kill a start "
                   "vLLM still allows; raise it or leave it unset")
    if settings.service_name in FORBIDDEN_SERVICE_NAMES:
        yield ("runtime", "service_name"), ("a Service named 'vllm' makes Kubernetes inject VLLM_PORT=tcp://... "
                                            "into pods, and vLLM refuses to start: choose another name")
    if spec.name in FORBIDDEN_SERVICE_NAMES:
        yield ("name",), ("the deployment's objects are named after it (a LeaderWorkerSet makes a Service of its "
                          "name) and a Service 'vllm' injects VLLM_PORT=tcp://..., which vLLM refuses: rename it")
    if spec.model.host_path and not spec.model.host_path.startswith("/") and settings.model_claim is None:
        yield ("model", "host_path"), "a hostPath volume needs an absolute path (no '~/')"
    yield from _host_only(spec)


def _host_only(spec: Spec) -> Iterator[tuple[tuple[str | int, ...], str]]:
    for path, reader in HOST_ONLY:
        section = getattr(spec, path[0])
        if section is None:
            continue
        if len(path) == 1:
            if section.model_fields_set:
                yield path, f"{path[0]} configures {reader}; the Kubernetes target has none: remove it"
        elif path[1] in section.model_fields_set:
            yield path, f"only the Docker and process runtimes read this ({reader}): remove it"
    for index, node in enumerate(spec.nodes):
        for field, reader in NODE_HOST_ONLY.items():
            if field in node.model_fields_set:
                yield ("nodes", index, field), f"only the Docker and process runtimes read this ({reader}): remove it"
