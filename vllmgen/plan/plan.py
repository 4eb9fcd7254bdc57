"""Stage 3, plan: a valid ``Spec`` -> a pure, typed description of what runs where.

The plan decides everything: container names, flags, environment, mounts, the serve command
per node. Renderers only format it (shell, compose, runbook) and the runner only executes it,
so the three can never disagree about a flag.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any, Literal

from vllmgen.plan import exposure, label_names, parallel, pd
from vllmgen.plan import gateway as front_door
from vllmgen.plan.engine import VLLM_DEFAULT_READY_S, cache_env, cache_host_path, ready_timeout
from vllmgen.plan.gateway import GatewayPlan, plan_gateway
from vllmgen.plan.monitoring import MonitoringPlan, plan_monitoring
from vllmgen.plan.monitoring import Target as MonitoringTarget
from vllmgen.plan.router import ROLE as ROUTER_ROLE
from vllmgen.plan.router import WORKER_KEY_ENV, RouterPlan, plan_router
from vllmgen.plan.words import Anchored, host_word
from vllmgen.spec import addresses
from vllmgen.spec.container_layout import CACHE_IN_CONTAINER, CONFIG_IN_CONTAINER, HF_CACHE_IN_CONTAINER
from vllmgen.spec.model import Node, SecretRef, Spec
from vllmgen.spec.rules.offline import OFFLINE_ENV
from vllmgen.spec.rules.process import node_vllm
from vllmgen.targets.kubernetes.plan import KubernetesPlan, plan_kubernetes
from vllmgen.targets.kubernetes.spec import KubernetesRuntime
from vllmgen.targets.process.runtime import ProcessRuntime

SERVE_CONFIG_FILE = "serve-config.yaml"

Backend = Literal["single", "mp", "ray", "replicas"]


@dataclass(frozen=True)
class Mount:
    """A bind mount. ``anchor`` says what a relative ``source`` is relative to."""

    source: str
    target: str
    read_only: bool = False
    anchor: Literal["absolute", "home", "deploy_dir"] = "absolute"


@dataclass(frozen=True)
class SecretEnv:
    """A container variable whose value is read at apply time from the caller's env or a file."""

    name: str
    from_env: str | None = None
    from_file: str | None = None


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    entrypoint: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    secrets: tuple[SecretEnv, ...]
    mounts: tuple[Mount, ...]
    labels: tuple[tuple[str, str], ...]
    network_mode: Literal["host", "bridge"] = "host"
    ports: tuple[tuple[int | str, int], ...] = ()  # (host side: a port, or "IP:PORT"; the container's port)
    ipc_host: bool = True
    shm_size: str | None = None
    gpus: str = "all"
    devices: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    ulimits: tuple[tuple[str, int, int], ...] = ()
    restart: str = "no"
    healthcheck: Healthcheck | None = None
    extra_hosts: tuple[tuple[str, str], ...] = ()  # (name, IP) lines of the container's /etc/hosts


@dataclass(frozen=True)
class Healthcheck:
    """Docker's health check: a shell command run inside the container (CMD-SHELL in every form)."""

    command: str
    start_period_s: int
    interval_s: int = 30
    timeout_s: int = 10
    retries: int = 3


@dataclass(frozen=True)
class NodePlan:
    name: str
    address: str
    role: Literal["head", "worker"]
    rank: int
    gpus: int
    container: Container
    docker_host: str | None
    serves: bool = field(default=False)
    gpu_ids: tuple[int, ...] | None = None  # which GPUs of the host; None: all
    vllm: str | None = None  # process runtime: the vllm executable on the host


@dataclass(frozen=True)
class ImageBuild:
    tag: str
    base: str
    pip_index_url: str | None
    uv_index_url: str | None
    requirements: tuple[str, ...]


@dataclass(frozen=True)
class ServeExec:
    """The Ray backend serves from inside the running head container, once the cluster is whole."""

    node: str
    container: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Workload:
    """One container the deployment runs: its role, where, its name, and its image. ``Plan.workloads``
    lists them all; what carries or checks images (``vllmgen bundle``) reads that list, never its own."""

    role: str  # vllm, router, gateway, prometheus, grafana
    node: str
    name: str  # the container's name
    image: str  # "" for a program on the host (process runtime)
    build_context: str | None = None  # built from <deploy dir>/<this>/Dockerfile; None: pulled by its tag


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int
    served_name: str
    api_key: SecretEnv | None

    @property
    def url(self) -> str:
        """http://host:port, an IPv6 address in brackets."""
        return f"http://{addresses.host_port(self.address, self.port)}"


