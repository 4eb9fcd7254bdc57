"""What the Kubernetes target decides from the spec and the shared plan: pod shapes, names, volumes.

The serve command is the plan's own (``Plan.serve_argv``): the leader's is the head's, the workers'
is the first worker's, with what a pod learns only when it starts put in Kubernetes' ``$(VAR)`` form:
the node rank from ``LWS_WORKER_INDEX``, the master and DP addresses from ``LWS_LEADER_ADDRESS``.
``VLLM_HOST_IP`` comes from the pod's own IP (the downward API), not from the spec's node address.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from vllmgen.plan import gateway as front_door
from vllmgen.plan import label_names, parallel, pd
from vllmgen.plan.router import WORKER_KEY_ENV, Worker
from vllmgen.spec.model import Spec
from vllmgen.targets.kubernetes.spec import GPU_RESOURCE, KubernetesRuntime

if TYPE_CHECKING:  # the shared plan imports this module to fill Plan.kubernetes
    from vllmgen.plan.plan import NodePlan, Plan

LEADER_ADDRESS = "$(LWS_LEADER_ADDRESS)"
WORKER_INDEX = "$(LWS_WORKER_INDEX)"
HOST_IP = "$(VLLM_HOST_IP)"  # the pod's own IP (the downward API), defined before it is used
# the leader's name (LWS_LEADER_ADDRESS) as an IPv4 address, waiting for its DNS record
RESOLVE_LEADER = ('until leader="$(getent ahostsv4 "$LWS_LEADER_ADDRESS" | awk \'NR == 1 {print $1}\')" '
                  '&& [ -n "$leader" ]; do sleep 2; done; ')
EVERY_ADDRESS = "0.0.0.0"  # the pod's own network namespace: the NetworkPolicy decides who reaches it
# serve-config.yaml options that name the head's address: on each pod's command line instead
ADDRESS_OPTIONS = ("master-addr", "data-parallel-address")
SECRET_SUFFIX = "secrets"
API_LABEL = label_names.API  # on pods that run an API server: the Service and the router select them


@dataclass(frozen=True)
class Pod:
    """One vLLM pod template: its command, environment and GPUs."""

    role: Literal["leader", "worker", "replica", "prefill", "decode"]
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    secrets: tuple[str, ...]  # variable names, each a key of the Secret
    gpus: int
    cap_add: tuple[str, ...]
    serves_http: bool
    # a prefill/decode instance: its own Deployment and Service (<deployment>-<instance>), its own ports
    instance: str | None = None
    port: int | None = None  # its API port (else the deployment's)
    side_channel_ports: tuple[int, ...] = ()  # NIXL's handshake, one per DP rank


@dataclass(frozen=True)
class RouterPod:
    image: str
    args: tuple[str, ...]
    port: int
    env: tuple[tuple[str, str], ...]
    key_env: str | None = None  # fed from the Secret's API key: P/D mode sends it to the instances itself
    discovers: bool = True  # finds the API server pods by label (a Role lets it); P/D lists the Services


@dataclass(frozen=True)
class GatewayPod:
    image: str
    conf: str
    entrypoint: str
    port: int
    service_type: str


@dataclass(frozen=True)
class KubernetesPlan:
    name: str
    namespace: str | None
    image: str
    layout: Literal["leaderworkerset", "deployment", "disaggregated"]
    pods: tuple[Pod, ...]  # the leader (or the replica), then the worker; or every P/D instance, decode first
    group_size: int
    replicas: int  # LWS groups, or the Deployment's replicas
    serve_config: dict[str, Any]
    service_name: str
    port: int
    model_path: str
    model_claim: str | None
    model_host_path: str | None
    cache_claim: str
    renders_cache_claim: bool
    cache_size: str
    storage_class: str | None
    shm_size: str
    requests: tuple[tuple[str, str], ...]
    limits: tuple[tuple[str, str | int], ...]
    node_selector: tuple[tuple[str, str], ...]
    probe_period_s: int
    startup_failure_threshold: int
    ready_timeout_s: int
    secret_name: str
    secret_keys: tuple[str, ...]
    secret_sources: tuple[tuple[str, str, str], ...]  # (key, "env" or "file", where the spec reads it)
    api_key: bool
    router: RouterPod | None
    gateway: GatewayPod | None
    scrape: bool = True  # monitoring.enabled: Prometheus annotations on the API server pods
    prometheus_namespace: str | None = None  # where the scraping Prometheus runs (the NetworkPolicy lets it in)

    @property
    def leader(self) -> Pod:
        return self.pods[0]

    @property
    def worker(self) -> Pod | None:
        return self.pods[1] if len(self.pods) > 1 else None

    def instance_name(self, pod: Pod) -> str:
        """A P/D instance's Deployment and Service: <deployment>-<instance> (never 'vllm')."""
        return f"{self.name}-{pod.instance}"

    @property
    def router_name(self) -> str:
        return f"{self.name}-router"

    @property
    def gateway_name(self) -> str:
        return f"{self.name}-gateway"

    @property
    def startup_budget_s(self) -> int:
        return self.startup_failure_threshold * self.probe_period_s


