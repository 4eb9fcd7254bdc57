"""What a bundle carries for a plan: every image the deployment runs (and on which nodes), the model
folder, and the rendered deployment with its spec.

``images`` reads the plan's one list of containers (``Plan.workloads``): each node's vLLM, the router,
the front door, Prometheus and Grafana. A new kind of container in the plan is carried by ``bundle``
and ``bundle load`` with nothing changed here (unless it is built from a Dockerfile of its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vllmgen.plan.plan import Plan, Workload
from vllmgen.runner.executor import IMAGE_HASH_LABEL, dockerfile_for, image_hash
from vllmgen.runner.servers import router_dockerfile


@dataclass(frozen=True)
class ImageNeed:
    """One image the deployment runs: its tag, the nodes whose engines need it, and how the connected
    machine gets it: built from a rendered Dockerfile (``context``), or pulled by its tag."""

    reference: str
    role: str  # vllm, router, gateway, prometheus, grafana (Workload.role)
    nodes: tuple[str, ...]
    context: Path | None = None  # build: the folder, with ``dockerfile`` as its Dockerfile
    dockerfile: str | None = None

    @property
    def labels(self) -> dict[str, str]:
        """The labels apply compares to decide the image is already built (and, offline, to use it)."""
        return {IMAGE_HASH_LABEL: image_hash(self.dockerfile)} if self.dockerfile is not None else {}


def images(plan: Plan, deploy_dir: Path, *, base_image: str | None = None,
           router_base_image: str | None = None) -> list[ImageNeed]:
    """Every image of the deployment's containers, in start order, once per (image, role) with the nodes
    that run it; a program on the host (process runtime) has none. ``base_image`` and
    ``router_base_image`` build FROM another base, as apply's options of the same names."""
    dockerfiles = {".": lambda: dockerfile_for(deploy_dir, base_image)}
    if plan.router is not None:
        router = plan.router
        dockerfiles["router"] = lambda: router_dockerfile(deploy_dir, router.base_image, router_base_image)
    grouped: dict[tuple[str, str], list[Workload]] = {}
    for workload in plan.workloads():
        if workload.image:
            grouped.setdefault((workload.image, workload.role), []).append(workload)
    needs = []
    for (reference, role), workloads in grouped.items():
        nodes = tuple(dict.fromkeys(w.node for w in workloads))
        context = workloads[0].build_context
        if context is None:
            needs.append(ImageNeed(reference, role, nodes))
        else:
            needs.append(ImageNeed(reference, role, nodes, deploy_dir / context, dockerfiles[context]()))
    return needs


def model_folder(spec_host_path: str | None, override: Path | None) -> Path | None:
    """The weights' folder on this (connected) machine: ``--model-dir``, else the spec's model.host_path."""
    if override is not None:
        return override
    if spec_host_path is None:
        return None
    return Path(spec_host_path).expanduser()
