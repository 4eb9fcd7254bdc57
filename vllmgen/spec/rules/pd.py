"""Rules of prefill/decode disaggregation (``disaggregation:``, ``vllmgen.plan.pd``).

- a router in front (vllm-router's P/D mode is what pairs a prefill with a decode), no Ray/mp group,
  ``serve`` parallel sizes left alone (each group has its own);
- each instance on a known node, with as many GPUs as its tensor x data parallel size, none shared;
- prefill tensor parallel not above decode's (NIXL's transfer plan splits a prefill rank's heads over
  decode ranks, not the other way round, for most architectures);
- per host, every port an instance opens (its API port, one NIXL side-channel port per DP rank)
  clashes with nothing else there (another instance, router and its metrics port, gateway, Prometheus, Grafana);
- the pinned vLLM knows ``--kv-transfer-config`` (its catalog) and is new enough for the NixlConnector.
"""

from __future__ import annotations

from collections.abc import Iterator

from vllmgen.errors import Path, format_path
from vllmgen.plan import pd
from vllmgen.spec import addresses
from vllmgen.spec.gateway import GATEWAY_PORT
from vllmgen.spec.model import Spec
from vllmgen.spec.rules.catalog import catalog_for
from vllmgen.spec.rules.core import OWNED_FLAGS, Finding

PD: Path = ("disaggregation",)
VLLM_DEFAULT_MEMORY = 0.9  # vLLM's --gpu-memory-utilization default
FLAG = "--kv-transfer-config"


def pd_rules(spec: Spec) -> Iterator[Finding]:
    if spec.disaggregation is None:
        return
    yield from _shape(spec)
    known = {node.name for node in spec.nodes}
    if any(i.node not in known for g in ("prefill", "decode")
           for i in pd.group_of(spec.disaggregation, g).instances):
        yield from _nodes(spec)
        return  # the rest reads each instance's node
    yield from _nodes(spec)
    yield from _gpus(spec)
    yield from _ports(spec)
    yield from _env(spec)
    yield from _catalog(spec)


def _shape(spec: Spec) -> Iterator[Finding]:
    pd_spec = spec.disaggregation
    assert pd_spec is not None
    if spec.router is None:
        yield Finding(PD, "prefill/decode disaggregation needs vllm-router in P/D mode in front: add a router: "
                      "section (node, port, policy)")
    if spec.cluster.backend in ("ray", "mp"):
        yield Finding(("cluster", "backend"), f"backend {spec.cluster.backend!r} joins the nodes into one engine; "
                      "prefill and decode instances each serve on their own: leave cluster.backend unset")
    for field in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size"):
        if getattr(spec.serve, field) != 1:
            own = "tensor_parallel_size" if field == "pipeline_parallel_size" else field
            yield Finding(("serve", field), f"with disaggregation each group sets its own parallel sizes: set "
                          f"disaggregation.prefill/decode.{own} instead")
    if pd_spec.prefill.tensor_parallel_size > pd_spec.decode.tensor_parallel_size:
        yield Finding((*PD, "prefill", "tensor_parallel_size"),
                      f"prefill tensor parallel {pd_spec.prefill.tensor_parallel_size} is above decode's "
                      f"{pd_spec.decode.tensor_parallel_size}: NIXL's transfer needs prefill TP <= decode TP for "
                      "most models")
    for group in ("prefill", "decode"):
        for position, arg in enumerate(pd.group_of(pd_spec, group).extra_args):
            flag = arg.split("=", 1)[0]
            if flag == FLAG or flag in OWNED_FLAGS:
                owner = "disaggregation (the connector and each group's role)" if flag == FLAG else OWNED_FLAGS[flag]
                yield Finding((*PD, group, "extra_args", position), f"{flag} is set by vllmgen from {owner}")
    for position, arg in enumerate(spec.serve.extra_args):
        if arg.split("=", 1)[0] == FLAG:
            yield Finding(("serve", "extra_args", position), f"{FLAG} is set by vllmgen from disaggregation")


def _instances(spec: Spec) -> Iterator[tuple[Path, pd.Instance]]:
    for instance in pd.instances(spec):
        yield (*PD, instance.group, "instances", instance.index), instance


def _nodes(spec: Spec) -> Iterator[Finding]:
    assert spec.disaggregation is not None
    names = [node.name for node in spec.nodes]
    for group in ("prefill", "decode"):
        for index, settings in enumerate(pd.group_of(spec.disaggregation, group).instances):
            if settings.node not in names:
                yield Finding((*PD, group, "instances", index, "node"),
                              f"no node named {settings.node!r}; nodes: {', '.join(names)}")
            elif f"{group}-{index}" in names:
                yield Finding((*PD, group, "instances", index),
                              f"this instance is named {group}-{index}, and so is a node: rename the node")


