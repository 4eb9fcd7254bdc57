"""Monitoring beside the deployment: a Prometheus scrape config, a Grafana dashboard, a compose file for both.

Every API server is a scrape target at its node's own (private) address: vLLM keeps ``/metrics``
open even with ``--api-key``, so the runbook says to keep that port off public networks. The
dashboard is vllmgen's own, built here from vLLM's metric names; a test checks each name against
what a real vLLM exports.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from vllmgen.spec import addresses
from vllmgen.render import yamlout
from vllmgen.spec.model import Node, Spec

DATASOURCE_UID = "vllmgen-prometheus"
DASHBOARDS_IN_CONTAINER = "/var/lib/grafana/dashboards"
ADMIN_PASSWORD_ENV = "GRAFANA_ADMIN_PASSWORD"


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
    from vllmgen.plan import parallel

    from vllmgen.plan import exposure  # each server where it listens (loopback when Prometheus is on its node)

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
        container_prefix=spec.runtime.container_prefix or spec.name,
        # a hostname cannot be bound to: loopback then (validate warns), never every interface unasked
        bind=settings.bind or (where.address if addresses.parse_ip(where.address) else "127.0.0.1"),
        grafana_anonymous=settings.grafana_anonymous,
    )


def artifacts(plan: MonitoringPlan, header: str) -> dict[str, str]:
    """Relative path -> text, every file under ``monitoring/``."""
    return {
        "monitoring/prometheus.yml": _prometheus(plan, header),
        "monitoring/compose.yaml": _compose(plan, header),
        "monitoring/grafana/provisioning/datasources/prometheus.yaml": yamlout.dump(
            {"apiVersion": 1, "datasources": [{
                "name": "Prometheus", "uid": DATASOURCE_UID, "type": "prometheus", "access": "proxy",
                "url": f"http://{addresses.host_port(plan.local_bind, plan.prometheus_port)}", "isDefault": True,
            }]}, header),
        "monitoring/grafana/provisioning/dashboards/vllmgen.yaml": yamlout.dump(
            {"apiVersion": 1, "providers": [{
                "name": "vllmgen", "type": "file", "disableDeletion": True,
                "options": {"path": DASHBOARDS_IN_CONTAINER},
            }]}, header),
        f"monitoring/grafana/dashboards/{plan.deployment}.json": json.dumps(
            dashboard(plan), indent=2, sort_keys=True) + "\n",
    }


def _prometheus(plan: MonitoringPlan, header: str) -> str:
    config = {
        "global": {"scrape_interval": plan.scrape_interval, "evaluation_interval": plan.scrape_interval},
        "scrape_configs": [{
            "job_name": "vllm",
            "metrics_path": "/metrics",
            "static_configs": [
                {"targets": [target.address],
                 "labels": {"deployment": plan.deployment, "node": target.node, "role": target.role}}
                for target in plan.targets
            ],
        }],
    }
    return yamlout.dump(config, f"{header}\nPrometheus for '{plan.deployment}': /metrics of every API server.")


def _compose(plan: MonitoringPlan, header: str) -> str:
    listen = addresses.host_port(plan.bind, plan.prometheus_port)
    prometheus = {
        "image": plan.prometheus_image,
        "container_name": f"{plan.container_prefix}-prometheus",
        "network_mode": "host",  # reaches the nodes' private addresses as the host does
        # the node's own (private) address only: neither Prometheus nor Grafana faces the world
        "command": ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus",
                    f"--web.listen-address={listen}"],
        "volumes": ["./prometheus.yml:/etc/prometheus/prometheus.yml:ro", "prometheus-data:/prometheus"],
        "restart": "unless-stopped",
    }
    grafana = {
        "image": plan.grafana_image,
        "container_name": f"{plan.container_prefix}-grafana",
        "network_mode": "host",
        "environment": [f"GF_SERVER_HTTP_ADDR={plan.bind}", f"GF_SERVER_HTTP_PORT={plan.grafana_port}",
                        # said explicitly: no anonymous viewers unless the spec asks (monitoring.grafana_anonymous)
                        f"GF_AUTH_ANONYMOUS_ENABLED={'true' if plan.grafana_anonymous else 'false'}",
                        *(["GF_AUTH_ANONYMOUS_ORG_ROLE=Viewer"] if plan.grafana_anonymous else []),
                        # never the image's admin/admin: compose refuses to start without a password
                        f"GF_SECURITY_ADMIN_PASSWORD=${{{ADMIN_PASSWORD_ENV}:?export {ADMIN_PASSWORD_ENV}, "
                        "the password of Grafana's admin}"],
        "volumes": ["./grafana/provisioning:/etc/grafana/provisioning:ro",
                    f"./grafana/dashboards:{DASHBOARDS_IN_CONTAINER}:ro", "grafana-data:/var/lib/grafana"],
        "depends_on": ["prometheus"],
        "restart": "unless-stopped",
    }
    document = {
        "name": f"{plan.container_prefix}-monitoring",
        "services": {"prometheus": prometheus, "grafana": grafana},
        "volumes": {"prometheus-data": {}, "grafana-data": {}},
    }
    where = ("both on every interface (monitoring.bind says so)" if plan.every_interface
             else f"both on {plan.bind} only")
    text = (f"{header}\nOn {plan.node} ({plan.address}): export {ADMIN_PASSWORD_ENV}=..., then "
            f"docker compose -f compose.yaml up -d;\nGrafana on port {plan.grafana_port}, Prometheus on "
            f"{plan.prometheus_port}, {where}")
    return yamlout.dump(document, text)


# --- the dashboard ------------------------------------------------------------------------------

# (title, unit, [(PromQL, legend)]); $sel selects this deployment's series
_PANELS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("Tokens per second", "tokens/s", (
        ("sum(rate(vllm:generation_tokens_total{$sel}[1m]))", "generated"),
        ("sum(rate(vllm:prompt_tokens_total{$sel}[1m]))", "prompt"),
    )),
    ("Requests per second", "reqps", (
        ("sum by (finished_reason) (rate(vllm:request_success_total{$sel}[1m]))", "{{finished_reason}}"),
    )),
    ("Time to first token", "s", tuple(
        (f"histogram_quantile({q}, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{{$sel}}[5m])))",
         f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99))),
    ("Inter-token latency", "s", tuple(
        (f"histogram_quantile({q}, sum by (le) (rate(vllm:inter_token_latency_seconds_bucket{{$sel}}[5m])))",
         f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99))),
    ("End-to-end request latency", "s", tuple(
        (f"histogram_quantile({q}, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket{{$sel}}[5m])))",
         f"p{int(q * 100)}") for q in (0.5, 0.95))),
    ("KV cache in use", "percentunit", (("max by (node) (vllm:kv_cache_usage_perc{$sel})", "{{node}}"),)),
    ("Requests running and waiting", "short", (
        ("sum(vllm:num_requests_running{$sel})", "running"),
        ("sum(vllm:num_requests_waiting{$sel})", "waiting"),
    )),
    ("Preemptions per second", "short", (("sum(rate(vllm:num_preemptions_total{$sel}[5m]))", "preempted"),)),
    ("Prefix cache hit rate", "percentunit", ((
        "sum(rate(vllm:prefix_cache_hits_total{$sel}[5m])) / sum(rate(vllm:prefix_cache_queries_total{$sel}[5m]))",
        "hit rate"),)),
)


def dashboard(plan: MonitoringPlan) -> dict[str, Any]:
    selector = f'deployment="{plan.deployment}"'
    panels = []
    for index, (title, unit, queries) in enumerate(_PANELS):
        panels.append({
            "id": index + 1,
            "type": "timeseries",
            "title": title,
            "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
            "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [
                {"refId": chr(ord("A") + n), "expr": expr.replace("$sel", selector), "legendFormat": legend,
                 "datasource": {"type": "prometheus", "uid": DATASOURCE_UID}}
                for n, (expr, legend) in enumerate(queries)
            ],
        })
    return {
        "uid": f"vllmgen-{plan.deployment}"[:40],
        "title": f"vLLM: {plan.deployment}",
        "tags": ["vllm", "vllmgen"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "panels": panels,
    }


def metric_names() -> set[str]:
    """The vLLM metric families the dashboard reads (for checking against a real /metrics)."""
    names = set()
    for _, _, queries in _PANELS:
        for expr, _ in queries:
            names.update(re.findall(r"vllm:[a-z0-9_:]+", expr))
    return names