def runtime(spec: Spec) -> KubernetesRuntime:
    assert isinstance(spec.runtime, KubernetesRuntime)
    return spec.runtime


def service_name(spec: Spec) -> str:
    return runtime(spec).service_name or f"{spec.name}-api"


def startup_failure_threshold(spec: Spec, ready_timeout_s: int) -> int:
    """Periods enough for the engine's whole ready timeout, so the kubelet never kills a start vLLM allows."""
    settings = runtime(spec)
    return settings.startup_failure_threshold or math.ceil(ready_timeout_s / settings.probe_period_s)


def image(spec: Spec, plan: Plan) -> str:
    """The pods pull what a registry holds: the built image's tag when something is added to the base."""
    settings = runtime(spec)
    if settings.image:
        return settings.image
    if spec.image.name or plan.image.requirements:
        return plan.image.tag
    return spec.image.base


def pod_args(plan: Plan, node: NodePlan, spec: Spec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(command, args) of a vLLM pod from the plan's serve argv for ``node``."""
    argv = plan.serve_argv(node)
    assert argv is not None
    args: list[str] = ["serve"]
    start_rank: str | None = None
    if runtime(spec).model_claim:  # the weights are a volume: serve them from where it is mounted
        argv = (spec.model.path, *argv[1:])
    words = iter(argv)
    for word in words:
        if word == "--host":
            args += [word, EVERY_ADDRESS]
            next(words)
        elif word == "--node-rank":
            args += [word, WORKER_INDEX]
            next(words)
        elif word == "--data-parallel-start-rank":
            start_rank = next(words)
        else:
            args.append(word)
    shell: list[str] = []  # what only a shell in the pod can work out, before exec
    if "master-addr" in plan.serve_config:  # torch.distributed resolves the leader's name itself
        args += ["--master-addr", LEADER_ADDRESS]
    if "data-parallel-address" in plan.serve_config:
        # vLLM's DP coordinator takes an IPv4 literal: the leader's own pod IP, or the leader's name resolved
        if node.rank == 0:
            args += ["--data-parallel-address", HOST_IP]
        else:
            shell += [RESOLVE_LEADER, '--data-parallel-address "$leader"']
    if start_rank is not None:
        local = parallel.ranks(spec, parallel.ordered(spec))[node.rank].local
        if local == 1 and not shell:
            args += ["--data-parallel-start-rank", WORKER_INDEX]
        else:  # a worker's first DP rank is its index times its local ranks: arithmetic only a shell does
            shell.append(f'--data-parallel-start-rank "$((LWS_WORKER_INDEX * {local}))"')
    if not shell:
        return (node.container.entrypoint,), tuple(args)
    prelude = [part for part in shell if part == RESOLVE_LEADER]
    flags = [part for part in shell if part != RESOLVE_LEADER]
    script = "".join(prelude) + 'exec vllm "$@" ' + " ".join(flags)
    return ("/bin/sh", "-c", script, "vllm"), tuple(args)


# the pod's own IP replaces what the plan takes from the host's address (the downward API)
POD_IP_ENV = ("VLLM_HOST_IP", pd.SIDE_CHANNEL_HOST_ENV)


def pod_env(node: NodePlan) -> tuple[tuple[str, str], ...]:
    """The plan's environment but what the pod's own IP replaces."""
    return tuple((key, value) for key, value in node.container.env if key not in POD_IP_ENV)


def instance_url(name: str, instance: str, port: int) -> str:
    """Where the router reaches a P/D instance: its Service's DNS name."""
    return f"http://{name}-{instance}:{port}"


def _instance_pods(spec: Spec, plan: Plan) -> tuple[Pod, ...]:
    """Every P/D instance as a pod of its own, from its plan node (the same order: decode first)."""
    pods = []
    for node, instance in zip(plan.nodes, pd.instances(spec), strict=True):
        command, args = pod_args(plan, node, spec)
        pods.append(Pod(instance.group, command, args, pod_env(node),
                        tuple(secret.name for secret in node.container.secrets), node.gpus, node.container.cap_add,
                        True, instance.name, instance.settings.port, tuple(instance.side_channel_ports)))
    return tuple(pods)


def plan_kubernetes(spec: Spec, plan: Plan) -> KubernetesPlan:
    settings = runtime(spec)
    disaggregated = spec.disaggregation is not None
    replicas_layout = parallel.replicas(spec) or len(plan.nodes) == 1
    shapes = () if disaggregated else (plan.nodes[0],) if replicas_layout else (plan.nodes[0], plan.nodes[1])
    pods = list(_instance_pods(spec, plan)) if disaggregated else []
    for index, node in enumerate(shapes):
        command, args = pod_args(plan, node, spec)
        role: Literal["leader", "worker", "replica"] = "replica" if replicas_layout else (
            "leader" if index == 0 else "worker")
        pods.append(Pod(role, command, args, pod_env(node), tuple(secret.name for secret in node.container.secrets),
                        node.gpus, node.container.cap_add, parallel.serves_http(spec, node.rank)))
    serve_config = {key: value for key, value in plan.serve_config.items() if key not in ADDRESS_OPTIONS}
    model_host = None
    if settings.model_claim is None and spec.model.host_path:
        model_host = spec.model.host_path
    limits: dict[str, str | int] = dict(sorted(settings.resources.limits.items()))
    limits[GPU_RESOURCE] = plan.head.gpus
    name = spec.name
    threshold = startup_failure_threshold(spec, plan.ready_timeout_s)
    return KubernetesPlan(
        name=name,
        namespace=settings.namespace,
        image=image(spec, plan),
        layout="disaggregated" if disaggregated else "deployment" if replicas_layout else "leaderworkerset",
        pods=tuple(pods),
        group_size=1 if replicas_layout or disaggregated else len(plan.nodes),
        replicas=1 if disaggregated else len(plan.nodes) if replicas_layout else settings.replicas,
        serve_config=serve_config,
        service_name=service_name(spec),
        port=spec.serve.port,
        model_path=spec.model.path,
        model_claim=settings.model_claim,
        model_host_path=model_host,
        cache_claim=settings.cache_claim or f"{name}-cache",
        renders_cache_claim=settings.cache_claim is None,
        cache_size=settings.cache_size,
        storage_class=settings.storage_class,
        shm_size=settings.shm_size,
        requests=tuple(sorted(settings.resources.requests.items())),
        limits=tuple(sorted(limits.items())),
        node_selector=tuple(sorted(settings.node_selector.items())),
        probe_period_s=settings.probe_period_s,
        startup_failure_threshold=threshold,
        ready_timeout_s=plan.ready_timeout_s,
        secret_name=f"{name}-{SECRET_SUFFIX}",
        secret_keys=tuple(secret.name for secret in plan.secrets),
        secret_sources=tuple((secret.name, "file", secret.from_file) if secret.from_file else
                             (secret.name, "env", secret.from_env or secret.name) for secret in plan.secrets),
        api_key=any(secret.name == front_door.KEY_ENV for secret in plan.secrets),
        router=_router(plan, name, settings, pods),
        gateway=_gateway(plan, name, settings),
        scrape=spec.monitoring.enabled,
        prometheus_namespace=settings.prometheus_namespace if spec.monitoring.enabled else None,
    )


def _router(plan: Plan, name: str, settings: KubernetesRuntime, pods: list[Pod]) -> RouterPod | None:
    """vllm-router finds the API server pods itself (its Kubernetes service discovery, by label):
    a Deployment's pods have no stable addresses to list. In P/D mode it lists each instance's Service
    (the plan's argv, the Services' URLs in place of the hosts') and holds the key for them."""
    router = plan.router
    if router is None:
        return None
    if router.disaggregated:
        urls = {pod.instance: instance_url(name, pod.instance, pod.port) for pod in pods
                if pod.instance is not None and pod.port is not None}
        in_cluster = replace(router, host=EVERY_ADDRESS,
                             prefill=tuple(Worker(w.node, urls[w.node]) for w in router.prefill),
                             decode=tuple(Worker(w.node, urls[w.node]) for w in router.decode))
        api_key = any(secret.name == front_door.KEY_ENV for secret in plan.secrets)
        return RouterPod(image=router.image, args=in_cluster.argv(), port=router.port, env=router.env,
                         key_env=WORKER_KEY_ENV if api_key else None, discovers=False)
    args = ("--host", EVERY_ADDRESS, "--port", str(router.port), *router.metrics_args(), "--policy", router.policy,
            "--health-check-interval-secs", str(router.health_check_interval_s),
            "--service-discovery", "--selector", f"{API_LABEL}={name}",
            "--service-discovery-port", str(plan.direct_endpoint.port),
            "--service-discovery-namespace", "$(POD_NAMESPACE)")
    return RouterPod(image=router.image, args=args, port=router.port, env=router.env)


def _gateway(plan: Plan, name: str, settings: KubernetesRuntime) -> GatewayPod | None:
    gateway = plan.gateway
    if gateway is None:
        return None
    upstream = (f"{name}-router:{plan.router.port}" if plan.router
                else f"{settings.service_name or name + '-api'}:{plan.direct_endpoint.port}")
    service = f"{name}-gateway"  # what clients reach (its Service), in the config's comments too
    in_cluster = replace(gateway, node=service, node_address=service, listen="", upstreams=(upstream,),
                         metrics_from=None)
    header = f"generated by vllmgen from {plan.spec_file}; do not edit"
    return GatewayPod(image=gateway.image, conf=front_door.nginx_conf(in_cluster, name, header),
                      entrypoint=front_door.entrypoint(header), port=gateway.port,
                      service_type=settings.gateway_service_type)
