"""Cross-field rules for data/expert parallelism, replicas and the router.

DP across hosts fails late and far from the spec when a layout is off (a rank short, a hostname
resolving to 127.0.1.1 splitting the group, a backend the image lacks), so these are checked here.
"""

from __future__ import annotations

from collections.abc import Iterator

from vllmgen.errors import Path
from vllmgen.plan import parallel
from vllmgen.spec import addresses
from vllmgen.spec.model import Spec
from vllmgen.spec.rules import catalog as flag_catalog
from vllmgen.spec.rules.core import Finding, non_finite

DP = ("serve", "data_parallel")
EP = ("serve", "expert_parallel")


def layout(spec: Spec) -> Iterator[Finding]:
    serve, dp = spec.serve, spec.serve.data_parallel
    if spec.cluster.backend == "replicas":
        if dp.lb != "internal":
            yield Finding((*DP, "lb"), f"lb: {dp.lb} spreads one DP group over nodes; with backend 'replicas' each "
                          "node is its own deployment and the router balances between them: remove it")
        return
    several = len(spec.nodes) > 1
    if serve.data_parallel_size > 1 and several:
        if spec.cluster.backend == "ray":
            yield Finding(("cluster", "backend"), "data parallelism across nodes runs with backend 'mp' here "
                          "(vLLM's --data-parallel-* flags per node); the Ray DP backend is not supported")
            return
        per_rank = parallel.rank_gpus(spec)
        for index, node in enumerate(spec.nodes):
            if node.gpus % per_rank:
                yield Finding(("nodes", index, "gpus"), f"each node needs whole DP ranks: {node.gpus} GPUs is not "
                              f"a multiple of tensor x pipeline = {per_rank}")
            elif dp.lb == "hybrid" and node.gpus // per_rank == 1:
                # vLLM turns hybrid with one local rank into external LB (arg_utils); 0.32.0's API
                # server then stops at `assert self.stats_update_address is not None` (measured here)
                yield Finding((*DP, "lb"), f"nodes[{index}] holds one DP rank: vLLM switches hybrid to external load "
                              "balancing there; write lb: external")
                break
            elif dp.lb == "external" and node.gpus // per_rank > 1:
                yield Finding((*DP, "lb"), f"external load balancing runs one rank per node here, and "
                              f"nodes[{index}] holds {node.gpus // per_rank}; use lb: hybrid (one API server per node)")
                break
    elif dp.lb != "internal":
        yield Finding((*DP, "lb"), f"lb: {dp.lb} spreads DP ranks over nodes: it needs serve.data_parallel_size > 1 "
                      "and several nodes with backend 'mp'")
    if dp.lb == "external" and parallel.across_nodes(spec) and not spec.serve.expert_parallel.enabled:
        yield Finding((*DP, "lb"), "vLLM refuses external DP for non-MoE models ('Non-MoE models do not support "
                      "external data parallel mode', measured on 0.32.0); for a dense model use backend: replicas",
                      "warning")
    if dp.address is not None and not parallel.across_nodes(spec):
        yield Finding((*DP, "address"), "the DP address is only used when DP ranks span several nodes")
    if dp.api_server_count is not None and dp.lb == "external":
        yield Finding((*DP, "api_server_count"), "external load balancing runs one API server per rank; "
                      "api_server_count applies to internal and hybrid")


def dp_address(spec: Spec) -> Iterator[Finding]:
    """vLLM wants rank 0's IPv4 literal: a default or a name resolving to loopback splits the group."""
    if not parallel.across_nodes(spec) or spec.runtime.kind == "kubernetes":  # pods resolve the leader's IP
        return
    dp = spec.serve.data_parallel
    head = spec.nodes.index(spec.head)
    path: Path = (*DP, "address") if dp.address else ("nodes", head, "address")
    address = parallel.dp_address(spec)
    ip = addresses.parse_ip(address)
    if ip is None:
        yield Finding(path, "the DP address must be an IPv4 address: a hostname may resolve to 127.0.1.1 on a "
                      "node and split the DP group")
    elif ip.version == 6:
        yield Finding(path, "the DP address must be an IPv4 address: vLLM's DP coordinator takes IPv4 literals")
    elif ip.is_loopback or ip.is_unspecified:
        yield Finding(path, f"{address} is not reachable from the other nodes: give rank 0's own IPv4 address")
    elif dp.address and all(addresses.canonical(n.address) != addresses.canonical(address) for n in spec.nodes):
        yield Finding(path, "the DP address is rank 0's: it must be the head's address", "warning")


def expert(spec: Spec) -> Iterator[Finding]:
    ep = spec.serve.expert_parallel
    if not ep.enabled:
        for field in ("all2all_backend", "eplb"):
            if getattr(ep, field):
                yield Finding((*EP, field), f"{field} needs expert_parallel.enabled: true")
    if ep.eplb_config is not None and not ep.eplb:
        yield Finding((*EP, "eplb_config"), "eplb_config needs eplb: true (--enable-eplb)")
    if ep.eplb_config is not None:
        for path in non_finite(ep.eplb_config, (*EP, "eplb_config")):
            yield Finding(path, "expected a finite number: JSON has no Infinity or NaN")
    if ep.gid_index is not None and not (spec.cluster.ib_hcas or any(n.ib_hcas for n in spec.nodes)):
        yield Finding((*EP, "gid_index"), "a RoCE GID index without InfiniBand/RoCE HCAs (cluster.ib_hcas) has no "
                      "effect", "warning")