@dataclass(frozen=True)
class Plan:
    name: str
    spec_file: str
    backend: Backend
    image: ImageBuild
    daemon: dict[str, Any]
    serve_config: dict[str, Any]
    nodes: tuple[NodePlan, ...]
    serve_exec: ServeExec | None
    endpoint: Endpoint
    secrets: tuple[SecretEnv, ...]
    model_ref: str
    ready_timeout_s: int = VLLM_DEFAULT_READY_S
    monitoring: MonitoringPlan | None = None
    runtime: Literal["docker", "process", "kubernetes"] = "docker"
    router: RouterPlan | None = None
    process_user: str | None = None  # runtime.user: the systemd unit's User= (process runtime)
    process_home: str | None = None  # that user's home: a system unit's %h is root's, whatever User= says
    offline: bool = False  # apply uses the images on the nodes and never builds or pulls
    gateway: GatewayPlan | None = None  # the front door; then ``endpoint`` is its public URL
    gateway_container: Container | None = None
    router_container: Container | None = None  # the router's container, as apply and the scripts run it
    head_endpoint: Endpoint | None = None  # the head's own API server, as vllmgen reaches it (behind the gateway)
    server_urls: tuple[tuple[str, str], ...] = ()  # (node, URL) of every API server, head first
    kubernetes: KubernetesPlan | None = None  # runtime.kind: kubernetes: what its manifests hold

    @property
    def direct_endpoint(self) -> Endpoint:
        """The head's API server itself (not the gateway): what apply waits for before anything fronts it."""
        return self.head_endpoint or self.endpoint

    @property
    def head(self) -> NodePlan:
        return self.nodes[0]

    @property
    def workers(self) -> tuple[NodePlan, ...]:
        return self.nodes[1:]

    def workloads(self) -> tuple[Workload, ...]:
        """Every container of the deployment, in start order: each node's, the router, the front door, monitoring."""
        out = [Workload("vllm", node.name, node.container.name, node.container.image, ".") for node in self.nodes]
        if self.router is not None:
            out.append(Workload("router", self.router.node, self.router.container_name, self.router.image, "router"))
        if self.gateway is not None and self.gateway_container is not None:
            out.append(Workload("gateway", self.gateway.node, self.gateway_container.name, self.gateway_container.image))
        if self.monitoring is not None:
            watch = self.monitoring
            out += [Workload("prometheus", watch.node, watch.prometheus_container, watch.prometheus_image),
                    Workload("grafana", watch.node, watch.grafana_container, watch.grafana_image)]
        return tuple(out)

    def node(self, name: str) -> NodePlan:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def serve_argv(self, node: NodePlan) -> tuple[str, ...] | None:
        """Arguments after ``vllm serve`` that this node runs, if it runs any."""
        if self.serve_exec and self.serve_exec.node == node.name:
            return self.serve_exec.argv[2:]
        if node.serves:
            return node.container.command[1:]
        return None


