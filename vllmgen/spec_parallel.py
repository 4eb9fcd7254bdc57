"""The spec language for data and expert parallelism and for a router in front of API servers.

Kept apart from ``vllmgen.spec`` so that module stays about the deployment's basic shape; the
cross-field rules are in ``vllmgen.rules_parallel``, the flags in ``vllmgen.parallel``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from vllmgen import addresses

# vllmgen.spec imports this module: the few scalar checks needed here are local, so no cycle


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _check(kind: str, ok: bool, message: str) -> None:
    if not ok:
        raise PydanticCustomError(kind, message)


def _address(value: str) -> str:
    _check("address", addresses.parse_ip(value) is not None or addresses.is_hostname(value),
           "expected an IPv4/IPv6 address or a hostname")
    return value


def _name(value: str) -> str:
    _check("name", bool(re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", value)),
           "expected a DNS label: lower-case letters, digits and '-', 1-63 characters")
    return value


def _text(value: str) -> str:
    _check("text", not re.search(r"[\x00-\x1f\x7f]", value), "expected one line of text without control characters")
    return value


def _version(value: str) -> str:
    _check("version", bool(re.fullmatch(r"[0-9]+(\.[0-9]+){1,2}", value)), "expected a version such as 0.1.17")
    return value


def _env_name(value: str) -> str:
    _check("env_name", bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value)),
           "expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
    return value


def _empty_dict() -> dict[str, Any]:
    return {}


Address = Annotated[str, AfterValidator(_address)]
Name = Annotated[str, AfterValidator(_name)]
Text = Annotated[str, AfterValidator(_text)]
Version = Annotated[str, AfterValidator(_version)]
EnvName = Annotated[str, AfterValidator(_env_name)]
Port = Annotated[int, Field(ge=1, le=65535)]

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


def _abs(value: str) -> str:
    _check("abs_path", (value.startswith("/") or value.startswith("~/")) and not re.search(r"[\x00\n:]", value),
           "expected an absolute path (starting with '/' or '~/'), without ':' or newlines")
    return value


class RouterVolume(Model):
    host: Annotated[str, AfterValidator(_abs)] = Field(description="absolute path on the router's host")
    container: Annotated[str, AfterValidator(_abs)] = Field(description="absolute path inside the router container")
    read_only: bool = Field(True, description="mount read-only")


class Router(Model):
    node: Name | None = Field(None, description="the node whose host runs vllm-router (default: the head)")
    port: Port = Field(8080, description="the router's HTTP port on that host")
    policy: Literal[ROUTER_POLICIES] = Field("round_robin", description="vllm-router --policy")  # type: ignore[valid-type]
    version: Version = Field("0.1.17", description="PyPI vllm-router version installed in the router image")
    base_image: Text = Field("python:3.12-slim", description="image the router image is built on (has pip)")
    health_check_interval_s: int = Field(10, ge=1, le=3600, description="seconds between the router's health "
                                         "checks of each worker")
    volumes: list[RouterVolume] = Field(default_factory=list, description="bind mounts for the router container")
    extra_env: dict[EnvName, Text] = Field(default_factory=_empty_dict, description="environment for the router container")
