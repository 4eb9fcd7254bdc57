"""The spec's ``runtime`` section: what every runtime shares, and the union of the targets' own parts.

Each target (``vllmgen.targets.<kind>``) owns its runtime model; ``kind`` picks one, so a field of
another kind's model is refused by pydantic with its position (an unknown key there), not by hand.
A spec without ``runtime.kind`` is a Docker spec.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, Discriminator, Field

from vllmgen.spec.formats import ContainerPath, EnvMap, HostPath, Model, Name, Size, empty_dict, empty_list

DEFAULT_KIND = "docker"


class Volume(Model):
    host: HostPath = Field(description="absolute path on the host ('~/' allowed)")
    container: ContainerPath = Field(description="absolute path inside the container")
    read_only: bool = Field(False, description="mount read-only")


class RuntimeBase(Model):
    """The options every runtime reads (a target refuses, in its own model, the values it cannot honour)."""

    in_containers: typing.ClassVar[bool]  # does the target run each node in a container? (the plan's one question)

    network: typing.Literal["host", "bridge"] = Field(
        "host", description="host networking (needed across nodes) or a port map")
    ipc_host: bool = Field(True, description="--ipc=host (shared memory for NCCL and PyTorch)")
    shm_size: Size | None = Field(None, description="--shm-size, when ipc_host is false")
    restart: typing.Literal["no", "always", "unless-stopped", "on-failure"] = Field(
        "no", description="Docker restart policy")
    volumes: list[Volume] = Field(default_factory=empty_list, description="extra bind mounts on every node")
    env: EnvMap = Field(default_factory=empty_dict, description="environment for every container")
    container_prefix: Name | None = Field(
        None, description="container names start with this (default: the deployment name)")


KIND_DESCRIPTION = ("docker (a container per node) or process (vllm serve from a Python environment on the host, "
                    "under start.sh or systemd; no Dockerfile, no daemon.json)")


def kind_of(data: Any) -> str:
    """The union's tag: ``kind`` as written (absent: docker). Anything but a mapping goes to the
    default model, whose own error then says what was expected."""
    if isinstance(data, dict):
        kind = data.get("kind", DEFAULT_KIND)
        return kind if isinstance(kind, str) else repr(kind)
    return getattr(data, "kind", DEFAULT_KIND)


def member_for(annotation: Any, data: Any) -> Any:
    """The member of a discriminated union (``Annotated[A | B, Discriminator(f)]``) that ``data`` selects;
    None when ``annotation`` is no such union or the tag matches no member."""
    if typing.get_origin(annotation) is not typing.Annotated:
        return None
    inner, *meta = typing.get_args(annotation)
    picker = next((m.discriminator for m in meta if isinstance(m, Discriminator)), None)
    if not callable(picker):
        return None
    return members(inner).get(str(picker(data)))


def members(union: Any) -> dict[str, type[BaseModel]]:
    """tag -> model of a union of ``Annotated[Model, Tag(t)]``."""
    out = {}
    for option in typing.get_args(union):
        if typing.get_origin(option) is typing.Annotated:
            model, *meta = typing.get_args(option)
            for item in meta:
                if hasattr(item, "tag"):
                    out[item.tag] = model
    return out