def build_plan(spec: Spec, spec_file: str) -> Plan:
    backend = _backend(spec)
    ordered = _ordered_nodes(spec)
    secrets = _secrets(spec)
    image = _image(spec, backend)
    model_ref = spec.model.path if spec.model.host_path else spec.model.source
    serve_base = ("serve", model_ref, "--config", CONFIG_IN_CONTAINER, *spec.serve.extra_args)
    serve_config = _serve_config(spec, backend, ordered[0])
    # a change to the image or the shared serve config must replace containers too
    inputs = json.dumps([asdict(image), serve_config], sort_keys=True)
    if spec.disaggregation is not None:
        nodes = tuple(_instance_plan(spec, instance, rank, image.tag, secrets, serve_base, inputs)
                      for rank, instance in enumerate(pd.instances(spec)))
    else:
        peers = _peer_hosts(spec, backend)
        nodes = tuple(
            _node_plan(spec, node, rank, backend, image.tag, secrets, serve_base, inputs, peers)
            for rank, node in enumerate(ordered)
        )
    serve_exec = None
    if backend == "ray":
        host = ("--host", exposure.server_bind(spec, ordered[0]))
        serve_exec = ServeExec(nodes[0].name, nodes[0].container.name, ("vllm", *serve_base, *host))
    api_key = next((s for s in secrets if s.name == "VLLM_API_KEY"), None)
    head_endpoint = Endpoint(
        address=exposure.reach(exposure.server_bind(spec, ordered[0]), ordered[0]),
        port=spec.serve.port,
        served_name=_served_name(spec),
        api_key=api_key,
    )
    server_urls = exposure.api_servers(spec)
    router = plan_router(spec, ordered, image.tag)
    gateway = plan_gateway(spec, addresses.host_port(router.reach, router.port) if router else None)
    monitoring = plan_monitoring(spec, ordered[0])
    if spec.disaggregation is not None:  # the instances are the servers; router and gateway ride on one of them
        first = pd.instances(spec)[0]
        head_endpoint = replace(head_endpoint, address=exposure.reach(pd.bind(spec, first), first.host),
                                port=first.settings.port)
        server_urls = tuple((instance.name, pd.url(spec, instance)) for instance in pd.instances(spec))
        if router is not None:
            router = replace(router, node=pd.anchor(spec, router.node))
        if gateway is not None:
            gateway = replace(gateway, node=pd.anchor(spec, gateway.node))
        if monitoring is not None:
            monitoring = replace(monitoring, targets=tuple(
                MonitoringTarget(addresses.host_port(exposure.reach(pd.bind(spec, i), i.host), i.settings.port),
                                 i.name, i.group) for i in pd.instances(spec)))
    gateway_container = _gateway_container(spec, gateway, api_key) if gateway else None
    router_container = _router_container(spec, router, api_key) if router else None
    endpoint = head_endpoint  # what clients use: the front door when there is one
    if gateway is not None:
        endpoint = replace(head_endpoint, address=gateway.public_host, port=gateway.port)
    plan = Plan(
        name=spec.name,
        spec_file=spec_file,
        backend=backend,
        image=image,
        daemon=_daemon(spec),
        serve_config=serve_config,
        nodes=nodes,
        serve_exec=serve_exec,
        endpoint=endpoint,
        secrets=secrets,
        model_ref=model_ref,
        ready_timeout_s=ready_timeout(spec).seconds,
        monitoring=monitoring,
        runtime=spec.runtime.kind,
        process_user=spec.runtime.user if isinstance(spec.runtime, ProcessRuntime) else None,
        process_home=spec.runtime.home if isinstance(spec.runtime, ProcessRuntime) else None,
        router=router,
        gateway=gateway,
        gateway_container=gateway_container,
        router_container=router_container,
        head_endpoint=head_endpoint if gateway else None,
        server_urls=server_urls,
        offline=spec.offline,
    )
    if isinstance(spec.runtime, KubernetesRuntime):
        plan = replace(plan, kubernetes=plan_kubernetes(spec, plan))
    return plan


def _gateway_container(spec: Spec, gateway: GatewayPlan, api_key: SecretEnv | None) -> Container:
    """nginx on the gateway's host: host networking (it binds the public address itself), no GPUs, its
    own /dev/shm (a tmpfs) for the key's file; the image's nginx, or the host's for the process runtime."""
    conf = front_door.nginx_conf(gateway, spec.name, "")
    script = front_door.entrypoint("")
    nginx = "nginx" if spec.runtime.in_containers else gateway.nginx
    container = Container(
        name=gateway.container_name,
        image=gateway.image if spec.runtime.in_containers else "",
        entrypoint="/bin/sh",
        command=(front_door.ENTRYPOINT_IN_CONTAINER, front_door.CONF_IN_CONTAINER, nginx),
        env=(),
        secrets=(api_key,) if api_key else (),
        mounts=(Mount(front_door.CONF_FILE, front_door.CONF_IN_CONTAINER, read_only=True, anchor="deploy_dir"),
                Mount(front_door.ENTRYPOINT_FILE, front_door.ENTRYPOINT_IN_CONTAINER, read_only=True,
                      anchor="deploy_dir")),
        labels=(),
        ipc_host=False,
        gpus="",
        restart=spec.runtime.restart,
    )
    labels = (
        (label_names.DEPLOYMENT, spec.name),
        (label_names.NODE, gateway.node),
        (label_names.ROLE, front_door.ROLE),
        (label_names.CONFIG_HASH, container_hash(container, front_door.config_inputs(conf, script))),
    )
    return replace(container, labels=labels)


