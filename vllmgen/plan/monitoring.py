"""Monitoring beside the deployment, planned: where Prometheus and Grafana run, what they scrape and
where they listen. vllmgen.render.monitoring turns the plan into files."""

from __future__ import annotations

from dataclasses import dataclass

from vllmgen.plan import exposure, parallel
from vllmgen.spec import addresses
from vllmgen.spec.model import Node, Spec


@dataclass(frozen=True)
class Target:
    address: str  # host:port, IPv6 in brackets
    node: str
    role: str


@dataclass(frozen=True)
class Listener:
    """A port monitoring opens: on which address, and who may use it (for the runbook's list of ports)."""

    service: str
    address: str  # what it binds: an IP, or 0.0.0.0 / :: for every interface
    port: int
    access: str


@dataclass(frozen=True)
class MonitoringPlan:
    deployment: str
    node: str  # where Prometheus and Grafana run
    address: str
    targets: tuple[Target, ...]
    scrape_interval: str
    prometheus_image: str
    grafana_image: str
    prometheus_port: int
    grafana_port: int
    container_prefix: str
    bind: str  # the address both listen on: never every interface unless the spec says so
    grafana_anonymous: bool

    @property
    def prometheus_container(self) -> str:
        return f"{self.container_prefix}-prometheus"

    @property
    def grafana_container(self) -> str:
        return f"{self.container_prefix}-grafana"

    @property
    def every_interface(self) -> bool:
        return self.bind in ("0.0.0.0", "::")

    @property
    def local_bind(self) -> str:
        """Where Grafana, on the same host, reaches Prometheus."""
        return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.bind, self.bind)

    @property
    def listeners(self) -> tuple[Listener, ...]:
        viewers = "anyone who reaches it views the dashboards (grafana_anonymous)" if self.grafana_anonymous \
            else "a login is needed (admin's password from GRAFANA_ADMIN_PASSWORD); no anonymous access"
        return (
            Listener("prometheus", self.bind, self.prometheus_port,
                     "no authentication: whoever reaches it reads every metric and the servers' addresses"),
            Listener("grafana", self.bind, self.grafana_port, viewers),
        )


def plan_monitoring(spec: Spec, head: Node) -> MonitoringPlan | None:
    settings = spec.monitoring
    if not settings.enabled:
        return None
    where = next((n for n in spec.nodes if n.name == settings.node), head)
    # every API server: the head's (mp followers are headless, Ray serves from the head container),
    # and each node's with replicas or hybrid/external DP load balancing
    # each server where it listens (loopback when Prometheus is on its node)
    targets = tuple(
        Target(addresses.host_port(exposure.reach(exposure.server_bind(spec, node), node), spec.serve.port),
               node.name, "head" if node is head else "worker")
        for index, node in enumerate(parallel.ordered(spec)) if parallel.serves_http(spec, index)
    )
    return MonitoringPlan(
        deployment=spec.name,
        node=where.name,
        address=where.address,
        targets=targets,
        scrape_interval=settings.scrape_interval,
        prometheus_image=settings.prometheus_image,
        grafana_image=settings.grafana_image,
        prometheus_port=settings.prometheus_port,
        grafana_port=settings.grafana_port,
        container_prefix=spec.container_prefix,
        # a hostname cannot be bound to: loopback then (validate warns), never every interface unasked
        bind=settings.bind or (where.address if addresses.parse_ip(where.address) else "127.0.0.1"),
        grafana_anonymous=settings.grafana_anonymous,
    )
