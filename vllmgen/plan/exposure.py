"""Who may reach what: the one place that decides each listening address of a deployment.

The gateway alone listens on the public address. Behind it, an API server or the router listens on
loopback when everything that talks to it runs on its own node, and otherwise on the node's own
(private) address; never on every interface unless the spec says so (``serve.host``,
``gateway.address``). What talks to an API server: the router (or, without one, the gateway, or
without a gateway the clients themselves), Prometheus, and vllmgen's own checks, which come from
another machine when the node is driven through an ``ssh://`` or ``tcp://`` docker_host.
"""

from __future__ import annotations

from vllmgen.plan import parallel
from vllmgen.spec import addresses
from vllmgen.spec.model import Node, Spec

LOOPBACK = "127.0.0.1"
EVERY_INTERFACE = ("0.0.0.0", "::", "")


def gateway_on(spec: Spec) -> bool:
    """With an API key there is always a front door; without one there is none."""
    return spec.secrets.api_key is not None


def gateway_node(spec: Spec) -> Node | None:
    if not gateway_on(spec):
        return None
    wanted = (spec.gateway.node if spec.gateway else None) or (spec.router.node if spec.router else None)
    return next((node for node in spec.nodes if node.name == wanted), spec.head)


def private_bind(node: Node) -> str:
    """The node's own address when it is an IP; a hostname cannot be bound to, so every interface."""
    return node.address if addresses.parse_ip(node.address) else "0.0.0.0"


def _checked_from_here(spec: Spec, node: Node) -> bool:
    """vllmgen's own checks run on the node itself (the process runtime, a local engine)."""
    return not spec.runtime.in_containers or not (node.docker_host or "").startswith(("ssh://", "tcp://"))


def _node_named(spec: Spec, name: str | None) -> Node:
    return next((node for node in spec.nodes if node.name == name), spec.head)


def _only_local(spec: Spec, node: Node, consumers: list[Node | None]) -> bool:
    """None among ``consumers`` stands for the clients: they are never local."""
    return _checked_from_here(spec, node) and all(c is not None and c.name == node.name for c in consumers)


def server_bind(spec: Spec, node: Node) -> str:
    """``vllm serve --host`` of ``node``'s API server."""
    if spec.serve.host is not None:
        return spec.serve.host
    front: Node | None = None  # the clients, when nothing stands in front
    if spec.router is not None:
        front = _node_named(spec, spec.router.node)
    elif gateway_on(spec):
        front = gateway_node(spec)
    consumers = [front]
    if spec.monitoring.enabled:
        consumers.append(_node_named(spec, spec.monitoring.node))
    return LOOPBACK if _only_local(spec, node, consumers) else private_bind(node)


def router_bind(spec: Spec) -> str:
    """vllm-router's ``--host``: its admin paths (/add_worker ...) have no authentication, so it faces
    only the gateway (and vllmgen's checks); without a gateway it faces the clients."""
    assert spec.router is not None
    node = _node_named(spec, spec.router.node)
    return LOOPBACK if _only_local(spec, node, [gateway_node(spec)]) else private_bind(node)


def reach(bind: str, node: Node) -> str:
    """The address others use for something bound to ``bind`` on ``node``."""
    return node.address if bind in EVERY_INTERFACE else bind


def server_url(spec: Spec, node: Node) -> str:
    return f"http://{addresses.host_port(reach(server_bind(spec, node), node), spec.serve.port)}"


def api_server_nodes(spec: Spec) -> list[Node]:
    """Every node that runs an API server, head first."""
    return [node for index, node in enumerate(parallel.ordered(spec)) if parallel.serves_http(spec, index)]


def api_servers(spec: Spec) -> tuple[tuple[str, str], ...]:
    """(node, URL) of every API server, head first: the one list the router's workers, Plan.server_urls
    (and so the runner's servers.api_servers) are read from; P/D's instances replace it (plan.pd)."""
    return tuple((node.name, server_url(spec, node)) for node in api_server_nodes(spec))


def beyond_loopback(bind: str) -> bool:
    ip = addresses.parse_ip(bind)
    return ip is None or not ip.is_loopback