# the router's health check: a proxy in the container's environment must not catch a loopback probe
ROUTER_PROBE = "import sys, urllib.request as u; u.build_opener(u.ProxyHandler({})).open(sys.argv[1], timeout=10)"


def _router_container(spec: Spec, router: RouterPlan, api_key: SecretEnv | None) -> Container:
    """vllm-router on its host: no GPUs; the process runtime's run.sh (nodes/<node>.router/) execs it there.
    In P/D mode it authenticates to the instances with the deployment's key (router.WORKER_KEY_ENV)."""
    process = not spec.runtime.in_containers
    worker_key = ((SecretEnv(WORKER_KEY_ENV, api_key.from_env, api_key.from_file),)
                  if api_key and router.disaggregated else ())
    probe_host = "127.0.0.1" if router.host in exposure.EVERY_INTERFACE else router.host
    container = Container(
        name=router.container_name,
        image="" if process else router.image,
        entrypoint=router.executable if process else "vllm-router",
        command=router.argv(),
        env=router.env,
        secrets=worker_key,
        mounts=tuple(host_mount(host, inner, read_only) for host, inner, read_only in router.volumes),
        labels=(),
        ipc_host=False,
        gpus="",
        healthcheck=Healthcheck(
            command=f'python3 -c "{ROUTER_PROBE}" http://{addresses.host_port(probe_host, router.port)}/health',
            start_period_s=60, interval_s=10),
    )
    labels = (
        (label_names.DEPLOYMENT, spec.name),
        (label_names.NODE, router.node),
        (label_names.ROLE, ROUTER_ROLE),
        (label_names.CONFIG_HASH, container_hash(container, json.dumps([router.base_image, router.version]))),
    )
    return replace(container, labels=labels)


def _backend(spec: Spec) -> Backend:
    if spec.disaggregation is not None:  # every instance serves on its own, as replicas do
        return "replicas"
    if spec.cluster.backend in ("ray", "replicas"):
        return spec.cluster.backend
    return "mp" if len(spec.nodes) > 1 else "single"


def _ordered_nodes(spec: Spec) -> list[Node]:
    """Head first (rank 0), workers in the order the spec lists them."""
    head = spec.head
    return [head, *(node for node in spec.nodes if node is not head)]


def _served_name(spec: Spec) -> str:
    return spec.model.served_name or spec.model.source


def _secret(name: str, ref: SecretRef) -> SecretEnv:
    return SecretEnv(name=name, from_env=ref.env, from_file=ref.file)


def _secrets(spec: Spec) -> tuple[SecretEnv, ...]:
    out = []
    if spec.secrets.hf_token:
        out.append(_secret("HF_TOKEN", spec.secrets.hf_token))
    if spec.secrets.api_key:
        out.append(_secret("VLLM_API_KEY", spec.secrets.api_key))
    return tuple(out)


def _image(spec: Spec, backend: Backend) -> ImageBuild:
    image = spec.image
    version = image.vllm_version
    requirements = []
    if image.vllm_extras and version:
        requirements.append(f"vllm[{','.join(sorted(set(image.vllm_extras)))}]=={version}")
    requirements += image.packages
    requirements += image.git_packages
    if backend == "ray":
        # vLLM images stopped shipping Ray around v0.18; install a pinned one for the ray backend.
        requirements.append(f"ray[default]=={image.ray_version}")
    tag = image.name or f"vllmgen/{spec.name}:{image.base_tag or 'latest'}"
    return ImageBuild(
        tag=tag,
        base=image.base,
        pip_index_url=image.pip_index_url,
        uv_index_url=image.uv_index_url or image.pip_index_url,
        requirements=tuple(requirements),
    )


def _daemon(spec: Spec) -> dict[str, Any]:
    daemon = dict(spec.docker.daemon)
    if spec.docker.registry_mirrors:
        daemon["registry-mirrors"] = list(spec.docker.registry_mirrors)
    return dict(sorted(daemon.items()))


