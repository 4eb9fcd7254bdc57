"""What a spec expects of one node, as the plain values the host checks take."""

from __future__ import annotations

import os
from collections.abc import Sequence

from vllmgen.doctor import fit, storage
from vllmgen.doctor.checks import CheckResult, skip
from vllmgen.doctor.host import GpuFacts, HostExpectation
from vllmgen.doctor.offline import ImageExpectation, SnapshotExpectation
from vllmgen.doctor.probe import Probe
from vllmgen.plan import parallel
from vllmgen.plan.plan import NodePlan, Plan
from vllmgen.spec.model import Spec

IMAGE_DISK_BYTES = 30 * 1024**3  # a vLLM image unpacked, with room for one rebuild
DOCKER_ROOT = "/var/lib"  # holds Docker's data root on a default install


def node_ports(plan: Plan, spec: Spec, node: NodePlan) -> tuple[int, ...]:
    """Ports this node listens on: the API servers, Ray's GCS, the torch master or DP RPC port, the router (its
    HTTP and its metrics port)."""
    ports = set()
    if node.container.healthcheck is not None:  # an API server: the head, or every node with replicas/hybrid
        ports.add(spec.serve.port)
    if node.role == "head":
        ports.add(spec.serve.port)
        if plan.backend == "ray":
            ports.add(spec.cluster.ray_port)
        if plan.backend == "mp" and parallel.across_nodes(spec):
            ports.add(spec.serve.data_parallel.rpc_port)  # rank 0's DP coordinator
        elif plan.backend == "mp":
            ports.add(spec.cluster.master_port)
    if plan.router is not None and plan.router.node == node.name:
        ports.update((plan.router.port, plan.router.metrics_port))
    return tuple(sorted(ports))


def reads_weights(extra_args: Sequence[str]) -> bool:
    """False when vLLM is told to make up the weights (``--load-format dummy``): then none need be here."""
    for index, arg in enumerate(extra_args):
        flag, equals, value = arg.partition("=")
        if flag == "--load-format":
            value = value if equals else (extra_args[index + 1] if index + 1 < len(extra_args) else "")
            if value == "dummy":
                return False
    return True


def expectation(plan: Plan, spec: Spec, node: NodePlan, *, docker: bool, image_cuda: str | None,
                images: tuple[ImageExpectation, ...] = ()) -> HostExpectation:
    """``images``: those of the node's containers (``doctor.workloads.node_images``), checked when Docker is."""
    source = next(n for n in spec.nodes if n.name == node.name)
    model_path = source.model_host_path or spec.model.host_path
    snapshot = None
    if not model_path and not spec.model.modelscope and plan.kubernetes is None:  # pods have their own cache
        hf_cache = os.path.expanduser(source.hf_cache or spec.model.hf_cache)
        snapshot = SnapshotExpectation(hf_cache, spec.model.source, spec.model.revision)
    shm = None if spec.runtime.ipc_host else storage.parse_size(spec.runtime.shm_size or "64m")
    return HostExpectation(
        gpus=node.gpus,
        gpu_memory_utilization=spec.serve.gpu_memory_utilization,
        image_cuda=image_cuda,
        address=node.address,
        data_nic=source.nic or spec.cluster.nic,
        ports=node_ports(plan, spec, node),
        bind_host="0.0.0.0",
        hcas=tuple(source.ib_hcas if source.ib_hcas is not None else spec.cluster.ib_hcas),
        shm_bytes=shm,
        disk=((DOCKER_ROOT, IMAGE_DISK_BYTES, "the vLLM image"),) if docker else (),
        model_path=os.path.expanduser(model_path) if model_path else None,
        weights=reads_weights(spec.serve.extra_args),
        multi_node=len(spec.nodes) > 1 and plan.backend != "replicas",
        docker=docker,
        docker_image=plan.image.tag,
        registry_mirrors=tuple(spec.docker.registry_mirrors),
        gpu_ids=node.gpu_ids,
        vllm=node.vllm,
        node=node.name,
        offline=plan.offline,
        images=images if docker else (),
        hf_snapshot=snapshot,
    )


def model_fit(probe: Probe, spec: Spec, facts: GpuFacts, expect: HostExpectation) -> list[CheckResult]:
    """Weights + KV cache against the GPUs this host reports, when the model's config.json is here."""
    if not expect.model_path:
        return [skip("model.fit", "no model.host_path: config.json is not on this host (use validate --model-config)")]
    config = probe.read_json(f"{expect.model_path.rstrip('/')}/config.json")
    if config is None:
        return [skip("model.fit", f"no readable config.json in {expect.model_path}")]
    if not facts.gpus:
        return [skip("model.fit", "no GPU inventory to size against")]
    estimate = fit_for_spec(spec, config, facts.gpus[0].memory_total_gib)
    return [fit.check_tp(config, spec.serve.tensor_parallel_size), fit.check_fit(estimate)]


def fit_for_spec(spec: Spec, config: dict, gpu_mem_gib: float) -> fit.Fit:
    serve = spec.serve
    return fit.fit(
        config,
        gpus=spec.total_gpus,
        gpu_mem_gib=gpu_mem_gib,
        util=serve.gpu_memory_utilization or 0.9,
        tp=serve.tensor_parallel_size,
        max_model_len=serve.max_model_len or 4096,
    )
