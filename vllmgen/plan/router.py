"""The router in front of a deployment's API servers (vllm-router): where it runs and what it fronts.

Replicas, hybrid and external DP load balancing all leave several API servers; a client wants one
URL. The router runs in its own container on the host the spec names and sends each request to
a healthy server. This module only decides; ``vllmgen.render.router_artifacts`` turns it into files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vllmgen.plan import exposure, pd
from vllmgen.spec import addresses
from vllmgen.spec.model import Node, Spec

ROUTER_SUFFIX = "router"
ROLE = "router"  # its io.vllmgen.role label
# In P/D mode vllm-router 0.1.17 does not pass the client's Authorization header on: it sends
# "Bearer $OPENAI_API_KEY" from its own environment to every prefill and decode instance (and checks no key
# itself: only the gateway may reach it).
WORKER_KEY_ENV = "OPENAI_API_KEY"
# vllm-router opens a Prometheus listener besides its HTTP port (0.1.17: 127.0.0.1:29000 unless told): bound to
# loopback by name, on the spec's port, so no other host reaches it and the port-clash rules know it
METRICS_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Worker:
    node: str
    url: str  # http://address:port, the API server's own /health and /v1 live there


@dataclass(frozen=True)
class RouterPlan:
    node: str
    address: str
    docker_host: str | None
    port: int
    policy: str
    version: str
    base_image: str
    image: str  # tag of the image built from router/Dockerfile
    container_name: str
    workers: tuple[Worker, ...]
    health_check_interval_s: int
    env: tuple[tuple[str, str], ...]
    volumes: tuple[tuple[str, str, bool], ...] = ()
    host: str = "0.0.0.0"  # what it binds (vllmgen.plan.exposure): loopback when only the gateway on its node uses it
    # prefill/decode disaggregation (vllmgen.plan.pd): P/D mode, each side with its own workers and policy
    prefill: tuple[Worker, ...] = ()
    decode: tuple[Worker, ...] = ()
    prefill_policy: str | None = None
    decode_policy: str | None = None
    kv_connector: str | None = None  # vllm-router's --kv-connector (nixl)
    executable: str = "vllm-router"  # the process runtime's vllm-router on the router's host
    metrics_port: int = field(kw_only=True)  # its Prometheus listener, on METRICS_HOST (the spec's router.metrics_port)

    @property
    def disaggregated(self) -> bool:
        return bool(self.decode)

    @property
    def reach(self) -> str:
        """The address the gateway and vllmgen's checks use."""
        return self.address if self.host in exposure.EVERY_INTERFACE else self.host

    @property
    def url(self) -> str:
        return f"http://{addresses.host_port(self.reach, self.port)}"

    def metrics_args(self) -> tuple[str, ...]:
        return ("--prometheus-host", METRICS_HOST, "--prometheus-port", str(self.metrics_port))

    def argv(self) -> tuple[str, ...]:
        """vllm-router's arguments. No --api-key: it would sit in argv; vLLM checks the key behind it, and
        its admin paths (/add_worker, /remove_worker) take no key at all: only the gateway may reach it."""
        common = ("--host", self.host, "--port", str(self.port), *self.metrics_args(), "--policy", self.policy,
                  "--health-check-interval-secs", str(self.health_check_interval_s))
        if not self.disaggregated:
            return (*common, "--worker-urls", *(worker.url for worker in self.workers))
        # vllm-router sends each request to a prefill instance (max_tokens 1, do_remote_decode), then to a
        # decode instance with the kv_transfer_params the prefill returned; no bootstrap port with NIXL
        policies: tuple[str, ...] = ()
        if self.prefill_policy:
            policies += ("--prefill-policy", self.prefill_policy)
        if self.decode_policy:
            policies += ("--decode-policy", self.decode_policy)
        return (*common, *policies, "--vllm-pd-disaggregation", "--kv-connector", self.kv_connector or "nixl",
                *(word for worker in self.prefill for word in ("--prefill", worker.url)),
                *(word for worker in self.decode for word in ("--decode", worker.url)))


def workers(spec: Spec) -> tuple[Worker, ...]:
    """Every API server of the deployment, head first, at the address it listens on."""
    return tuple(Worker(node, url) for node, url in exposure.api_servers(spec))


def plan_router(spec: Spec, ordered: list[Node], image_tag: str) -> RouterPlan | None:
    router = spec.router
    if router is None:
        return None
    where = next((node for node in spec.nodes if node.name == router.node), ordered[0])
    prefix = spec.container_prefix
    pd_args: dict[str, Any] = {}
    if spec.disaggregation is not None:
        sides = {group: tuple(Worker(i.name, pd.url(spec, i)) for i in pd.instances(spec) if i.group == group)
                 for group in ("prefill", "decode")}
        pd_args = {"prefill": sides["prefill"], "decode": sides["decode"],
                   "prefill_policy": spec.disaggregation.prefill.policy,
                   "decode_policy": spec.disaggregation.decode.policy,
                   "kv_connector": spec.disaggregation.connector.kind}
    return RouterPlan(
        node=where.name,
        address=where.address,
        docker_host=where.docker_host,
        port=router.port,
        policy=router.policy,
        version=router.version,
        base_image=router.base_image,
        image=f"vllmgen/{spec.name}-{ROUTER_SUFFIX}:{router.version}",
        container_name=f"{prefix}-{ROUTER_SUFFIX}",
        workers=(*pd_args["decode"], *pd_args["prefill"]) if pd_args else workers(spec),
        health_check_interval_s=router.health_check_interval_s,
        metrics_port=router.metrics_port,
        env=tuple(sorted(router.extra_env.items())),
        volumes=tuple((v.host, v.container, v.read_only) for v in router.volumes),
        host=exposure.router_bind(spec),
        executable=router.executable or "vllm-router",
        **pd_args,
    )
