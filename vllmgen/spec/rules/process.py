"""Rules for the process runtime and per-node GPU selection (``nodes[].gpu_ids``).

Two nodes may share a host (one address) when each names its GPUs and the sets do not overlap;
a node's ``gpu_ids`` has exactly ``gpus`` entries, none twice. The process runtime needs to know
where vLLM is on every host (``python_env`` or ``vllm``), and Docker-only options are refused there.
"""

from __future__ import annotations

from collections.abc import Iterator

from vllmgen.spec import addresses
from vllmgen.spec.rules.core import Finding
from vllmgen.spec.model import Node, Spec


def node_vllm(spec: Spec, node: Node) -> str | None:
    """The vllm executable this node runs (process runtime): node over runtime, vllm over python_env."""
    if node.vllm or node.python_env:
        return node.vllm or f"{node.python_env.rstrip('/')}/bin/vllm"
    if spec.runtime.vllm or spec.runtime.python_env:
        return spec.runtime.vllm or f"{spec.runtime.python_env.rstrip('/')}/bin/vllm"  # type: ignore[union-attr]
    return None


def gpu_selection(spec: Spec) -> Iterator[Finding]:
    by_host: dict[str, list[int]] = {}
    for index, node in enumerate(spec.nodes):
        by_host.setdefault(addresses.canonical(node.address), []).append(index)
        if node.gpu_ids is None:
            continue
        if len(node.gpu_ids) != node.gpus:
            yield Finding(("nodes", index, "gpu_ids"),
                          f"names {len(node.gpu_ids)} GPU(s) but the node has gpus: {node.gpus}")
        seen: set[int] = set()
        for position, gpu in enumerate(node.gpu_ids):
            if gpu in seen:
                yield Finding(("nodes", index, "gpu_ids", position), f"GPU {gpu} is listed twice")
            seen.add(gpu)
    for indices in by_host.values():
        if len(indices) < 2:
            continue
        nodes = [spec.nodes[i] for i in indices]
        if all(node.gpu_ids is None for node in nodes):
            continue  # rules.unique_nodes reports the duplicate address
        for i, node in zip(indices, nodes, strict=True):
            if node.gpu_ids is None:
                yield Finding(("nodes", i, "address"),
                              f"nodes {', '.join(f'nodes[{j}]' for j in indices)} share the host {node.address}: "
                              "each needs gpu_ids, naming different GPUs")
        owner: dict[int, int] = {}
        for i, node in zip(indices, nodes, strict=True):
            for position, gpu in enumerate(node.gpu_ids or ()):
                if gpu in owner and owner[gpu] != i:
                    yield Finding(("nodes", i, "gpu_ids", position),
                                  f"GPU {gpu} of {node.address} is also used by nodes[{owner[gpu]}]")
                owner.setdefault(gpu, i)


def process_runtime(spec: Spec) -> Iterator[Finding]:
    runtime = spec.runtime
    if runtime.kind != "process":
        for index, node in enumerate(spec.nodes):
            for field in ("python_env", "vllm"):
                if getattr(node, field):
                    yield Finding(("nodes", index, field), "only used with runtime.kind: process")
        for field in ("python_env", "vllm", "user", "user_home", "allow_root"):
            if getattr(runtime, field):
                yield Finding(("runtime", field), "only used with runtime.kind: process")
        return
    if runtime.user == "root" and not runtime.allow_root:
        yield Finding(("runtime", "user"), "a system unit running vLLM (and any model code it loads) as root: "
                      "name an unprivileged user, or set runtime.allow_root: true to mean it")
    if runtime.allow_root and runtime.user != "root":
        yield Finding(("runtime", "allow_root"), "only used with runtime.user: root")
    if runtime.user_home and not runtime.user:
        yield Finding(("runtime", "user_home"), "only used with runtime.user")
    for index, node in enumerate(spec.nodes):
        if node.docker_host:
            yield Finding(("nodes", index, "docker_host"), "no Docker endpoint is used with runtime.kind: process")
        if node_vllm(spec, node) is None:
            yield Finding(("nodes", index),
                          "runtime.kind: process needs to know where vLLM is: set runtime.python_env (or "
                          "runtime.vllm), or this node's python_env / vllm")
    if runtime.network != "host":
        yield Finding(("runtime", "network"), "a process has no port map: runtime.network must be host")
    if runtime.volumes:
        yield Finding(("runtime", "volumes"), "a process sees the host's files: there is nothing to mount")
    if spec.image.packages or spec.image.git_packages or spec.image.vllm_extras:
        yield Finding(("image",), "no image is built for runtime.kind: process; install packages into the "
                      "python_env instead")
    if spec.docker.registry_mirrors or spec.docker.daemon:
        yield Finding(("docker",), "no daemon.json is written for runtime.kind: process")
    if spec.cluster.backend == "ray":
        yield Finding(("cluster", "backend"), "runtime.kind: process supports the mp backend only (Ray: "
                      "start `ray start` yourself, or use runtime.kind: docker)")


RULES = (gpu_selection, process_runtime)
