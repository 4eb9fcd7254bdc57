"""The images of a node's containers for the doctor: what ``vllmgen bundle`` carries to that node
(``bundle.contents.images``, which reads the plan's one list, ``Plan.workloads``), with the labels apply
compares for the images it builds. A module of its own: it renders the spec and reaches the runner's
Dockerfile helpers, which ``validate --model-config`` (through ``from_spec``) must not load."""

from __future__ import annotations

import tempfile
from pathlib import Path

from vllmgen.bundle import contents
from vllmgen.doctor.offline import ImageExpectation
from vllmgen.render.compile import compile_file
from vllmgen.render.write import write


def node_images(spec_file: Path, node: str, *, base_image: str | None = None,
                router_base_image: str | None = None) -> tuple[ImageExpectation, ...]:
    """From the spec rendered now (into a temporary folder: the labels are those of exactly what apply
    builds), the FROM lines swapped as apply's --base-image / --router-base-image swap them."""
    compiled = compile_file(spec_file)
    with tempfile.TemporaryDirectory(prefix="vllmgen-doctor-") as folder:
        deploy_dir = Path(folder) / compiled.plan.name
        write(compiled.artifacts, deploy_dir)
        needs = contents.images(compiled.plan, deploy_dir, base_image=base_image, router_base_image=router_base_image)
    return tuple(ImageExpectation(need.reference, need.role, tuple(sorted(need.labels.items())),
                                  need.dockerfile is not None) for need in needs if node in need.nodes)
