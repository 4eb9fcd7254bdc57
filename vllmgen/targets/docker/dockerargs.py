"""A planned container as ``docker run`` arguments: the one translation both executors use.

``run_words`` is ``dockercli.run_argv`` (what start.sh runs) with the deployment folder filled
in; the dry run prints those words, and the Docker executor turns the same words, with ``$HOME``
resolved on the node, into the Engine API's create request through ``create_request``, as the docker
CLI would send them. So what the dry run shows is what runs, option for option
(tests/runner/test_dockerargs.py compares them; tests/runner/test_compose_parity.py compares the
containers on a real dockerd).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from vllmgen.plan.words import Anchored, Word
from vllmgen.runner.executor import RunRequest
from vllmgen.targets.docker.dockercli import run_argv


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


def _device_request(value: str) -> dict[str, Any]:
    value = value.strip('"')  # '"device=0,1"': quoted for the docker CLI's CSV parser
    if value.startswith("device="):
        return {"Driver": "", "Count": 0, "DeviceIDs": value.removeprefix("device=").split(","),
                "Capabilities": [["gpu"]], "Options": {}}
    return {"Driver": "", "Count": -1 if value == "all" else int(value), "DeviceIDs": None,
            "Capabilities": [["gpu"]], "Options": {}}


def _ulimit(value: str) -> dict[str, Any]:
    name, limits = value.split("=", 1)
    soft, hard = limits.split(":", 1)
    return {"Name": name, "Hard": int(hard), "Soft": int(soft)}


def _publish(config: dict[str, Any], host: dict[str, Any], value: str) -> None:
    """``[IP:]HOST_PORT:PORT`` (an IPv6 IP in brackets), as ``docker run --publish`` reads it."""
    outer, inner = value.rsplit(":", 1)
    ip, _, port = outer.rpartition(":")
    config["ExposedPorts"][f"{inner}/tcp"] = {}
    host["PortBindings"].setdefault(f"{inner}/tcp", []).append({"HostIp": ip.strip("[]"), "HostPort": port})


def _capability(value: str) -> str:
    """As the docker CLI sends a capability: upper case, with its CAP_ prefix (ALL as it is)."""
    upper = value.upper()
    return upper if upper == "ALL" or upper.startswith("CAP_") else f"CAP_{upper}"


_RAM_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def _ram_bytes(value: str) -> int:
    """``--shm-size``'s text as the docker CLI reads it (``units.RAMInBytes``: 1g = 1024^3, fractions kept)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?", value)
    if match is None:
        raise ValueError(f"--shm-size {value!r} is not a size")
    return int(float(match.group(1)) * _RAM_UNITS[(match.group(2) or "").lower()])


_NS = 1_000_000_000


def _health(config: dict[str, Any], field: str, value: str) -> None:
    check = config.setdefault("Healthcheck", {})
    if field == "cmd":
        check["Test"] = ["CMD-SHELL", value]  # as the docker CLI sends --health-cmd
    elif field == "retries":
        check["Retries"] = int(value)
    else:  # interval, timeout, start-period: "30s" -> nanoseconds, as the engine API takes them
        key = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod"}[field]
        check[key] = int(value.removesuffix("s")) * _NS


def create_request(argv: list[str], secrets: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """``docker run --detach`` words (as ``run_words`` makes them, ``$HOME`` resolved) -> the container's name
    and the Engine API's ``POST /containers/create`` body the docker CLI sends for them (its zero values
    included, so ``docker inspect`` shows the same container either way: tests/runner/test_compose_parity.py).
    A bare ``--env NAME`` takes its value from ``secrets`` (in the body, never an argv). Unknown options fail:
    a new option in dockercli must be taught here too."""
    if argv[:2] != ["docker", "run"]:
        raise ValueError(f"not a docker run command: {argv[:2]}")
    config: dict[str, Any] = {
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": True,
        "AttachStderr": True, "ExposedPorts": {}, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": [],
        "Cmd": None, "Image": "", "Volumes": {}, "WorkingDir": "", "Entrypoint": None, "OnBuild": None,
        "Labels": {}}
    host: dict[str, Any] = {
        "Binds": [], "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}}, "NetworkMode": "default",
        "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False,
        "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "CapAdd": None, "CapDrop": None,
        "CgroupnsMode": "", "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None,
        "IpcMode": "", "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False,
        "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "",
        "ShmSize": 0, "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "",
        "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
        "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0,
        "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [],
        "DeviceCgroupRules": None, "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0,
        "MemorySwappiness": -1, "OomKillDisable": False, "PidsLimit": 0, "Ulimits": [], "CpuCount": 0,
        "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "MaskedPaths": None, "ReadonlyPaths": None}
    name = ""
    words = argv[2:]
    i = 0
    while i < len(words) and words[i].startswith("--"):
        flag = words[i]
        if flag == "--detach":
            config["AttachStdout"] = config["AttachStderr"] = False
            i += 1
            continue
        value = words[i + 1]
        i += 2
        if flag == "--name":
            name = value
        elif flag == "--label":
            key, _, label = value.partition("=")
            config["Labels"][key] = label
        elif flag == "--gpus":
            host["DeviceRequests"] = [_device_request(value)]
        elif flag == "--network":
            host["NetworkMode"] = value
        elif flag == "--add-host":
            host["ExtraHosts"] = [*(host["ExtraHosts"] or []), value]  # NAME:IP, as the CLI sends it
        elif flag == "--publish":
            _publish(config, host, value)
        elif flag == "--ipc":
            host["IpcMode"] = value
        elif flag == "--shm-size":
            host["ShmSize"] = _ram_bytes(value)
        elif flag == "--device":
            host["Devices"].append({"PathOnHost": value, "PathInContainer": value, "CgroupPermissions": "rwm"})
        elif flag == "--cap-add":
            host["CapAdd"] = [*(host["CapAdd"] or []), _capability(value)]
        elif flag == "--ulimit":
            host["Ulimits"].append(_ulimit(value))
        elif flag == "--restart":
            host["RestartPolicy"] = {"Name": value, "MaximumRetryCount": 0}
        elif flag == "--env":
            key, eq, env = value.partition("=")
            config["Env"].append(f"{key}={env if eq else secrets[key]}")
        elif flag == "--volume":
            host["Binds"].append(value)
        elif flag.startswith("--health-"):
            _health(config, flag.removeprefix("--health-"), value)
        elif flag == "--entrypoint":
            config["Entrypoint"] = [value]
        else:
            raise ValueError(f"docker run option {flag} has no Engine API translation")
    if config["AttachStdout"]:
        raise ValueError("vllmgen starts containers detached: docker run without --detach")
    config["Image"] = words[i]
    config["Cmd"] = list(words[i + 1:]) or None
    return name, {**config, "HostConfig": host, "NetworkingConfig": {"EndpointsConfig": {}}}
