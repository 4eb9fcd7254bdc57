"""The spec language for data and expert parallelism and for a router in front of API servers.

Kept apart from ``vllmgen.spec.model`` so that module stays about the deployment's basic shape; the
cross-field rules are in ``vllmgen.spec.rules.parallel``, the flags in ``vllmgen.plan.parallel``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from vllmgen.spec.formats import Address, ContainerPath, EnvName, HostPath, ImageRef, Model, Name, Port, Text, Version, empty_dict, empty_list

# vLLM's default --data-parallel-rpc-port (ParallelConfig.data_parallel_rpc_port)
DP_RPC_PORT = 29550
ROUTER_POLICIES = ("random", "round_robin", "cache_aware", "kv_aware", "power_of_two", "consistent_hash",
                   "sticky_least_loaded")


class DataParallel(Model):
    lb: Literal["internal", "hybrid", "external"] = Field(
        "internal", description="load balancing across DP ranks: internal (one API endpoint on the head, other "
        "nodes --headless), hybrid (one API server per node, --data-parallel-hybrid-lb) or external (one API "
        "server per rank, --data-parallel-rank); hybrid and external want a router in front")
    address: Address | None = Field(
        None, description="--data-parallel-address: the IPv4 address of DP rank 0 (default: the head's address)")
    rpc_port: Port = Field(DP_RPC_PORT, description="--data-parallel-rpc-port on that address")
    api_server_count: int | None = Field(None, ge=1, le=64, description="--api-server-count: API server "
                                         "processes per serving node (internal and hybrid)")


class ExpertParallel(Model):
    enabled: bool = Field(False, description="--enable-expert-parallel: experts spread over TP x DP ranks")
    all2all_backend: Text | None = Field(
        None, description="--all2all-backend, e.g. deepep_high_throughput; checked against the vLLM version's choices")
    eplb: bool = Field(False, description="--enable-eplb: expert-parallel load balancing")
    eplb_config: dict[str, Any] | None = Field(None, description="--eplb-config, rendered as JSON (needs eplb: true)")
    gid_index: int | None = Field(
        None, ge=0, le=255, description="RoCE GID index (NCCL_IB_GID_INDEX and NVSHMEM_IB_GID_INDEX)")


class RouterVolume(Model):
    host: HostPath = Field(description="absolute path on the router's host")
    container: ContainerPath = Field(description="absolute path inside the router container")
    read_only: bool = Field(True, description="mount read-only")


class Router(Model):
    node: Name | None = Field(None, description="the node whose host runs vllm-router (default: the head)")
    port: Port = Field(8080, description="the router's HTTP port on that host")
    metrics_port: Port = Field(29000, description="vllm-router's Prometheus metrics port on that host; it listens "
                               "on loopback only (nothing outside the host scrapes it)")
    policy: Literal[ROUTER_POLICIES] = Field("round_robin", description="vllm-router --policy")  # type: ignore[valid-type]
    version: Version = Field("0.1.17", description="PyPI vllm-router version installed in the router image")
    base_image: ImageRef = Field("python:3.12-slim", description="image the router image is built on (has pip); pin the tag")
    health_check_interval_s: int = Field(10, ge=1, le=3600, description="seconds between the router's health "
                                         "checks of each worker")
    volumes: list[RouterVolume] = Field(default_factory=empty_list, description="bind mounts for the router container")
    extra_env: dict[EnvName, Text] = Field(default_factory=empty_dict, description="environment for the router container")
    executable: HostPath | None = Field(
        None, description="process runtime: the vllm-router executable on the router's host (default: vllm-router "
        "on the PATH); only prefill/decode disaggregation runs the router as a process so far")
