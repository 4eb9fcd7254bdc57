"""Docker engine checks: daemon reachable, socket permission, NVIDIA runtime, `--gpus` smoke, mirrors.

Inputs are what a client sees: an error text (CLI stderr or the Python SDK's exception text) and
the `docker info` document (`docker info --format '{{json .}}'` or `docker.from_env().info()`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from vllmgen.doctor.checks import CheckResult, fail, ok, skip, warn

ErrorKind = Literal["permission_denied", "no_daemon", "no_gpu_driver", "other"]

PERMISSION_FIX = "sudo usermod -aG docker $USER; newgrp docker"
START_FIX = "start the daemon: sudo systemctl enable --now docker (install docker first if it is missing)"
TOOLKIT_FIX = (
    "install the NVIDIA Container Toolkit (package nvidia-container-toolkit), then "
    "sudo nvidia-ctk runtime configure --runtime=docker; sudo systemctl restart docker"
)
SDK_MISSING = "docker SDK not installed"
MIRROR_FIX = 'add the mirrors to "registry-mirrors" in /etc/docker/daemon.json, then sudo systemctl restart docker'

# Substrings, lower-cased, seen in real CLI and SDK output (tests/fixtures/doctor/docker/).
_PERMISSION = ("permission denied while trying to connect to the docker daemon", "permissionerror(13")
_NO_DAEMON = (
    "cannot connect to the docker daemon",
    "is the docker daemon running",
    "filenotfounderror(2",
    "connectionrefusederror(111",
)
_NO_GPU_DRIVER = ('could not select device driver "" with capabilities: [[gpu]]',)


def classify_error(text: str) -> ErrorKind:
    low = text.lower()
    if any(s in low for s in _PERMISSION):
        return "permission_denied"
    if any(s in low for s in _NO_DAEMON):
        return "no_daemon"
    if any(s in low for s in _NO_GPU_DRIVER):
        return "no_gpu_driver"
    return "other"


def _first_line(text: str) -> str:
    """The line that carries the message: SDK texts may be preceded by warnings or a class name."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in lines:
        if classify_error(line) != "other":
            return line
    return lines[-1] if lines else ""


def check_socket_permission(error: str | None) -> CheckResult:
    name = "docker.socket_permission"
    if error is None:
        return ok(name, "this user may use the docker socket")
    if classify_error(error) == "permission_denied":
        return fail(name, _first_line(error), PERMISSION_FIX)
    return skip(name, "could not ask the daemon (see docker.daemon)")


def check_daemon(error: str | None, info: Mapping[str, object] | None) -> CheckResult:
    name = "docker.daemon"
    if error is None and info is not None:
        version = info.get("ServerVersion", "?")
        return ok(name, f"reachable, Docker {version}")
    text = error or "no answer"
    kind = classify_error(text)
    if kind == "permission_denied":
        return skip(name, "socket permission denied (see docker.socket_permission)")
    if kind == "no_daemon":
        return fail(name, f"no Docker daemon answers: {_first_line(text)}", START_FIX)
    if text.startswith(SDK_MISSING):
        return fail(name, text, "pip install docker (doctor talks to the daemon through the docker SDK)")
    return fail(name, _first_line(text), START_FIX)


def runtimes(info: Mapping[str, object]) -> list[str]:
    value = info.get("Runtimes") or {}
    return sorted(value) if isinstance(value, Mapping) else []


def check_nvidia_runtime(info: Mapping[str, object] | None) -> CheckResult:
    """The toolkit registers an `nvidia` runtime; without it `--gpus` usually fails too."""
    name = "docker.nvidia_runtime"
    if info is None:
        return skip(name, "no docker info")
    names = runtimes(info)
    default = info.get("DefaultRuntime", "?")
    if "nvidia" in names:
        return ok(name, f"runtimes {', '.join(names)} (default {default})")
    return warn(name, f"no nvidia runtime: runtimes {', '.join(names) or 'none'} (default {default})", TOOLKIT_FIX)


def check_gpu_smoke(returncode: int | None, output: str) -> CheckResult:
    """The result of `docker run --rm --gpus all IMAGE nvidia-smi -L` (or the SDK's equivalent)."""
    name = "docker.gpus_all"
    if returncode is None:
        return skip(name, output or "not run")
    if returncode == 0:
        lines = [line for line in output.splitlines() if line.strip()]
        return ok(name, f"--gpus all works ({len(lines)} line(s) from the container)")
    kind = classify_error(output)
    if kind == "no_gpu_driver":
        return fail(name, _first_line(output), TOOLKIT_FIX)
    if kind == "permission_denied":
        return fail(name, _first_line(output), PERMISSION_FIX)
    if kind == "no_daemon":
        return fail(name, _first_line(output), START_FIX)
    return fail(name, _first_line(output) or f"exit status {returncode}", TOOLKIT_FIX)


def _norm_mirror(url: str) -> str:
    # dockerd stores mirrors with a trailing slash ("https://docker.m.daocloud.io/").
    return url.strip().rstrip("/").lower()


def mirrors(info: Mapping[str, object]) -> list[str]:
    registry = info.get("RegistryConfig") or {}
    found = registry.get("Mirrors") if isinstance(registry, Mapping) else None
    return list(found or [])


def check_registry_mirrors(info: Mapping[str, object] | None, expected: Sequence[str]) -> CheckResult:
    name = "docker.registry_mirrors"
    if info is None:
        return skip(name, "no docker info")
    have = mirrors(info)
    if not expected:
        return ok(name, f"none required; configured: {', '.join(have) or 'none'}")
    have_norm = {_norm_mirror(m) for m in have}
    missing = [m for m in expected if _norm_mirror(m) not in have_norm]
    if missing:
        return fail(name, f"missing {', '.join(missing)}; configured: {', '.join(have) or 'none'}", MIRROR_FIX)
    return ok(name, f"configured: {', '.join(have)}")
