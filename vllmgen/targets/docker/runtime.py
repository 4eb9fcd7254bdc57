"""The Docker target's part of the spec: ``runtime`` with ``kind: docker`` (the default)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vllmgen.spec_runtime import KIND_DESCRIPTION, RuntimeBase


class DockerRuntime(RuntimeBase):
    kind: Literal["docker"] = Field("docker", description=KIND_DESCRIPTION)
