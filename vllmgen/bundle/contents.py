"""What a bundle carries for a plan: every image the deployment runs (and on which nodes), the model
folder, and the rendered deployment with its spec.

``images`` is the one list of images over the plan: the vLLM image (every node of a Docker
deployment), the router, monitoring. A new container kind of the plan (a front door, say) is one
more entry here, and ``bundle`` and ``bundle load`` carry it with nothing else changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vllmgen.plan.plan import Plan
from vllmgen.runner.executor import IMAGE_HASH_LABEL, dockerfile_for, image_hash
from vllmgen.runner.servers import router_dockerfile


@dataclass(frozen=True)
class ImageNeed:
    """One image the deployment runs: its tag, the nodes whose engines need it, and how the connected
    machine gets it: built from a rendered Dockerfile (``context``), or pulled by its tag."""

    reference: str
    role: str  # vllm, router, monitoring, ...
    nodes: tuple[str, ...]
    context: Path | None = None  # build: the folder, with ``dockerfile`` as its Dockerfile
    dockerfile: str | None = None

    @property
    def labels(self) -> dict[str, str]:
        """The labels apply compares to decide the image is already built (and, offline, to use it)."""
        return {IMAGE_HASH_LABEL: image_hash(self.dockerfile)} if self.dockerfile is not None else {}


def images(plan: Plan, deploy_dir: Path, *, base_image: str | None = None,
           router_base_image: str | None = None) -> list[ImageNeed]:
    """Every image of the deployment, in a stable order; an image two roles share appears once per role."""
    needs: list[ImageNeed] = []
    if plan.runtime == "docker":
        needs.append(ImageNeed(plan.image.tag, "vllm", tuple(node.name for node in plan.nodes), deploy_dir,
                               dockerfile_for(deploy_dir, base_image)))
    if plan.router is not None:
        router = plan.router
        needs.append(ImageNeed(router.image, "router", (router.node,), deploy_dir / "router",
                               router_dockerfile(deploy_dir, router.base_image, router_base_image)))
    if plan.monitoring is not None:
        for reference in (plan.monitoring.prometheus_image, plan.monitoring.grafana_image):
            needs.append(ImageNeed(reference, "monitoring", (plan.monitoring.node,)))
    return needs


def model_folder(spec_host_path: str | None, override: Path | None) -> Path | None:
    """The weights' folder on this (connected) machine: ``--model-dir``, else the spec's model.host_path."""
    if override is not None:
        return override
    if spec_host_path is None:
        return None
    return Path(spec_host_path).expanduser()
