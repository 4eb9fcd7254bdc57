"""A planned container as a host process: the one container -> process translation.

The process runtime reuses the plan's ``Container`` (its command, environment, secrets and
mounts) and translates it: a path inside the container that a mount provides becomes the host
path it comes from (``--config /etc/vllmgen/serve-config.yaml`` -> the deployment folder's
``serve-config.yaml``, the model path -> ``model.host_path``, the engine caches' variables -> the
cache folder), the Hugging Face cache mount becomes ``HF_HOME``, and the GPU selection is
``CUDA_VISIBLE_DEVICES`` (already in the plan's env). The start scripts (rendered) and the
runner's process executor both use ``launch``, so what ``start.sh`` runs is what ``apply`` runs.

How a node's server is started, found and stopped (the one protocol of start.sh, stop.sh, the
systemd unit and the runner; every one of them starts the server through the node's ``run.sh``):

- ``run_dir`` (``~/.vllmgen/deployments/<name>/run``, mode 0700, ours) holds, per node, ``<node>.lock``,
  ``<node>.json`` and ``<node>.log``, wherever the scripts were copied: a server started by start.sh
  from build/ is the one status, apply and down see.
- run.sh takes ``flock`` on ``<node>.lock`` and keeps it through ``exec``: vLLM (and every child that
  inherits it) holds it while it lives, so a second start fails (exit ``LOCK_BUSY``), whoever starts it.
- Just before ``exec`` it writes ``<node>.json`` (a temporary file in run/, then rename: a symlink put
  there is replaced, never followed), one line in the order ``RECORD_FIELDS``: its own PID (vLLM's, after
  exec; the leader of the process group setsid made), that PID's start time (field 22 of /proc/PID/stat),
  the deployment, the node, the container name and the plan's labels (``run_labels``: the runner's).
- vLLM starts with only ``KEPT_ENV`` of what its starter had, the plan's env, its secrets, and
  ``MARKER_ENV=<deployment>/<node>``. A recorded PID is ours only when it is > 1, alive, started at the
  recorded time, runs as our user and carries the marker in /proc/PID/environ; a process of the recorded
  session (its sid is the recorded PID: setsid made it, and children that make a process group of their
  own stay in it) is signalled only when it runs as us and carries the marker.
- vLLM names its engine and worker processes with ``setproctitle`` (``VLLM::EngineCore``), which writes the
  title over the process's environment, marker included: then nothing proves an engine left behind by a
  failed start ours, and down would leave it holding the GPU. ``KEEP_ENVIRON`` (setproctitle's own switch)
  keeps /proc/PID/environ intact; the title only loses what does not fit in the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vllmgen.plan.plan import Container, Mount, SecretEnv
from vllmgen.plan.words import Anchored, Word
from vllmgen.spec.container_layout import HF_CACHE_IN_CONTAINER

RUN_DIR = "run"  # under the deployment folder: <node>.lock, <node>.json, <node>.log
DEPLOYMENTS = ".vllmgen/deployments"  # under $HOME: the runner's and the systemd unit's deployment folders
MARKER_ENV = "VLLMGEN_NODE"  # <deployment>/<node>, in vLLM's environment: proof a process is ours
KEEP_ENVIRON = ("SPT_NOENV", "1")  # setproctitle leaves /proc/PID/environ (our marker) alone
RUN_LABELS_ENV = "VLLMGEN_RUN_LABELS"  # the runner's labels for the record (a flat JSON object), read by run.sh
LOCK_BUSY = 75  # run.sh's exit status when another server of the node holds the lock (EX_TEMPFAIL)
# what vLLM keeps of its starter's environment (nothing else: no runner key, no unrelated secret)
KEPT_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR")
RECORD_FIELDS = ("pid", "start", "deployment", "node", "name", "labels", "run_labels")


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


def host_path(container: Container, path: str) -> Word:
    """A path inside the container where the process finds it on its host (the model folder -> the host
    folder its mount comes from); a path no mount provides (a Hugging Face repo id) unchanged."""
    return _translate(path, container.mounts)


def resolve(word: Word, home: str, deploy_dir: str) -> str:
    return word.resolve(home, deploy_dir) if isinstance(word, Anchored) else word


def unit_name(deployment: str, node: str) -> str:
    return f"vllmgen-{deployment}-{node}.service"


def marker(deployment: str, node: str) -> str:
    return f"{deployment}/{node}"


def deployment_dir(home: str, deployment: str) -> str:
    return f"{home}/{DEPLOYMENTS}/{deployment}"


def exec_path(deployment: str, container: Container, path: str) -> str:
    """Where a command run beside the server (the runner's ``exec``: as this user, on this host) finds a
    path the container would see: the model folder is the host folder its mount comes from."""
    home = str(Path.home())
    return resolve(host_path(container, path), home, deployment_dir(home, deployment))
