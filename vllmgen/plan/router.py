"""The router in front of a deployment's API servers (vllm-router): where it runs and what it fronts.

Replicas, hybrid and external DP load balancing all leave several API servers; a client wants one
URL. The router runs in its own container on the host the spec names and sends each request to
a healthy server. This module only decides; ``vllmgen.render.router_artifacts`` turns it into files.
"""

from __future__ import annotations

from dataclasses import dataclass

from vllmgen.spec import addresses
from vllmgen.plan import exposure
from vllmgen.spec.model import Node, Spec

ROUTER_SUFFIX = "router"


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

    @property
    def reach(self) -> str:
        """The address the gateway and vllmgen's checks use."""
        return self.address if self.host in exposure.EVERY_INTERFACE else self.host

    @property
    def url(self) -> str:
        return f"http://{addresses.host_port(self.reach, self.port)}"

    def argv(self) -> tuple[str, ...]:
        """vllm-router's arguments. No --api-key: it would sit in argv; vLLM checks the key behind it, and
        its admin paths (/add_worker, /remove_worker) take no key at all: only the gateway may reach it."""
        return ("--host", self.host, "--port", str(self.port), "--policy", self.policy,
                "--health-check-interval-secs", str(self.health_check_interval_s),
                "--worker-urls", *(worker.url for worker in self.workers))


def workers(spec: Spec) -> tuple[Worker, ...]:
    """Every API server of the deployment, head first, at the address it listens on."""
    return tuple(Worker(node.name, exposure.server_url(spec, node)) for node in exposure.api_server_nodes(spec))


def plan_router(spec: Spec, ordered: list[Node], image_tag: str) -> RouterPlan | None:
    router = spec.router
    if router is None:
        return None
    where = next((node for node in spec.nodes if node.name == router.node), ordered[0])
    prefix = spec.runtime.container_prefix or spec.name
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
        workers=workers(spec),
        health_check_interval_s=router.health_check_interval_s,
        env=tuple(sorted(router.extra_env.items())),
        volumes=tuple((v.host, v.container, v.read_only) for v in router.volumes),
        host=exposure.router_bind(spec),
    )
