"""The process target's part of the spec: ``runtime`` with ``kind: process``.

What only makes sense for a container (a port map, bind mounts) is refused here, at its position;
the rules that relate these fields to the nodes stay in ``rules_process``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from vllmgen.spec.formats import HostPath
from vllmgen.spec.runtime import KIND_DESCRIPTION, RuntimeBase, Volume


class ProcessRuntime(RuntimeBase):
    in_containers: ClassVar[bool] = False  # vllm (and nginx) from the host; GPUs by CUDA_VISIBLE_DEVICES

    kind: Literal["process"] = Field(description=KIND_DESCRIPTION)
    python_env: HostPath | None = Field(
        None, description="process runtime: the venv or conda env holding vLLM on every host (runs <env>/bin/vllm)")
    vllm: HostPath | None = Field(None, description="process runtime: the vllm executable on every host (over python_env)")
    user: str | None = Field(
        None, pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        description="process runtime: the user the systemd unit runs vLLM as (a system unit with User=); "
        "unset: a user unit (systemctl --user)")
    user_home: HostPath | None = Field(
        None, description="process runtime: runtime.user's home directory (default /home/<user>; /root for root)")
    allow_root: bool = Field(False, description="process runtime: allow user: root (a system unit running vLLM as root)")

    @property
    def home(self) -> str | None:
        """The unit's user's home: user_home, else /root or /home/<user>; None for a user unit."""
        if self.user_home or self.user is None:
            return self.user_home
        return "/root" if self.user == "root" else f"/home/{self.user}"

    @field_validator("network")
    @classmethod
    def _host_network(cls, network: str) -> str:
        if network != "host":
            raise PydanticCustomError("process_network", "a process has no port map: runtime.network must be host")
        return network

    @field_validator("volumes")
    @classmethod
    def _no_volumes(cls, volumes: list[Volume]) -> list[Volume]:
        if volumes:
            raise PydanticCustomError("process_volumes", "a process sees the host's files: there is nothing to mount")
        return volumes
