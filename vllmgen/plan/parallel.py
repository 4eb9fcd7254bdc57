"""Data and expert parallelism across nodes: which ranks each node runs and the flags that say so.

vLLM's data parallelism across hosts is not torch.distributed's ``--nnodes``: each node runs
``vllm serve`` with its local rank count and first rank, and rank 0's address and RPC port; how
requests reach the ranks (internal, hybrid, external load balancing) decides which nodes run an
API server. Expert parallelism adds its flags on every node and a few variables and container
options for NVSHMEM/DeepEP across hosts. Pure: the plan asks, this module answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vllmgen.spec.model import Node, Spec

# all2all backends that go through NVSHMEM/GDRCopy between hosts (DeepEP and its kin)
NVSHMEM_BACKENDS = ("deepep_high_throughput", "deepep_low_latency", "deepep_v2", "nixl_ep")


@dataclass(frozen=True)
class Ranks:
    """The DP ranks one node runs: ``local`` of them, starting at ``start``."""

    local: int
    start: int


def ordered(spec: Spec) -> list[Node]:
    """Plan order: the head (DP rank 0's node) first, then the others as listed."""
    head = spec.head
    return [head, *(node for node in spec.nodes if node is not head)]


def across_nodes(spec: Spec) -> bool:
    """Data parallelism whose ranks span several hosts (vLLM's --data-parallel-* flags per node)."""
    return len(spec.nodes) > 1 and spec.cluster.backend == "mp" and spec.serve.data_parallel_size > 1


def replicas(spec: Spec) -> bool:
    return spec.cluster.backend == "replicas"


def rank_gpus(spec: Spec) -> int:
    """GPUs one DP rank uses."""
    return spec.serve.tensor_parallel_size * spec.serve.pipeline_parallel_size


def ranks(spec: Spec, ordered: list[Node]) -> list[Ranks]:
    """Per node in plan order (head first): its local rank count and first global rank."""
    out, start = [], 0
    for node in ordered:
        local = max(1, node.gpus // rank_gpus(spec))
        out.append(Ranks(local, start))
        start += local
    return out


def dp_address(spec: Spec) -> str:
    return spec.serve.data_parallel.address or spec.head.address


def shared_options(spec: Spec) -> dict[str, Any]:
    """Options every node shares (they go to serve-config.yaml)."""
    options: dict[str, Any] = {}
    dp = spec.serve.data_parallel
    if across_nodes(spec):
        options["data-parallel-address"] = dp_address(spec)
        options["data-parallel-rpc-port"] = dp.rpc_port
        if dp.lb == "hybrid":
            options["data-parallel-hybrid-lb"] = True
    if dp.api_server_count is not None and not across_nodes(spec):
        options["api-server-count"] = dp.api_server_count  # across nodes: node_args, serving nodes only
    ep = spec.serve.expert_parallel
    if ep.enabled:
        options["enable-expert-parallel"] = True
        if ep.all2all_backend:
            options["all2all-backend"] = ep.all2all_backend
        if ep.eplb:
            options["enable-eplb"] = True
        if ep.eplb_config is not None:
            options["eplb-config"] = json.dumps(ep.eplb_config, sort_keys=True, separators=(",", ":"))
    return options


def node_args(spec: Spec, ordered: list[Node], index: int) -> tuple[str, ...]:
    """The flags only this node has, after the shared ones."""
    if not across_nodes(spec):
        return ()
    mine = ranks(spec, ordered)[index]
    lb = spec.serve.data_parallel.lb
    if lb == "external":  # one server per rank; the rules keep one rank per node
        return ("--data-parallel-rank", str(mine.start))
    args = ["--data-parallel-size-local", str(mine.local)]
    if index:
        args += ["--data-parallel-start-rank", str(mine.start)]
        if lb == "internal":
            args.append("--headless")
    count = spec.serve.data_parallel.api_server_count
    if count is not None and serves_http(spec, index):  # vLLM refuses --api-server-count with --headless
        args += ["--api-server-count", str(count)]
    return tuple(args)


def serves_http(spec: Spec, index: int) -> bool:
    """Whether the node at plan position ``index`` runs an API server."""
    if replicas(spec):
        return True
    if across_nodes(spec):
        return index == 0 or spec.serve.data_parallel.lb != "internal"
    return index == 0


def needs_nvshmem(spec: Spec) -> bool:
    ep = spec.serve.expert_parallel
    return ep.enabled and len(spec.nodes) > 1 and (ep.all2all_backend or "") in NVSHMEM_BACKENDS


def env(spec: Spec, node: Node) -> dict[str, str]:
    """Variables for DP/EP across hosts: NVSHMEM's bootstrap NIC, RoCE GID indexes, GDRCopy."""
    out: dict[str, str] = {}
    nic = node.nic or spec.cluster.nic
    ep = spec.serve.expert_parallel
    if needs_nvshmem(spec):
        if nic:
            out["NVSHMEM_BOOTSTRAP_UID_SOCK_IFNAME"] = nic
        out["NVIDIA_GDRCOPY"] = "enabled"  # the container toolkit then exposes /dev/gdrdrv
    if ep.gid_index is not None:
        out["NCCL_IB_GID_INDEX"] = str(ep.gid_index)
        out["NVSHMEM_IB_GID_INDEX"] = str(ep.gid_index)
    return out


def cap_add(spec: Spec, hcas: list[str]) -> tuple[str, ...]:
    """IPC_LOCK for RDMA memory registration; SYS_RAWIO besides it for NVSHMEM/DeepEP."""
    if not hcas:
        return ()
    return ("IPC_LOCK", "SYS_RAWIO") if needs_nvshmem(spec) else ("IPC_LOCK",)
