"""A planned container as a host process: the one container -> process translation.

The process runtime reuses the plan's ``Container`` (its command, environment, secrets and
mounts) and translates it: a path inside the container that a mount provides becomes the host
path it comes from (``--config /etc/vllmgen/serve-config.yaml`` -> the deployment folder's
``serve-config.yaml``, the model path -> ``model.host_path``, the engine caches' variables -> the
cache folder), the Hugging Face cache mount becomes ``HF_HOME``, and the GPU selection is
``CUDA_VISIBLE_DEVICES`` (already in the plan's env). The start scripts (rendered) and the
runner's process executor both use ``launch``, so what ``start.sh`` runs is what ``apply`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from vllmgen.plan import HF_CACHE_IN_CONTAINER, Container, Mount, SecretEnv
from vllmgen.shell import Anchored, Word

RUN_DIR = "run"  # under the deployment folder: <node>.log, <node>.pid, <node>.json


@dataclass(frozen=True)
class Launch:
    argv: tuple[Word, ...]  # the vllm executable and its arguments
    env: tuple[tuple[str, Word], ...]
    secrets: tuple[SecretEnv, ...]  # exported by name, values read when the process starts


def _source(mount: Mount, rest: str = "") -> Word:
    path = mount.source + rest
    if mount.anchor == "absolute":
        return path
    return Anchored(mount.anchor, path)


def _translate(word: str, mounts: tuple[Mount, ...]) -> Word:
    """A container path under a mount's target -> the host path; anything else unchanged."""
    best: Mount | None = None
    for mount in mounts:
        if word == mount.target or word.startswith(mount.target.rstrip("/") + "/"):
            if best is None or len(mount.target) > len(best.target):
                best = mount
    if best is None:
        return word
    return _source(best, word[len(best.target):])


def launch(container: Container) -> Launch:
    mounts = container.mounts
    argv = (container.entrypoint, *(_translate(word, mounts) for word in container.command))
    env: dict[str, Word] = {name: _translate(value, mounts) for name, value in container.env}
    for mount in mounts:
        if mount.target == HF_CACHE_IN_CONTAINER:
            env["HF_HOME"] = _source(mount)
    return Launch(argv=argv, env=tuple(sorted(env.items())), secrets=container.secrets)


def resolve(word: Word, home: str, deploy_dir: str) -> str:
    return word.resolve(home, deploy_dir) if isinstance(word, Anchored) else word


def unit_name(deployment: str, node: str) -> str:
    return f"vllmgen-{deployment}-{node}.service"
