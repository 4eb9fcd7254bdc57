"""The Docker target's part of the spec: ``runtime`` with ``kind: docker`` (the default)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from vllmgen.spec.runtime import KIND_DESCRIPTION, RuntimeBase


class DockerRuntime(RuntimeBase):
    in_containers: ClassVar[bool] = True  # images, --gpus, healthchecks, a port map

    kind: Literal["docker"] = Field("docker", description=KIND_DESCRIPTION)
