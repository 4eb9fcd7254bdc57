"""The ``docker`` command lines equivalent to a planned container or image build.

Used by the start scripts (rendered as shell) and by the runner's dry-run printer, so what a
person reads in build/ is exactly what ``vllmgen apply --dry-run`` would do.
"""

from __future__ import annotations

from vllmgen.plan.plan import Container, Mount
from vllmgen.plan.words import Anchored, Word


def mount_word(mount: Mount) -> Word:
    suffix = f":{mount.target}" + (":ro" if mount.read_only else "")
    if mount.anchor == "absolute":
        return mount.source + suffix
    return Anchored(mount.anchor, mount.source + suffix)


def run_options(container: Container) -> list[tuple[Word, ...]]:
    """Every ``docker run`` option with its value, in a fixed order (one line each in scripts)."""
    options: list[tuple[Word, ...]] = [("--detach",), ("--name", container.name)]
    options += [("--label", f"{key}={value}") for key, value in container.labels]
    if container.gpus:  # empty: the runner's --no-gpus rehearsal
        options.append(("--gpus", container.gpus))
    options.append(("--network", container.network_mode))
    options += [("--add-host", f"{name}:{ip}") for name, ip in container.extra_hosts]
    options += [("--publish", f"{host}:{inner}") for host, inner in container.ports]
    if container.ipc_host:
        options.append(("--ipc", "host"))
    if container.shm_size:
        options.append(("--shm-size", container.shm_size))
    options += [("--device", device) for device in container.devices]
    options += [("--cap-add", cap) for cap in container.cap_add]
    options += [("--ulimit", f"{name}={soft}:{hard}") for name, soft, hard in container.ulimits]
    if container.restart != "no":
        options.append(("--restart", container.restart))
    if container.healthcheck:
        check = container.healthcheck
        options += [("--health-cmd", check.command), ("--health-interval", f"{check.interval_s}s"),
                    ("--health-timeout", f"{check.timeout_s}s"), ("--health-retries", str(check.retries)),
                    ("--health-start-period", f"{check.start_period_s}s")]
    options += [("--env", f"{key}={value}") for key, value in container.env]
    # a bare name passes the caller's value through: secrets never appear on the command line
    options += [("--env", secret.name) for secret in container.secrets]
    options += [("--volume", mount_word(mount)) for mount in container.mounts]
    options.append(("--entrypoint", container.entrypoint))
    return options


def run_argv(container: Container) -> list[Word]:
    words = [word for option in run_options(container) for word in option]
    return ["docker", "run", *words, container.image, *container.command]
