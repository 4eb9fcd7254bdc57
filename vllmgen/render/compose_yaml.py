"""A planned ``Container`` as a docker compose file: one service, values escaped for compose's
``$`` interpolation, secrets taken from the environment (never written in)."""

from __future__ import annotations

from typing import Any

from vllmgen.plan.plan import Container, SecretEnv
from vllmgen.plan.words import Anchored, Word, host_word
from vllmgen.render import yamlout
from vllmgen.render.shell import quote_word
from vllmgen.render.templates import safe_text, shell_variable
from vllmgen.targets.docker.dockercli import mount_word


def _compose_escape(value: str) -> str:
    return value.replace("$", "$$")  # compose interpolates $VAR in every value


def _compose_volume(word: Word) -> str:
    if isinstance(word, Anchored):
        base = "${HOME}" if word.anchor == "home" else "../.."  # compose resolves relative to this file
        return f"{base}/{_compose_escape(word.rest)}"
    return _compose_escape(word)


def compose_file(container: Container, service_name: str, text: str, gpu_ids: tuple[int, ...] | None = None) -> str:
    service: dict[str, Any] = {
        "image": container.image,
        "container_name": container.name,
        "entrypoint": [container.entrypoint],
        "command": [_compose_escape(arg) for arg in container.command],
        "network_mode": container.network_mode,
    }
    if container.extra_hosts:  # NAME:IP, split at the first colon (a list: one name may have two addresses)
        service["extra_hosts"] = [f"{name}:{ip}" for name, ip in container.extra_hosts]
    if container.ports:
        service["ports"] = [f"{host}:{inner}" for host, inner in container.ports]
    if container.ipc_host:
        service["ipc"] = "host"
    if container.shm_size:
        service["shm_size"] = container.shm_size
    service["restart"] = container.restart
    env = [f"{key}={_compose_escape(value)}" for key, value in container.env]
    env += [f"{secret.name}={_compose_secret(secret)}" for secret in container.secrets]
    if env:
        service["environment"] = env
    service["volumes"] = [_compose_volume(mount_word(mount)) for mount in container.mounts]
    if container.devices:
        service["devices"] = list(container.devices)
    if container.cap_add:
        service["cap_add"] = list(container.cap_add)
    if container.ulimits:
        service["ulimits"] = {name: {"soft": soft, "hard": hard} for name, soft, hard in container.ulimits}
    if container.healthcheck:
        check = container.healthcheck
        service["healthcheck"] = {
            "test": ["CMD-SHELL", _compose_escape(check.command)],
            "interval": f"{check.interval_s}s",
            "timeout": f"{check.timeout_s}s",
            "retries": check.retries,
            "start_period": f"{check.start_period_s}s",
        }
    service["labels"] = {key: value for key, value in container.labels}
    if container.gpus:  # the router runs without GPUs
        gpu_request: dict[str, Any] = {"count": "all", "capabilities": ["gpu"]}
        if gpu_ids is not None:
            gpu_request = {"device_ids": [str(gpu) for gpu in gpu_ids], "capabilities": ["gpu"]}
        service["deploy"] = {"resources": {"reservations": {"devices": [gpu_request]}}}
    document = {"name": container.name, "services": {service_name: service}}
    for secret in container.secrets:
        text += "\n" + _compose_secret_note(secret)
    return yamlout.dump(document, text)


def _compose_secret(secret: SecretEnv) -> str:
    """The container variable vLLM reads, from the variable the spec names; compose refuses to start
    without it (``:?``) rather than start vLLM with an empty key. Compose cannot read a file into a
    variable, so a file secret is taken from the environment under its container name."""
    source = secret.from_env or secret.name
    if secret.from_file:
        why = "compose cannot read the file it comes from; export it as this file's header says, or use start.sh"
    else:
        why = "see ../../secrets.env.example"
    return f"${{{shell_variable(source)}:?{source} is not set ({why})}}"


def _compose_secret_note(secret: SecretEnv) -> str:
    if secret.from_file:
        read = f"$(cat -- {quote_word(host_word(secret.from_file))})"
        return safe_text(f"{secret.name} comes from a file; first: export {secret.name}=\"{read}\"")
    source = secret.from_env or secret.name
    return f"{secret.name} is read from ${source}: export it first (see ../../secrets.env.example)."
