"""A planned container as ``docker run`` arguments: the one translation both executors use.

``run_words`` is ``dockercli.run_argv`` (what start.sh runs) with the deployment folder filled
in; the dry run prints those words, and the SDK executor turns the same words, with ``$HOME``
resolved on the node, into ``containers.run`` keyword arguments through ``sdk_kwargs``. So what
the dry run shows is what runs, option for option (tests/runner/test_dockerargs.py compares them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vllmgen.targets.docker.dockercli import run_argv
from vllmgen.runner.executor import RunRequest
from vllmgen.render.shell import Anchored, Word


def run_words(request: RunRequest) -> list[Word]:
    """``docker run ... IMAGE COMMAND`` for the request; ``${HOME}`` stays for the node to resolve."""
    words = run_argv(request.planned())
    return [w.resolve("", request.deploy_dir) if isinstance(w, Anchored) and w.anchor == "deploy_dir" else w
            for w in words]


def resolve_home(words: list[Word], home: Callable[[], str]) -> list[str]:
    """Plain strings: ``$HOME``-anchored words resolved with the node's home (asked only when needed)."""
    cached: list[str] = []

    def resolve(word: Word) -> str:
        if not isinstance(word, Anchored):
            return word
        if not cached:
            cached.append(home())
        return word.resolve(cached[0], "")

    return [resolve(word) for word in words]


def _gpus(value: str) -> Any:
    from docker.types import DeviceRequest

    value = value.strip('"')  # '"device=0,1"': quoted for the docker CLI's CSV parser
    if value.startswith("device="):
        return DeviceRequest(device_ids=value.removeprefix("device=").split(","), capabilities=[["gpu"]])
    return DeviceRequest(count=-1 if value == "all" else int(value), capabilities=[["gpu"]])


def _ulimit(value: str) -> Any:
    from docker.types import Ulimit

    name, limits = value.split("=", 1)
    soft, hard = limits.split(":", 1)
    return Ulimit(name=name, soft=int(soft), hard=int(hard))


def _publish(kwargs: dict[str, Any], value: str) -> None:
    """``[IP:]HOST_PORT:PORT`` (an IPv6 IP in brackets), as ``docker run --publish`` reads it."""
    host, inner = value.rsplit(":", 1)
    if ":" in host:  # bound to one address of the host
        ip, port = host.rsplit(":", 1)
        kwargs.setdefault("ports", {})[f"{inner}/tcp"] = (ip.strip("[]"), int(port))
    else:
        kwargs.setdefault("ports", {})[f"{inner}/tcp"] = int(host)


def _volume(value: str) -> str:
    return value if value.endswith((":ro", ":rw")) else value + ":rw"


_NS = 1_000_000_000


def _health(kwargs: dict[str, Any], field: str, value: str) -> None:
    check = kwargs.setdefault("healthcheck", {})
    if field == "cmd":
        check["test"] = ["CMD-SHELL", value]  # as the docker CLI sends --health-cmd
    elif field == "retries":
        check["retries"] = int(value)
    else:  # interval, timeout, start-period: "30s" -> nanoseconds, as the engine API takes them
        key = {"interval": "interval", "timeout": "timeout", "start-period": "start_period"}[field]
        check[key] = int(value.removesuffix("s")) * _NS


def sdk_kwargs(argv: list[str], secrets: Mapping[str, str]) -> dict[str, Any]:
    """``docker run`` words (as ``run_words`` makes them, ``$HOME`` resolved) -> SDK ``containers.run``
    keyword arguments. A bare ``--env NAME`` takes its value from ``secrets``. Unknown options fail:
    a new option in dockercli must be taught here too."""
    if argv[:2] != ["docker", "run"]:
        raise ValueError(f"not a docker run command: {argv[:2]}")
    kwargs: dict[str, Any] = {"detach": False, "labels": {}, "environment": {}, "volumes": []}
    words = argv[2:]
    i = 0
    while i < len(words) and words[i].startswith("--"):
        flag = words[i]
        if flag == "--detach":
            kwargs["detach"] = True
            i += 1
            continue
        value = words[i + 1]
        i += 2
        if flag == "--name":
            kwargs["name"] = value
        elif flag == "--label":
            key, _, label = value.partition("=")
            kwargs["labels"][key] = label
        elif flag == "--gpus":
            kwargs["device_requests"] = [_gpus(value)]
        elif flag == "--network":
            kwargs["network_mode"] = value
        elif flag == "--publish":
            _publish(kwargs, value)
        elif flag == "--ipc":
            kwargs["ipc_mode"] = value
        elif flag == "--shm-size":
            kwargs["shm_size"] = value
        elif flag == "--device":
            kwargs.setdefault("devices", []).append(f"{value}:{value}:rwm")
        elif flag == "--cap-add":
            kwargs.setdefault("cap_add", []).append(value)
        elif flag == "--ulimit":
            kwargs.setdefault("ulimits", []).append(_ulimit(value))
        elif flag == "--restart":
            kwargs["restart_policy"] = {"Name": value}
        elif flag == "--env":
            key, eq, env = value.partition("=")
            kwargs["environment"][key] = env if eq else secrets[key]
        elif flag == "--volume":
            kwargs["volumes"].append(_volume(value))
        elif flag.startswith("--health-"):
            _health(kwargs, flag.removeprefix("--health-"), value)
        elif flag == "--entrypoint":
            kwargs["entrypoint"] = [value]
        else:
            raise ValueError(f"docker run option {flag} has no SDK translation")
    kwargs["image"] = words[i]
    kwargs["command"] = list(words[i + 1:])
    return kwargs
