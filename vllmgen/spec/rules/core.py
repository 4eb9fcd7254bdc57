"""Stage 2b, cross-field rules: what no single field can know on its own.

Each rule is a small generator of ``Finding``s over a spec that already passed the model;
``check_rules`` runs them all, so a user sees every problem at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from vllmgen.errors import Path
from vllmgen.spec import addresses
from vllmgen.spec.container_layout import CACHE_ENV
from vllmgen.spec.formats import floating_image
from vllmgen.spec.model import Spec
from vllmgen.targets.docker.daemon_keys import problems


@dataclass(frozen=True)
class Finding:
    path: Path
    message: str
    severity: Literal["error", "warning"] = "error"


Rule = Callable[[Spec], Iterator[Finding]]

# Flags vllmgen derives from typed fields; in extra_args they would contradict the spec.
OWNED_FLAGS = {
    "--model": "model.source / model.path",
    "--served-model-name": "model.served_name",
    "--host": "serve.host",
    "--port": "serve.port",
    "--api-key": "secrets.api_key (a key on a command line leaks into `ps` and logs): write "
                 "secrets.api_key: {env: VAR_NAME} or {file: /path/to/key}",
    "--hf-token": "secrets.hf_token (a token on a command line leaks into `ps` and logs): write "
                  "secrets.hf_token: {env: HF_TOKEN} or {file: /path/to/token}",
    "--tensor-parallel-size": "serve.tensor_parallel_size",
    "--pipeline-parallel-size": "serve.pipeline_parallel_size",
    "--data-parallel-size": "serve.data_parallel_size",
    "--distributed-executor-backend": "cluster.backend",
    "--nnodes": "the nodes list",
    "--node-rank": "the nodes list",
    "--master-addr": "the head node's address",
    "--master-port": "cluster.master_port",
    "--headless": "the node roles",
    "--trust-remote-code": "model.trust_remote_code",
    "--revision": "model.revision",
    "--gpu-memory-utilization": "serve.gpu_memory_utilization",
    "--max-model-len": "serve.max_model_len",
    "--max-num-seqs": "serve.max_num_seqs",
    "--enable-prefix-caching": "serve.enable_prefix_caching",
    "--no-enable-prefix-caching": "serve.enable_prefix_caching",
    "--enforce-eager": "serve.enforce_eager",
    "--reasoning-parser": "serve.reasoning_parser",
    "--tool-call-parser": "serve.tool_call_parser",
    "--speculative-config": "serve.speculative_config",
    "--config": "the generated serve-config.yaml",
    "--dtype": "model.dtype",
    "--quantization": "model.quantization",
    "--data-parallel-size-local": "each node's GPUs / (tensor x pipeline)",
    "--data-parallel-start-rank": "the nodes list",
    "--data-parallel-rank": "the nodes list (serve.data_parallel.lb: external)",
    "--data-parallel-address": "serve.data_parallel.address",
    "--data-parallel-rpc-port": "serve.data_parallel.rpc_port",
    "--data-parallel-hybrid-lb": "serve.data_parallel.lb",
    "--data-parallel-external-lb": "serve.data_parallel.lb",
    "--api-server-count": "serve.data_parallel.api_server_count",
    "--enable-expert-parallel": "serve.expert_parallel.enabled",
    "--all2all-backend": "serve.expert_parallel.all2all_backend",
    "--enable-eplb": "serve.expert_parallel.eplb",
    "--eplb-config": "serve.expert_parallel.eplb_config",
}

# Environment variables vllmgen sets itself from typed fields.
OWNED_ENV = {
    "VLLM_HOST_IP": "nodes[].address",
    "CUDA_VISIBLE_DEVICES": "nodes[].gpu_ids",
    "NCCL_SOCKET_IFNAME": "cluster.nic / nodes[].nic",
    "GLOO_SOCKET_IFNAME": "cluster.nic / nodes[].nic",
    "NCCL_IB_HCA": "cluster.ib_hcas / nodes[].ib_hcas",
    "HF_TOKEN": "secrets.hf_token",
    "HUGGING_FACE_HUB_TOKEN": "secrets.hf_token",
    "VLLM_API_KEY": "secrets.api_key",
    "HF_ENDPOINT": "model.hf_endpoint",
    "VLLM_USE_MODELSCOPE": "model.modelscope",
    "VLLM_ENGINE_READY_TIMEOUT_S": "serve.ready_timeout",
    "NVSHMEM_BOOTSTRAP_UID_SOCK_IFNAME": "cluster.nic / nodes[].nic (with a DeepEP-class all2all backend)",
    "NVIDIA_GDRCOPY": "serve.expert_parallel (a DeepEP-class all2all backend across nodes)",
    "NCCL_IB_GID_INDEX": "serve.expert_parallel.gid_index",
    "NVSHMEM_IB_GID_INDEX": "serve.expert_parallel.gid_index",
}
# set by vllmgen while caches.keep is on (the default): each points into the kept cache folder
CACHE_ENV_OWNER = "caches.keep (set caches.keep: false to manage this cache yourself)"


def one_head(spec: Spec) -> Iterator[Finding]:
    heads = [i for i, node in enumerate(spec.nodes) if node.role == "head"]
    if len(spec.nodes) == 1:
        if spec.nodes[0].role == "worker":
            yield Finding(("nodes", 0, "role"), "a deployment with one node needs that node to be the head")
        return
    if not heads:
        yield Finding(("nodes",), "exactly one node needs 'role: head'; none has it")
    for index in heads[1:]:
        yield Finding(("nodes", index, "role"), f"exactly one node can be the head; nodes[{heads[0]}] already is")
    for index, node in enumerate(spec.nodes):
        if node.role is None:
            yield Finding(("nodes", index), "with several nodes each needs 'role: head' or 'role: worker'")


def unique_nodes(spec: Spec) -> Iterator[Finding]:
    for field, same in (("name", str.lower), ("address", addresses.canonical)):
        seen: dict[str, int] = {}
        for index, node in enumerate(spec.nodes):
            if field == "address" and node.gpu_ids is not None:
                continue  # nodes sharing a host: rules_process.gpu_selection checks their GPUs
            value = same(getattr(node, field))
            if value in seen:
                yield Finding(("nodes", index, field), f"duplicate {field} {value!r} (also nodes[{seen[value]}].{field})")
            else:
                seen[value] = index


def world_size(spec: Spec) -> Iterator[Finding]:
    if spec.disaggregation is not None:  # each prefill/decode group has its own sizes: spec.rules.pd
        return
    serve = spec.serve
    gpus = " + ".join(str(node.gpus) for node in spec.nodes)
    if spec.cluster.backend == "replicas":  # every node serves a whole copy
        for index, node in enumerate(spec.nodes):
            if node.gpus != serve.world_size:
                yield Finding(("nodes", index, "gpus"), f"each replica serves alone: tensor x pipeline x data parallel"
                              f" = {serve.world_size} must equal this node's GPUs ({node.gpus})")
        return
    if serve.world_size != spec.total_gpus:
        yield Finding(
            ("serve", "tensor_parallel_size"),
            f"tensor x pipeline x data parallel = {serve.tensor_parallel_size} x {serve.pipeline_parallel_size}"
            f" x {serve.data_parallel_size} = {serve.world_size} must equal the GPUs of all nodes"
            f" ({gpus} = {spec.total_gpus})",
        )
    if len(spec.nodes) > 1:
        first = spec.nodes[0].gpus
        for index, node in enumerate(spec.nodes[1:], start=1):
            if node.gpus != first:
                yield Finding(
                    ("nodes", index, "gpus"),
                    f"every node of a multi-node deployment needs the same GPU count (nodes[0] has {first})",
                )


def multi_node(spec: Spec) -> Iterator[Finding]:
    if len(spec.nodes) == 1 or spec.disaggregation is not None:  # P/D instances serve on their own: spec.rules.pd
        return
    if spec.cluster.backend is None:
        yield Finding(("cluster", "backend"), "several nodes need an explicit backend: 'ray', 'mp' or 'replicas'")
    if spec.cluster.backend == "replicas":  # independent servers: no group to connect
        return
    if spec.runtime.network != "host":
        yield Finding(("runtime", "network"), "several nodes need host networking (Ray, NCCL and Gloo connect node to node)")
    for index, node in enumerate(spec.nodes):
        if spec.runtime.kind != "kubernetes" and addresses.parse_ip(node.address) is None:  # pods have their own
            yield Finding(
                ("nodes", index, "address"),
                "multi-node deployments need an IP address here: it becomes VLLM_HOST_IP and the Ray/master address",
            )
    if not spec.cluster.nic and not all(node.nic for node in spec.nodes):
        yield Finding(
            ("cluster", "nic"),
            "no data NIC set: NCCL and Gloo guess an interface and often pick the wrong one; set cluster.nic",
            "warning",
        )


def ports(spec: Spec) -> Iterator[Finding]:
    """Ports that listen on one host (the head's; Prometheus and Grafana on the monitoring node's)."""
    used: dict[Path, int] = {("serve", "port"): spec.serve.port}
    if spec.cluster.backend == "ray":
        used[("cluster", "ray_port")] = spec.cluster.ray_port
    if spec.cluster.backend == "mp" and len(spec.nodes) > 1:
        used[("cluster", "master_port")] = spec.cluster.master_port
    watch = spec.monitoring
    if watch.enabled:
        heads = [node.name for node in spec.nodes if node.role == "head" or len(spec.nodes) == 1]
        if watch.node is not None and watch.node not in heads:
            used = {}  # another host: only the two monitoring ports meet there
        used[("monitoring", "prometheus_port")] = watch.prometheus_port
        used[("monitoring", "grafana_port")] = watch.grafana_port
    seen: dict[int, Path] = {}
    for path, port in used.items():
        if port in seen:
            other = ".".join(map(str, seen[port]))
            yield Finding(path, f"port {port} is already used by {other}")
        seen[port] = path


def monitoring_node(spec: Spec) -> Iterator[Finding]:
    names = [node.name for node in spec.nodes]
    watch = spec.monitoring
    if watch.node is not None and watch.node not in names:
        yield Finding(("monitoring", "node"), f"no node {watch.node!r}; the nodes are {', '.join(names)}")
        return
    if not watch.enabled or spec.runtime.kind == "kubernetes":  # pods: Prometheus annotations, no host stack
        return
    if watch.bind is not None and addresses.parse_ip(watch.bind) is None:
        yield Finding(("monitoring", "bind"), "expected an IP address to listen on (a hostname cannot be bound to)")
    elif watch.bind is None:
        heads = [n for n in spec.nodes if n.role == "head" or len(spec.nodes) == 1]
        where = next((n for n in spec.nodes if n.name == watch.node), heads[0] if heads else None)
        if where is not None and addresses.parse_ip(where.address) is None:
            yield Finding(("monitoring", "bind"), f"{where.name}'s address {where.address!r} is a hostname, which cannot "
                          "be bound to: Prometheus and Grafana listen on 127.0.0.1 only (reach them through an ssh "
                          "tunnel); set monitoring.bind to that host's private IP to serve them there", "warning")


def runtime(spec: Spec) -> Iterator[Finding]:
    if spec.runtime.ipc_host and spec.runtime.shm_size:
        yield Finding(("runtime", "shm_size"), "shm_size has no effect with ipc_host: true; set ipc_host: false to use it")
    if not spec.runtime.ipc_host and not spec.runtime.shm_size:
        yield Finding(("runtime", "ipc_host"), "without ipc_host, set runtime.shm_size (Docker's 64 MB breaks NCCL)")
    sources = [("runtime", "env", name) for name in spec.runtime.env] + [
        ("nodes", index, "env", name) for index, node in enumerate(spec.nodes) for name in node.env
    ]
    for path in sources:
        name = str(path[-1])
        if name in OWNED_ENV:
            yield Finding(path, f"{name} is set by vllmgen from {OWNED_ENV[name]}")
        elif spec.caches.keep and name in CACHE_ENV:
            yield Finding(path, f"{name} is set by vllmgen from {CACHE_ENV_OWNER}")


def image(spec: Spec) -> Iterator[Finding]:
    if floating_image(spec.image.base):
        yield Finding(
            ("image", "base"),
            "unpinned base image ('latest' moves): pin a release tag such as vllm/vllm-openai:v0.32.0",
            "warning",
        )
    others = [(("router", "base_image"), spec.router.base_image, "python:3.12-slim")] if spec.router else []
    if spec.monitoring.enabled:
        others += [(("monitoring", "prometheus_image"), spec.monitoring.prometheus_image, "prom/prometheus:v3.5.0"),
                   (("monitoring", "grafana_image"), spec.monitoring.grafana_image, "grafana/grafana:12.1.1")]
    for path, ref, example in others:
        if floating_image(ref):
            yield Finding(path, f"unpinned image ('latest' moves): pin a release tag such as {example}", "warning")
    if spec.image.vllm_extras and not spec.image.vllm_version:
        yield Finding(("image", "vllm_extras"), "vLLM extras are pinned to the base image's version: pin image.base to a vX.Y.Z tag")
    if spec.image.uv_index_url and not spec.image.pip_index_url:
        yield Finding(("image", "uv_index_url"), "uv_index_url without pip_index_url: pip keeps using PyPI", "warning")


def model(spec: Spec) -> Iterator[Finding]:
    source = spec.model.source
    if spec.model.host_path is None and any(node.model_host_path for node in spec.nodes):
        yield Finding(("model", "host_path"), "nodes override model_host_path, so model.host_path is needed too")
    if spec.model.host_path is None and (source.count("/") != 1 or source.startswith("/") or " " in source):
        yield Finding(("model", "source"), "expected a Hugging Face repo id 'org/name' (or set model.host_path)")


def non_finite(value: Any, path: Path) -> Iterator[Path]:
    if isinstance(value, float) and not math.isfinite(value):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from non_finite(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from non_finite(item, (*path, index))


def finite_numbers(spec: Spec) -> Iterator[Finding]:
    """.inf and .nan would be written as JSON Infinity/NaN, which Docker and vLLM refuse."""
    for root, value in ((("docker", "daemon"), spec.docker.daemon),
                        (("serve", "speculative_config"), spec.serve.speculative_config)):
        for path in non_finite(value, root):
            yield Finding(path, "expected a finite number: .inf and .nan would be written as Infinity and NaN, which JSON does not have")


def daemon_values(spec: Spec) -> Iterator[Finding]:
    """Values Docker would refuse for daemon.json keys it knows: found here, not after a restart."""
    for path, message in problems({**spec.docker.daemon, "registry-mirrors": spec.docker.registry_mirrors}):
        if path[0] == "registry-mirrors":
            yield Finding(("docker", "registry_mirrors", *path[1:]), message)
        else:
            yield Finding(("docker", "daemon", *path), message)
    listen = spec.docker.daemon.get("hosts")
    if isinstance(listen, list) and spec.docker.daemon.get("tlsverify") is not True:
        for index, host in enumerate(listen):
            if isinstance(host, str) and host.strip().lower().startswith("tcp://"):
                yield Finding(("docker", "daemon", "hosts", index),
                              "dockerd would listen on tcp:// without verifying clients (tlsverify: true with "
                              "tlscacert, tlscert, tlskey): whoever reaches that port controls the host, and reads "
                              "every container's secrets; use unix:// and reach it through ssh://")


def serve_options(spec: Spec) -> Iterator[Finding]:
    config = spec.serve.speculative_config
    if config is not None and not isinstance(config.get("method"), str):
        yield Finding(("serve", "speculative_config"), "speculative_config needs a 'method' (e.g. method: qwen3_next_mtp)")
    # extra_args are checked in vllmgen.spec.rules.catalog, where the flag catalog resolves aliases
    # (-tp) to the canonical names OWNED_FLAGS lists


RULES: list[Rule] = [
    one_head, unique_nodes, world_size, multi_node, ports, monitoring_node, runtime, image, model, finite_numbers,
    daemon_values, serve_options,
]
