"""Rules of the front door and of what listens where (``vllmgen.plan.exposure`` decides the addresses).

- a ``gateway:`` section needs ``secrets.api_key`` (the gateway is the key's check) and a known node;
- its public port must not clash with another port on its node (API server, router, Ray, torch
  master, Prometheus, Grafana);
- without an API key, an API server or router that listens beyond loopback answers anyone who
  reaches it (vLLM's other paths and the router's /add_worker too): a warning (an error with --strict);
- with the gateway, an explicit ``serve.host`` on every interface lets clients around it: a warning.
"""

from __future__ import annotations

from collections.abc import Iterator

from vllmgen.errors import Path
from vllmgen.plan import exposure
from vllmgen.spec.gateway import GATEWAY_PORT
from vllmgen.spec.model import Spec
from vllmgen.spec.rules.core import Finding


def gateway_rules(spec: Spec) -> Iterator[Finding]:
    names = [node.name for node in spec.nodes]
    if len(spec.nodes) > 1 and sum(node.role == "head" for node in spec.nodes) != 1:
        return  # where things listen follows from the head: rules.one_head reports it first
    if spec.gateway is not None:
        if spec.secrets.api_key is None:
            yield Finding(("gateway",), "the gateway checks the API key: set secrets.api_key (with a key the "
                          "gateway is always on)")
            return
        if spec.gateway.node is not None and spec.gateway.node not in names:
            yield Finding(("gateway", "node"), f"no node {spec.gateway.node!r}; the nodes are {', '.join(names)}")
            return
    if exposure.gateway_on(spec):
        yield from _gateway_port(spec)
        if spec.serve.host in exposure.EVERY_INTERFACE:
            yield Finding(("serve", "host"), f"{spec.serve.host or 'every address'}: the API servers listen on every "
                          "interface, so a client can go around the gateway (and its key check); leave serve.host "
                          "unset", "warning")
        return
    yield from _open_without_key(spec)


def _gateway_port(spec: Spec) -> Iterator[Finding]:
    node = exposure.gateway_node(spec)
    assert node is not None
    port = spec.gateway.port if spec.gateway else GATEWAY_PORT
    where: Path = ("gateway", "port") if spec.gateway else ("secrets", "api_key")
    used: dict[Path, int] = {}
    if node.name in {n.name for n in exposure.api_server_nodes(spec)}:
        used[("serve", "port")] = spec.serve.port
    if spec.router is not None and (spec.router.node or spec.head.name) == node.name:
        used[("router", "port")] = spec.router.port
        used[("router", "metrics_port")] = spec.router.metrics_port
    if node.name == spec.head.name:
        if spec.cluster.backend == "ray":
            used[("cluster", "ray_port")] = spec.cluster.ray_port
        if len(spec.nodes) > 1 and spec.cluster.backend == "mp":
            used[("cluster", "master_port")] = spec.cluster.master_port
    if spec.monitoring.enabled and (spec.monitoring.node or spec.head.name) == node.name:
        used[("monitoring", "prometheus_port")] = spec.monitoring.prometheus_port
        used[("monitoring", "grafana_port")] = spec.monitoring.grafana_port
    for path, other in used.items():
        if other == port:
            yield Finding(where, f"the gateway's port {port} on node {node.name} is already used by "
                          f"{'.'.join(map(str, path))}")


def _open_without_key(spec: Spec) -> Iterator[Finding]:
    if spec.serve.host is not None and exposure.beyond_loopback(spec.serve.host):
        open_servers: list[tuple[Path, str]] = [(("serve", "host"), spec.serve.host)]
    else:
        index = {node.name: i for i, node in enumerate(spec.nodes)}
        open_servers = [(("nodes", index[node.name], "address"), exposure.server_bind(spec, node))
                        for node in exposure.api_server_nodes(spec)
                        if exposure.beyond_loopback(exposure.server_bind(spec, node))]
    for path, bind in open_servers[:1]:
        yield Finding(path, f"no secrets.api_key, and the API server listens on {bind} (beyond loopback): anyone who "
                      "reaches it gets completions, /invocations, /tokenize and /metrics; set secrets.api_key to put "
                      "the gateway in front", "warning")
    if spec.router is not None and exposure.beyond_loopback(exposure.router_bind(spec)):
        yield Finding(("router",), f"no secrets.api_key, and vllm-router listens on {exposure.router_bind(spec)}: "
                      "its /add_worker and /remove_worker answer anyone who reaches it (no key protects them); set "
                      "secrets.api_key to put the gateway in front", "warning")