def _serve_config(spec: Spec, backend: Backend, head: Node) -> dict[str, Any]:
    """The shared part of ``vllm serve``: identical on every node, so it lives in one YAML file."""
    serve, model = spec.serve, spec.model
    config: dict[str, Any] = {"served-model-name": _served_name(spec)}
    if spec.disaggregation is None:  # with prefill/decode groups, each instance's command carries these
        config.update({"port": serve.port, "tensor-parallel-size": serve.tensor_parallel_size,
                       "pipeline-parallel-size": serve.pipeline_parallel_size})
    if serve.data_parallel_size > 1:
        config["data-parallel-size"] = serve.data_parallel_size
    optional = {
        "revision": model.revision,
        "dtype": model.dtype,
        "quantization": model.quantization,
        "gpu-memory-utilization": serve.gpu_memory_utilization,
        "max-model-len": serve.max_model_len,
        "max-num-seqs": serve.max_num_seqs,
        "reasoning-parser": serve.reasoning_parser,
        "tool-call-parser": serve.tool_call_parser,
    }
    config.update({key: value for key, value in optional.items() if value is not None})
    if model.trust_remote_code:
        config["trust-remote-code"] = True
    if serve.enforce_eager:
        config["enforce-eager"] = True
    if serve.enable_prefix_caching is not None:
        # a boolean pair in vLLM: the config file only knows flags that are switched on
        key = "enable-prefix-caching" if serve.enable_prefix_caching else "no-enable-prefix-caching"
        config[key] = True
    if serve.tool_call_parser:
        config["enable-auto-tool-choice"] = True
    if serve.speculative_config is not None:
        config["speculative-config"] = json.dumps(serve.speculative_config, sort_keys=True, separators=(",", ":"))
    if backend == "ray":
        config["distributed-executor-backend"] = "ray"
    elif backend == "mp" and parallel.across_nodes(spec):
        config["distributed-executor-backend"] = "mp"
    elif backend == "mp":
        config.update(
            {
                "distributed-executor-backend": "mp",
                "nnodes": len(spec.nodes),
                "master-addr": head.address,
                "master-port": spec.cluster.master_port,
            }
        )
    config.update(parallel.shared_options(spec))
    return config


def _node_plan(
    spec: Spec,
    node: Node,
    rank: int,
    backend: Backend,
    image: str,
    secrets: tuple[SecretEnv, ...],
    serve_base: tuple[str, ...],
    inputs: str,
    peers: tuple[tuple[str, str], ...] = (),
) -> NodePlan:
    """One node's container; ``peers``: the cluster's /etc/hosts lines (_peer_hosts), one tuple for every node."""
    role: Literal["head", "worker"] = "head" if rank == 0 else "worker"
    serves = backend != "ray"
    if backend == "ray":
        entrypoint, command = "ray", _ray_start(spec, node, role)
    else:
        entrypoint = "vllm"
        command = serve_base
        if backend == "mp" and parallel.across_nodes(spec):
            command = (*command, *parallel.node_args(spec, _ordered_nodes(spec), rank))
        elif backend == "mp":
            command = (*command, "--node-rank", str(rank), *(("--headless",) if rank else ()))
    hcas = node.ib_hcas if node.ib_hcas is not None else spec.cluster.ib_hcas
    answers_http = serves and parallel.serves_http(spec, rank)
    bind = exposure.server_bind(spec, node)
    bridge = spec.runtime.network == "bridge"
    if answers_http:  # per node: one server may face only its own node, another the router's
        # with a bridge network Docker's port map binds the host side; inside, the server takes every address
        command = (*command, "--host", "0.0.0.0" if bridge and spec.serve.host is None else bind)
    process = not spec.runtime.in_containers
    if process:
        entrypoint = node_vllm(spec, node) or "vllm"
    container = Container(
        name=_container_name(spec, node),
        image="" if process else image,
        entrypoint=entrypoint,
        command=command,
        env=_env(spec, node, hcas),
        secrets=secrets,
        mounts=_mounts(spec, node, with_config=serves or role == "head"),
        labels=(),
        network_mode=spec.runtime.network,
        ports=((spec.serve.port if bind in exposure.EVERY_INTERFACE else addresses.host_port(bind, spec.serve.port),
                spec.serve.port),) if bridge else (),
        ipc_host=spec.runtime.ipc_host,
        shm_size=spec.runtime.shm_size,
        devices=("/dev/infiniband",) if hcas else (),
        cap_add=parallel.cap_add(spec, hcas),
        ulimits=(("memlock", -1, -1),) if hcas else (),
        restart=spec.runtime.restart,
        healthcheck=_healthcheck(spec, node) if answers_http and not process else None,
        gpus=_gpus(node),
        extra_hosts=() if process else peers,
    )
    labels = (
        (label_names.DEPLOYMENT, spec.name),
        (label_names.NODE, node.name),
        (label_names.ROLE, role),
        (label_names.CONFIG_HASH, container_hash(container, inputs)),
    )
    return NodePlan(
        name=node.name,
        address=node.address,
        role=role,
        rank=rank,
        gpus=node.gpus,
        container=_replace_labels(container, labels),
        docker_host=node.docker_host,
        serves=serves,
        gpu_ids=tuple(node.gpu_ids) if node.gpu_ids is not None else None,
        vllm=entrypoint if process else None,
    )


