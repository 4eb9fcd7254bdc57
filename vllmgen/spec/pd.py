"""The spec language for prefill/decode disaggregation: prefill and decode instance groups behind
vllm-router's P/D mode, the KV cache handed from prefill to decode by a KV connector (NIXL).

Kept apart from ``vllmgen.spec.model``; the cross-field rules are in ``vllmgen.spec.rules.pd``, what runs where
in ``vllmgen.plan.pd``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from vllmgen.spec.formats import Fraction, Model, Name, Port, Text, empty_list
from vllmgen.spec.parallel import ROUTER_POLICIES

# vLLM's own default VLLM_NIXL_SIDE_CHANNEL_PORT
NIXL_SIDE_CHANNEL_PORT = 5600


class KvConnector(Model):
    kind: Literal["nixl"] = Field("nixl", description="the KV connector: nixl (vLLM's NixlConnector)")
    backends: list[Literal["UCX", "LIBFABRIC", "GDS", "GDS_MT", "POSIX", "OBJ", "MOONCAKE"]] = Field(
        default_factory=lambda: ["UCX"], min_length=1,  # type: ignore[arg-type]
        description="NIXL transfer backends (kv_connector_extra_config.backends); UCX is vLLM's default")
    ucx_tls: Text | None = Field(
        None, description="UCX_TLS for every instance, e.g. 'rc,cuda_copy,cuda_ipc' (default: UCX chooses); "
        "UCX_NET_DEVICES comes from each node's ib_hcas, else its nic")


class PdInstance(Model):
    node: Name = Field(description="the node (host) this instance runs on")
    gpu_ids: list[Annotated[int, Field(ge=0, le=255)]] | None = Field(
        None, description="which GPUs of the host it uses (CUDA_VISIBLE_DEVICES / Docker device_ids), "
        "tensor x data parallel of them; needed when instances share a host")
    port: Port = Field(description="its API server's HTTP port on that host")
    side_channel_port: Port = Field(
        NIXL_SIDE_CHANNEL_PORT, description="VLLM_NIXL_SIDE_CHANNEL_PORT: NIXL's handshake port; DP rank r listens "
        "on this port + r")


class PdGroup(Model):
    tensor_parallel_size: int = Field(1, ge=1, description="--tensor-parallel-size of each instance of the group")
    data_parallel_size: int = Field(1, ge=1, description="--data-parallel-size of each instance (in one process)")
    gpu_memory_utilization: Fraction | None = Field(None, description="overrides serve.gpu_memory_utilization")
    policy: Literal[ROUTER_POLICIES] | None = Field(  # type: ignore[valid-type]
        None, description="vllm-router --prefill-policy / --decode-policy (default: router.policy)")
    extra_args: list[Text] = Field(default_factory=empty_list, description="more vllm serve flags for this group")
    instances: list[PdInstance] = Field(min_length=1, description="the group's vLLM instances")

    @property
    def gpus_each(self) -> int:
        return self.tensor_parallel_size * self.data_parallel_size


class Disaggregation(Model):
    connector: KvConnector = Field(default_factory=KvConnector, description="how the KV cache moves")
    prefill: PdGroup = Field(description="instances that compute the prompt (kv_producer)")
    decode: PdGroup = Field(description="instances that generate from the moved KV cache (kv_consumer)")
