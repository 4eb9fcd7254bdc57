"""Run every host check for one node: gather facts through a Probe, then apply the pure checks.

`HostExpectation` holds plain values (no spec model), so the spec is wired in by filling it; a
field left None skips its checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vllmgen.doctor import cuda, docker, gpu, network, storage
from vllmgen.doctor.checks import CheckResult, skip
from vllmgen.doctor.offline import ImageExpectation, SnapshotExpectation, check_image, check_snapshot, with_carry
from vllmgen.doctor.probe import ImageUnknown, Probe
from vllmgen.doctor.selection import check_gpu_ids, check_vllm_executable


@dataclass(frozen=True)
class HostExpectation:
    gpus: int | None = None  # GPUs this node should have
    gpu_model: str | None = None  # substring of the nvidia-smi name, e.g. "H100"
    gpu_memory_utilization: float | None = None
    image_cuda: str | None = None  # CUDA major.minor inside the image, e.g. "12.8"
    address: str | None = None  # this node's address in the spec
    data_nic: str | None = None  # GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME
    subnet: str | None = None  # CIDR the data NIC should be on
    ports: tuple[int, ...] = ()
    bind_host: str = "0.0.0.0"
    hcas: tuple[str, ...] = ()  # NCCL_IB_HCA entries
    shm_bytes: int | None = None
    disk: tuple[tuple[str, int, str], ...] = ()  # (path, bytes needed, what for)
    model_path: str | None = None  # host path holding config.json
    weights: bool = True  # vLLM reads the model's weights (False: --load-format dummy, config.json is enough)
    multi_node: bool = False  # the node connects to others (Gloo, NCCL, a DP group)
    docker: bool = True
    docker_image: str | None = None  # for the --gpus all smoke run
    registry_mirrors: tuple[str, ...] = field(default_factory=tuple)
    gpu_ids: tuple[int, ...] | None = None  # nodes[].gpu_ids: these GPUs of the host, not all of them
    vllm: str | None = None  # runtime.kind: process: the vllm executable
    node: str = "this node"  # its name in the spec (for the fixes that name it)
    offline: bool = False  # the spec's offline: true: what apply or vLLM would fetch must be here already
    images: tuple[ImageExpectation, ...] = ()  # the images of this node's containers
    hf_snapshot: SnapshotExpectation | None = None  # the model from the node's Hugging Face cache


@dataclass(frozen=True)
class GpuFacts:
    gpus: list[gpu.Gpu]
    cuda_version: str | None  # the highest CUDA the driver supports (nvidia-smi header)
    results: list[CheckResult]


def gpu_facts(probe: Probe, expect: HostExpectation) -> GpuFacts:
    query = probe.nvidia_smi_query()
    smi_ok = gpu.check_nvidia_smi(query.returncode, query.stderr, query.stdout)
    if smi_ok.status != "ok":
        return GpuFacts([], None, [smi_ok])
    gpus = gpu.parse_gpu_query(query.stdout)
    header = probe.nvidia_smi()
    cuda_version = gpu.parse_cuda_version(header.stdout) if header.returncode == 0 else None
    results = [smi_ok]
    if expect.gpu_ids is not None:
        results.append(check_gpu_ids(gpus, expect.gpu_ids))
    elif expect.gpus is not None:
        results.append(gpu.check_gpu_count(gpus, expect.gpus))
    results.append(gpu.check_gpu_model(gpus, expect.gpu_model))
    results.append(gpu.check_gpu_uniform(gpus))
    if expect.gpu_memory_utilization is not None:
        results.append(gpu.check_gpu_free_memory(gpus, expect.gpu_memory_utilization))
    if expect.image_cuda and gpus:
        results.append(cuda.check_driver_for_cuda(gpus[0].driver_version, expect.image_cuda))
    return GpuFacts(gpus, cuda_version, results)


def network_checks(probe: Probe, expect: HostExpectation) -> list[CheckResult]:
    interfaces = network.parse_addresses(probe.interfaces())
    results = []
    if expect.address:
        results.append(network.check_address_local(expect.address, interfaces))
    if expect.data_nic:
        results.append(network.check_data_nic(expect.data_nic, expect.subnet, interfaces))
    if expect.ports:
        results.append(network.check_ports_free({p: probe.port_error(expect.bind_host, p) for p in expect.ports}))
    results.append(network.check_infiniband(expect.hcas, probe.infiniband_devices()))
    if expect.multi_node:  # recorded one-node runs have no such row
        named = probe.hostname_addresses()
        results.append(network.check_hostname_resolution(named[0] if named else None, named[1] if named else None,
                                                         True, bool(expect.data_nic)))
    return results


def storage_checks(probe: Probe, expect: HostExpectation) -> list[CheckResult]:
    results = []
    if expect.shm_bytes is not None:
        shm = probe.disk_space("/dev/shm")
        results.append(storage.check_shm(shm.total if shm else None, expect.shm_bytes))
    for path, need, what in expect.disk:
        space = probe.disk_space(path)
        results.append(storage.check_free_disk(path, space.free if space else None, need, what))
    if expect.model_path:
        entries = probe.list_dir(expect.model_path)
        index = None
        if entries and storage.INDEX in entries:
            index = probe.read_json(f"{expect.model_path.rstrip('/')}/{storage.INDEX}")
        found = storage.check_model_path(expect.model_path, entries, index, weights=expect.weights)
        results.append(with_carry(found, expect.node) if expect.offline else found)
    if expect.hf_snapshot is not None:
        results.append(check_snapshot(expect.node, probe, expect.hf_snapshot, expect.offline, weights=expect.weights))
    return results


def docker_checks(probe: Probe, expect: HostExpectation) -> list[CheckResult]:
    if not expect.docker:
        if expect.vllm:  # runtime.kind: process
            return [skip("docker", "not used on this node (runtime.kind: process)"), check_vllm_executable(expect.vllm)]
        return [skip("docker", "not used on this node")]
    info, error = probe.docker_info()
    results = [docker.check_daemon(error, info), docker.check_socket_permission(error)]
    results.append(docker.check_nvidia_runtime(info))
    results.append(docker.check_registry_mirrors(info, expect.registry_mirrors))
    for image in expect.images:
        if info is None:
            results.append(skip(f"image.{image.role}", f"{image.reference}: no daemon to ask"))
            continue
        try:
            found = probe.image(image.reference)
        except ImageUnknown as exc:
            results.append(skip(f"image.{image.role}", f"{image.reference}: the engine did not answer ({exc})"))
            continue
        results.append(check_image(expect.node, image, found, expect.offline))
    if info is not None:
        rc, out = probe.docker_gpu_smoke(expect.docker_image)
        results.append(docker.check_gpu_smoke(rc, out))
    else:
        results.append(docker.check_gpu_smoke(None, "no daemon to run it"))
    return results


def check_host(probe: Probe, expect: HostExpectation) -> list[CheckResult]:
    """All checks for one node, in a stable order: GPU, network, storage, Docker."""
    return [
        *gpu_facts(probe, expect).results,
        *network_checks(probe, expect),
        *storage_checks(probe, expect),
        *docker_checks(probe, expect),
    ]