def router(spec: Spec) -> Iterator[Finding]:
    several_servers = spec.cluster.backend == "replicas" or (
        parallel.across_nodes(spec) and spec.serve.data_parallel.lb != "internal")
    if spec.router is None:
        if several_servers:
            what = ("cluster.backend: replicas" if spec.cluster.backend == "replicas"
                    else f"lb: {spec.serve.data_parallel.lb}")
            path: Path = ("cluster", "backend") if spec.cluster.backend == "replicas" else (*DP, "lb")
            yield Finding(path, f"{what} leaves one API server per node: add a router (router: {{}}) or your own "
                          "load balancer in front", "warning")
        return
    if not spec.runtime.in_containers and spec.disaggregation is None:
        yield Finding(("router",), "the router runs in a container: not supported with runtime.kind: process yet; "
                      "run vllm-router yourself in front of the nodes")
    names = [node.name for node in spec.nodes]
    if spec.router.node is not None and spec.router.node not in names:
        yield Finding(("router", "node"), f"no node named {spec.router.node!r}; nodes: {', '.join(names)}")


def host_ports(spec: Spec) -> Iterator[Finding]:
    """Ports on one host do not clash: API, DP RPC, router (HTTP and metrics), Prometheus, Grafana; the router's
    with the head's Ray or torch.distributed port too."""
    head = spec.head.name
    per_host: dict[str, list[tuple[Path, int]]] = {}

    def add(node: str | None, path: Path, port: int) -> None:
        per_host.setdefault(node or head, []).append((path, port))

    every_node = spec.cluster.backend == "replicas" or (
        parallel.across_nodes(spec) and spec.serve.data_parallel.lb != "internal")
    for node in spec.nodes:
        if every_node or node is spec.head:
            add(node.name, ("serve", "port"), spec.serve.port)
    if parallel.across_nodes(spec):
        add(head, (*DP, "rpc_port"), spec.serve.data_parallel.rpc_port)
    if spec.router is not None:
        add(spec.router.node, ("router", "port"), spec.router.port)
        add(spec.router.node, ("router", "metrics_port"), spec.router.metrics_port)
        if spec.monitoring.enabled:
            add(spec.monitoring.node, ("monitoring", "prometheus_port"), spec.monitoring.prometheus_port)
            add(spec.monitoring.node, ("monitoring", "grafana_port"), spec.monitoring.grafana_port)
    for host, used in per_host.items():
        seen: dict[int, Path] = {}
        for path, port in used:
            if port in seen and seen[port] != path:
                other = ".".join(map(str, seen[port]))
                yield Finding(path, f"port {port} on node {host} is already used by {other}")
            seen.setdefault(port, path)
    if spec.router is not None and (spec.router.node or head) == head:  # rules.ports checks these among themselves
        cluster: dict[int, Path] = {}
        if spec.cluster.backend == "ray":
            cluster[spec.cluster.ray_port] = ("cluster", "ray_port")
        if spec.cluster.backend == "mp" and len(spec.nodes) > 1:
            cluster[spec.cluster.master_port] = ("cluster", "master_port")
        for path, port in ((("router", "port"), spec.router.port), (("router", "metrics_port"), spec.router.metrics_port)):
            if port in cluster:
                yield Finding(path, f"port {port} on node {head} is already used by {'.'.join(map(str, cluster[port]))}")


def catalog_flags(spec: Spec) -> Iterator[Finding]:
    """The all2all backend among the version's choices; a warning for each flag the layout needs
    that the version's catalog lacks (an older vLLM)."""
    cat, _ = flag_catalog.catalog_for(spec)
    backend = spec.serve.expert_parallel.all2all_backend
    info = cat.lookup("--all2all-backend")
    if backend is not None and info is not None and info.choices and backend not in info.choices:
        hint = cat.suggest(backend, [str(choice) for choice in info.choices])
        tail = f"did you mean {hint!r}?" if hint else f"choices: {', '.join(map(str, info.choices))}"
        yield Finding((*EP, "all2all_backend"), f"vLLM {cat.version} has no all2all backend {backend!r}; {tail}")
    heads = parallel.ordered(spec)
    needed = [*parallel.shared_options(spec)]
    for index in range(len(heads)):
        needed += [arg[2:] for arg in parallel.node_args(spec, heads, index) if arg.startswith("--")]
    for flag in dict.fromkeys(needed):
        if cat.lookup(f"--{flag}") is None:
            yield Finding(DP if "data-parallel" in flag or flag == "api-server-count" else EP,
                          f"vLLM {cat.version} has no flag --{flag}, which this layout needs: pin a newer image.base",
                          "warning")


RULES = [layout, dp_address, expert, router, host_ports, catalog_flags]


def parallel_rules(spec: Spec) -> Iterator[Finding]:
    # without exactly one head there is no rank 0 to reason about; rules.one_head says so
    if len(spec.nodes) > 1 and sum(node.role == "head" for node in spec.nodes) != 1:
        yield from expert(spec)
        return
    for rule in RULES:
        yield from rule(spec)