def _gpus(spec: Spec) -> Iterator[Finding]:
    """Each instance has tensor x data parallel GPUs; instances may share a GPU only when their
    gpu_memory_utilization fractions on it add up to at most 1 (vLLM's default is 0.9)."""
    assert spec.disaggregation is not None
    per_host: dict[str, list[tuple[Path, pd.Instance]]] = {}
    for path, instance in _instances(spec):
        per_host.setdefault(instance.host.name, []).append((path, instance))
        wanted = instance.tensor_parallel_size * instance.data_parallel_size
        ids = instance.settings.gpu_ids
        if ids is not None and len(ids) != wanted:
            yield Finding((*path, "gpu_ids"), f"names {len(ids)} GPU(s); a {instance.group} instance has tensor x "
                          f"data parallel = {wanted}")
        if ids is not None and len(set(ids)) != len(ids):
            yield Finding((*path, "gpu_ids"), "names a GPU twice")
        if wanted > instance.host.gpus:
            yield Finding(path, f"needs {wanted} GPU(s); node {instance.host.name} has gpus: {instance.host.gpus}")
    for host, placed in per_host.items():
        node = placed[0][1].host
        users: dict[int, list[tuple[Path, pd.Instance]]] = {}
        for path, instance in placed:
            if instance.settings.gpu_ids is None:
                if len(placed) > 1 and spec.runtime.kind != "kubernetes":  # there the device plugin picks GPUs
                    yield Finding(path, f"{len(placed)} instances share node {host}: each needs gpu_ids")
                continue
            for gpu in dict.fromkeys(instance.settings.gpu_ids):
                users.setdefault(gpu, []).append((path, instance))
        if len(users) > node.gpus:
            yield Finding(placed[-1][0],
                          f"the instances on node {host} use {len(users)} GPUs; it has gpus: {node.gpus}")
        for gpu, sharing in users.items():
            if len(sharing) < 2:
                continue
            fractions = [_memory(spec, instance) for _, instance in sharing]
            if sum(fractions) > 1.0 + 1e-9:
                names = ", ".join(f"{i.name} ({f:g})" for (_, i), f in zip(sharing, fractions, strict=True))
                yield Finding((*sharing[-1][0], "gpu_ids"),
                              f"GPU {gpu} of node {host} is shared by {names}: their gpu_memory_utilization adds up "
                              f"to {sum(fractions):g}, above 1; give each group a smaller gpu_memory_utilization "
                              "or its own GPUs")


def _memory(spec: Spec, instance: pd.Instance) -> float:
    """The fraction of each of its GPUs the instance takes (vLLM's default 0.9)."""
    assert spec.disaggregation is not None
    group = pd.group_of(spec.disaggregation, instance.group)
    chosen = group.gpu_memory_utilization or spec.serve.gpu_memory_utilization
    return chosen if chosen is not None else VLLM_DEFAULT_MEMORY


def _ports(spec: Spec) -> Iterator[Finding]:
    """Every port a P/D deployment opens, per host: one owner each."""
    per_host: dict[str, list[tuple[Path, int, str]]] = {}
    for path, instance in _instances(spec):
        host = addresses.canonical(instance.host.address)
        per_host.setdefault(host, []).append(((*path, "port"), instance.settings.port, ""))
        for rank, port in enumerate(instance.side_channel_ports):
            rank_note = f" (DP rank {rank}'s NIXL side channel: side_channel_port + {rank})" if rank else ""
            if port > 65535:
                yield Finding((*path, "side_channel_port"), f"DP rank {rank} would listen on {port}: above 65535")
            per_host[host].append(((*path, "side_channel_port"), port, rank_note))
    by_name = {node.name: addresses.canonical(node.address) for node in spec.nodes}
    if spec.router is not None:
        router_host = per_host.setdefault(by_name.get(spec.router.node or spec.head.name, ""), [])
        router_host.append((("router", "port"), spec.router.port, ""))
        router_host.append((("router", "metrics_port"), spec.router.metrics_port, " (vllm-router's metrics)"))
    if spec.secrets.api_key is not None:
        gateway = (spec.gateway.node if spec.gateway else None) or (spec.router.node if spec.router else None)
        port = spec.gateway.port if spec.gateway else GATEWAY_PORT
        per_host.setdefault(by_name.get(gateway or spec.head.name, ""), []).append(
            (("gateway", "port") if spec.gateway else ("secrets", "api_key"), port, " (the gateway's port)"))
    if spec.monitoring.enabled:
        where = by_name.get(spec.monitoring.node or spec.head.name, "")
        per_host.setdefault(where, []).append((("monitoring", "prometheus_port"), spec.monitoring.prometheus_port, ""))
        per_host[where].append((("monitoring", "grafana_port"), spec.monitoring.grafana_port, ""))
    for used in per_host.values():
        seen: dict[int, str] = {}
        for path, port, note in used:
            if port in seen:
                yield Finding(path, f"port {port}{note} is already used on this host by {seen[port]}")
            else:
                seen[port] = format_path(path) + note


def _env(spec: Spec) -> Iterator[Finding]:
    sources = [("runtime", "env", name) for name in spec.runtime.env] + [
        ("nodes", index, "env", name) for index, node in enumerate(spec.nodes) for name in node.env]
    for path in sources:
        if str(path[-1]) in pd.OWNED_ENV:
            yield Finding(path, f"{path[-1]} is set by vllmgen from {pd.OWNED_ENV[str(path[-1])]}")


def _catalog(spec: Spec) -> Iterator[Finding]:
    cat, _ = catalog_for(spec)  # serve_flags_exist already warns when the version has no catalog of its own
    if cat.lookup(FLAG) is None:
        yield Finding((*PD, "connector"), f"vLLM {cat.version}'s catalog has no {FLAG}: this vLLM cannot take a KV "
                      "connector")
    version = pd.parse_version(spec.image.vllm_version)
    if version is not None and version < pd.MIN_VLLM:
        yield Finding(("image", "base"), f"vLLM {spec.image.vllm_version} has no NixlConnector (first in "
                      f"{'.'.join(map(str, pd.MIN_VLLM))}): pin vllm/vllm-openai:v0.9.0 or newer for disaggregation")