def _instance_plan(spec: Spec, instance: pd.Instance, rank: int, image: str, secrets: tuple[SecretEnv, ...],
                   serve_base: tuple[str, ...], inputs: str) -> NodePlan:
    """A prefill or decode instance: planned as a one-node deployment of its own, then given its rank."""
    alone = pd.instance_spec(spec, instance)
    planned = _node_plan(alone, alone.nodes[0], 0, "single", image, secrets,
                         (*serve_base, *pd.serve_args(spec, instance)), inputs)
    role: Literal["head", "worker"] = "head" if rank == 0 else "worker"
    labels = tuple((key, role if key == label_names.ROLE else value) for key, value in planned.container.labels)
    return replace(planned, role=role, rank=rank, container=replace(planned.container, labels=labels))


def _container_name(spec: Spec, node: Node) -> str:
    return f"{spec.container_prefix}-{node.name}"


def _peer_hosts(spec: Spec, backend: Backend) -> tuple[tuple[str, str], ...]:
    """Where the nodes talk to each other (mp or Ray across hosts), every node's IP address under its container's
    name, for the containers' /etc/hosts. torch names the peers of its store's sockets with getnameinfo, a reverse
    DNS query that an air-gapped host can only send into the void and wait out (caught by
    tests/runner/test_bundle_real.py's trap: PTR? 2.0.77.10.in-addr.arpa from every node). Those sockets are IPv6
    ones, so an IPv4 peer comes as ::ffff:10.77.0.2, which glibc's /etc/hosts lookup matches only in that
    spelling (its DNS lookup unmaps it): each IPv4 address is written both ways. Such nodes have IP addresses (the
    rules say so); an IPv6 address with a %scope has no /etc/hosts form."""
    if backend not in ("mp", "ray"):
        return ()
    hosts: list[tuple[str, str]] = []
    for node in _ordered_nodes(spec):
        ip = addresses.parse_ip(node.address)
        if ip is None or getattr(ip, "scope_id", None) is not None:
            continue
        name = _container_name(spec, node)
        hosts.append((name, str(ip)))
        if ip.version == 4:
            hosts.append((name, f"::ffff:{ip}"))
    return tuple(hosts)


def _gpus(node: Node) -> str:
    """``docker run --gpus`` value: all, or the node's devices (quoted for Docker's CSV parser)."""
    if node.gpu_ids is None:
        return "all"
    return '"device=' + ",".join(str(gpu) for gpu in node.gpu_ids) + '"'


def _ray_start(spec: Spec, node: Node, role: str) -> tuple[str, ...]:
    head = spec.head
    where = (
        ("--head", f"--port={spec.cluster.ray_port}")
        if role == "head"
        else (f"--address={addresses.host_port(head.address, spec.cluster.ray_port)}",)
    )
    return (
        "start",
        "--block",
        *where,
        f"--node-ip-address={node.address}",
        f"--num-gpus={node.gpus}",
        "--disable-usage-stats",
    )


