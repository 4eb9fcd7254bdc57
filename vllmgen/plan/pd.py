"""Prefill/decode disaggregation: which vLLM instances run where, and what each one is given.

Each instance of ``disaggregation.prefill`` / ``.decode`` becomes a plan node of its own
(``prefill-0``, ``decode-0``, ...) on its host's address, with its own GPUs, port, tensor/data
parallel size, ``--kv-transfer-config`` (NixlConnector, kv_producer on prefill, kv_consumer on
decode) and NIXL side channel; vllm-router runs in P/D mode in front (``vllmgen.plan.router``). Decode
instances come first: the decode side must be up before a prefill hands it anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from vllmgen.plan import exposure
from vllmgen.spec import addresses
from vllmgen.spec.model import Node, Spec
from vllmgen.spec.pd import Disaggregation, PdGroup, PdInstance

Group = Literal["prefill", "decode"]
ROLES: dict[str, str] = {"prefill": "kv_producer", "decode": "kv_consumer"}
CONNECTORS = {"nixl": "NixlConnector"}  # the spec's kind -> vLLM's kv_connector name
# vLLM 0.9.0 is the first release with the V1 NixlConnector (vllm-project/vllm#17751, "[P/D] NIXL Integration")
MIN_VLLM = (0, 9, 0)
SIDE_CHANNEL_HOST_ENV = "VLLM_NIXL_SIDE_CHANNEL_HOST"
SIDE_CHANNEL_PORT_ENV = "VLLM_NIXL_SIDE_CHANNEL_PORT"
OWNED_ENV = {
    SIDE_CHANNEL_HOST_ENV: "the instance's node address (disaggregation)",
    SIDE_CHANNEL_PORT_ENV: "disaggregation.*.instances[].side_channel_port",
    "UCX_NET_DEVICES": "nodes[].ib_hcas / nodes[].nic (disaggregation)",
    "UCX_TLS": "disaggregation.connector.ucx_tls",
}


@dataclass(frozen=True)
class Instance:
    group: Group
    index: int  # within its group
    host: Node
    settings: PdInstance
    tensor_parallel_size: int
    data_parallel_size: int

    @property
    def name(self) -> str:
        return f"{self.group}-{self.index}"

    @property
    def side_channel_ports(self) -> range:
        """One per DP rank: vLLM adds the rank to VLLM_NIXL_SIDE_CHANNEL_PORT."""
        return range(self.settings.side_channel_port, self.settings.side_channel_port + self.data_parallel_size)


def group_of(pd: Disaggregation, group: Group) -> PdGroup:
    return pd.prefill if group == "prefill" else pd.decode


def instances(spec: Spec) -> list[Instance]:
    """Every instance, decode first (started first), then prefill."""
    pd = spec.disaggregation
    if pd is None:
        return []
    hosts = {node.name: node for node in spec.nodes}
    out = []
    for group_name in ("decode", "prefill"):
        group = group_of(pd, group_name)
        for index, settings in enumerate(group.instances):
            out.append(Instance(group_name, index, hosts[settings.node], settings,
                                group.tensor_parallel_size, group.data_parallel_size))
    return out


def bind(spec: Spec, instance: Instance) -> str:
    """Its API server's --host: loopback when the router (and Prometheus) run on its host."""
    return exposure.server_bind(spec, instance.host)


def url(spec: Spec, instance: Instance) -> str:
    host = exposure.reach(bind(spec, instance), instance.host)
    return f"http://{addresses.host_port(host, instance.settings.port)}"


def one_host(spec: Spec) -> bool:
    return len({instance.host.name for instance in instances(spec)}) == 1


def kv_transfer_config(spec: Spec, group: Group) -> str:
    """--kv-transfer-config's JSON: compact, keys sorted (byte-stable)."""
    pd = spec.disaggregation
    assert pd is not None
    config: dict[str, object] = {"kv_connector": CONNECTORS[pd.connector.kind], "kv_role": ROLES[group]}
    if pd.connector.backends != ["UCX"]:  # UCX is the connector's own default
        config["kv_connector_extra_config"] = {"backends": list(pd.connector.backends)}
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def serve_args(spec: Spec, instance: Instance) -> tuple[str, ...]:
    """What this instance adds after the shared serve-config.yaml (later flags win in vLLM's parser)."""
    pd = spec.disaggregation
    assert pd is not None
    group = group_of(pd, instance.group)
    args = ["--port", str(instance.settings.port), "--tensor-parallel-size", str(instance.tensor_parallel_size)]
    if instance.data_parallel_size > 1:
        args += ["--data-parallel-size", str(instance.data_parallel_size)]
    if group.gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", str(group.gpu_memory_utilization)]
    args += ["--kv-transfer-config", kv_transfer_config(spec, instance.group), *group.extra_args]
    return tuple(args)


def ucx_devices(node: Node, spec: Spec) -> str | None:
    """UCX_NET_DEVICES: the node's InfiniBand HCAs (port 1 unless given), else its NIC."""
    hcas = node.ib_hcas if node.ib_hcas is not None else spec.cluster.ib_hcas
    if hcas:
        return ",".join(hca if ":" in hca else f"{hca}:1" for hca in hcas)
    return node.nic or spec.cluster.nic


def env(spec: Spec, instance: Instance) -> dict[str, str]:
    pd = spec.disaggregation
    assert pd is not None
    out = {
        # the address the other side dials for the NIXL handshake: loopback when every instance shares a host
        SIDE_CHANNEL_HOST_ENV: exposure.LOOPBACK if one_host(spec) else instance.host.address,
        SIDE_CHANNEL_PORT_ENV: str(instance.settings.side_channel_port),
    }
    devices = ucx_devices(instance.host, spec)
    if devices:
        out["UCX_NET_DEVICES"] = devices
    if pd.connector.ucx_tls:
        out["UCX_TLS"] = pd.connector.ucx_tls
    return out


def instance_node(spec: Spec, instance: Instance) -> Node:
    """The instance as a node of its own: its host's settings, its own name, GPUs and environment (not
    validated again: the spec was)."""
    host = instance.host
    return host.model_copy(update={
        "name": instance.name, "role": None, "gpus": instance.tensor_parallel_size * instance.data_parallel_size,
        "gpu_ids": instance.settings.gpu_ids, "env": {**host.env, **env(spec, instance)}})


def instance_spec(spec: Spec, instance: Instance) -> Spec:
    """The spec as one instance sees it: one node, its port and parallel sizes, its --host fixed."""
    serve = spec.serve.model_copy(update={
        "host": bind(spec, instance), "port": instance.settings.port,
        "tensor_parallel_size": instance.tensor_parallel_size, "pipeline_parallel_size": 1,
        "data_parallel_size": instance.data_parallel_size})
    return spec.model_copy(update={"nodes": [instance_node(spec, instance)], "serve": serve, "router": None,
                                   "disaggregation": None,
                                   "cluster": spec.cluster.model_copy(update={"backend": None})})


def anchor(spec: Spec, host: str) -> str:
    """The plan node that stands for ``host`` (the first instance on it): the router and the gateway on that
    host are reached through its executor. A host without instances keeps its own name."""
    return next((i.name for i in instances(spec) if i.host.name == host), host)


def parse_version(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    parts = text.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else None