def _env(spec: Spec, node: Node, hcas: list[str]) -> tuple[tuple[str, str], ...]:
    env = {**spec.runtime.env, **node.env}
    if (len(spec.nodes) > 1 and spec.cluster.backend != "replicas") or spec.cluster.backend == "ray":
        env["VLLM_HOST_IP"] = node.address
    nic = node.nic or spec.cluster.nic
    if nic:
        env["NCCL_SOCKET_IFNAME"] = nic
        env["GLOO_SOCKET_IFNAME"] = nic
    if hcas:
        env["NCCL_IB_HCA"] = ",".join(hcas)
    env.update(parallel.env(spec, node))
    if spec.model.hf_endpoint:
        env["HF_ENDPOINT"] = spec.model.hf_endpoint
    if spec.model.modelscope:
        env["VLLM_USE_MODELSCOPE"] = "True"
    if spec.caches.keep:
        env.update(cache_env())
    if spec.total_gpus > 1 and "NCCL_DEBUG" not in env:
        env["NCCL_DEBUG"] = "INFO"  # the transport per peer, read back by apply/status (vllmgen.plan.nccl)
    if not spec.runtime.in_containers and node.gpu_ids is not None:  # a container gets device_ids
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in node.gpu_ids)
    env["VLLM_ENGINE_READY_TIMEOUT_S"] = str(ready_timeout(spec).seconds)
    if spec.offline:
        env.update(OFFLINE_ENV)
    return tuple(sorted(env.items()))


def _healthcheck(spec: Spec, node: Node) -> Healthcheck:
    bind = exposure.server_bind(spec, node)
    inside = bind not in exposure.EVERY_INTERFACE and spec.runtime.network == "host"  # bridge: 0.0.0.0 inside
    host = bind if inside else "127.0.0.1"
    url = f"http://{addresses.url_host(host)}:{spec.serve.port}/health"
    # no proxy from the container's environment may stand between the check and the server
    probe = "import sys, urllib.request as u; u.build_opener(u.ProxyHandler({})).open(sys.argv[1], timeout=10)"
    return Healthcheck(command=f'python3 -c "{probe}" {url}', start_period_s=ready_timeout(spec).seconds)


def host_mount(source: str, target: str, read_only: bool = False) -> Mount:
    word = host_word(source)
    if isinstance(word, Anchored):
        return Mount(word.rest, target, read_only, anchor=word.anchor)
    return Mount(source, target, read_only)


def _mounts(spec: Spec, node: Node, *, with_config: bool) -> tuple[Mount, ...]:
    mounts = [host_mount(node.hf_cache or spec.model.hf_cache, HF_CACHE_IN_CONTAINER)]
    host_path = node.model_host_path or spec.model.host_path
    if host_path:
        mounts.append(host_mount(host_path, spec.model.path, read_only=True))
    mounts += [host_mount(v.host, v.container, v.read_only) for v in spec.runtime.volumes]
    if with_config:
        mounts.append(Mount(SERVE_CONFIG_FILE, CONFIG_IN_CONTAINER, read_only=True, anchor="deploy_dir"))
    if spec.caches.keep:
        mounts.append(host_mount(cache_host_path(spec), CACHE_IN_CONTAINER))
    return tuple(mounts)


def container_hash(container: Container, inputs: str) -> str:
    """Identifies a container's definition: the runner leaves a container alone when it matches."""
    plain = _plain(container)
    plain["labels"] = []  # the labels carry the hash itself
    for name in _HASHED_WHEN_SET:  # fields added later: containers made before them are not replaced for them
        if not plain[name]:
            del plain[name]
    data = json.dumps([plain, inputs], sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


_HASHED_WHEN_SET = ("extra_hosts",)


def _plain(value: Any) -> Any:
    """What ``json.dumps(asdict(value))`` sees, without asdict's deep copies (a tenth of the time)."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is tuple or kind is list:
        return [_plain(item) for item in value]
    names = _FIELD_NAMES.get(kind)
    if names is None and is_dataclass(value) and not isinstance(value, type):
        names = _FIELD_NAMES[kind] = tuple(f.name for f in fields(value))
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _replace_labels(container: Container, labels: tuple[tuple[str, str], ...]) -> Container:
    return replace(container, labels=labels)
