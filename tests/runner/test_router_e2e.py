"""Two real CPU vLLM replicas on two namespace hosts behind the real vllm-router, all started by `apply`.

Completions through the router reach both replicas (counted in each replica's own access log); with one replica stopped the router keeps answering from the other and `status`
names the dead one; `down` removes the router with the replicas. vllm-router (PyPI, a Rust binary
in a wheel) reaches its container as a bind-mounted venv, as vLLM does; its image is built from
the generated router/Dockerfile on a base whose stand-in python3 says the pinned version is there.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from infra import cache
from infra.images import ROOTFS, ensure_base_images

from .support import (
    GATEWAY,
    VLLM_READY_S,
    Cluster,
    apply_args,
    ok_stderr,
    replicas_spec,
    router_section,
    wait_for,
    write_spec,
)

pytestmark = pytest.mark.slow
ROUTER_VERSION = "0.1.17"
ROUTER_BASE = "local/vllmgen-routerbase:1"
# stand-in for the version check in router/Dockerfile: the venv with vllm-router is mounted at run time
PYTHON_STUB = "#!/bin/sh\nexit 0\n"


@pytest.fixture(scope="module")
def router_venv(python_prefix: str) -> str:
    return router_venv_path()


def router_venv_path() -> str:
    """A venv with vllm-router, made with this interpreter (cached)."""
    venv = cache.cache_dir() / f"vllm-router-{ROUTER_VERSION}"
    with cache._locked(venv.name):
        if not (venv / ".vllmgen-complete").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"vllm-router=={ROUTER_VERSION}"], check=True)
            (venv / ".vllmgen-complete").write_text("")
    return str(venv)


def _router_base(client) -> None:  # noqa: ANN001 - docker.DockerClient
    ensure_base_images(client)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in {"Dockerfile": f"FROM {ROOTFS}\nCOPY python3 /usr/local/bin/python3\n",
                           "python3": PYTHON_STUB}.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(text), 0o755
            tar.addfile(info, io.BytesIO(text.encode()))
    buffer.seek(0)
    for event in client.api.build(fileobj=buffer, custom_context=True, tag=ROUTER_BASE, rm=True, decode=True):
        assert "error" not in event, event


def _served(client, container: str) -> int:  # noqa: ANN001 - docker.DockerClient
    """Chat completions this replica answered, from its own access log."""
    logs = client.containers.get(container).logs().decode(errors="replace")
    return len(re.findall(r'"POST /v1/chat/completions HTTP/1.1" 200', logs))


CHAT = """
import json, sys, urllib.request as u, urllib.error as e
body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}).encode()
request = u.Request(sys.argv[1] + "/v1/chat/completions", body, {"Content-Type": "application/json"})
for _ in range(int(sys.argv[2])):
    try:
        print(u.build_opener(u.ProxyHandler({})).open(request, timeout=60).status)
    except e.HTTPError as exc:
        print(exc.code, exc.read()[:200], file=sys.stderr)
        print(exc.code)
"""


def _chats(cluster: Cluster, url: str, count: int) -> list[int]:
    """``count`` chat completions from inside host 0's namespace (the hosts' addresses live there)."""
    out = subprocess.run(["nsenter", f"--net={cluster.hosts.path(0)}", sys.executable, "-c", CHAT, url, str(count)],
                         capture_output=True, text=True, timeout=300, check=True)
    print(out.stderr, end="")
    return [int(line) for line in out.stdout.split()]


def test_two_replicas_behind_the_real_router(two_hosts: Cluster, tmp_path: Path, python_prefix: str,
                                              router_venv: str) -> None:
    venv = cache.vllm_venv()
    vllm = (str(venv), str(cache.tiny_model(venv / "bin" / "python")))
    _router_base(two_hosts.daemons[0].client())
    a, b = two_hosts.hosts.addresses
    spec = write_spec(tmp_path, replicas_spec(
        "vg-rep", vllm, python_prefix, tmp_path, two_hosts, "rep",
        router=router_section(python_prefix, router_venv, node="rep-a", port=18080, policy="round_robin",
                              health_check_interval_s=2)))
    router = f"http://{a}:18080"
    replicas = {"rep-a": f"http://{a}:18000", "rep-b": f"http://{b}:18000"}
    clients = {"rep-a": two_hosts.daemons[0].client(), "rep-b": two_hosts.daemons[1].client()}
    try:
        log = ok_stderr(two_hosts.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", str(VLLM_READY_S),
                                                "--router-base-image", ROUTER_BASE)))
        assert "rep-b: servers: ok" in log
        assert re.search(r"rep-a: router: created \(http://[0-9.]+:18080 in front of 2 server\(s\); "
                         r"/v1/models lists tiny; chat completion answered", log), log

        before = {name: _served(clients[name], f"vg-rep-{name}") for name in replicas}
        assert _chats(two_hosts, router, 6) == [200] * 6
        after = {name: _served(clients[name], f"vg-rep-{name}") for name in replicas}
        gained = {name: after[name] - before[name] for name in replicas}
        print(f"completions per replica through the router: {gained}")
        assert gained["rep-a"] >= 1 and gained["rep-b"] >= 1 and sum(gained.values()) == 6

        status = two_hosts.vllmgen("status", str(spec), "--all", "--output", "json")
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert [s["health"] for s in report["servers"]] == [200, 200] and report["router"]["health"] == 200

        two_hosts.daemons[1].client().containers.get("vg-rep-rep-b").stop(timeout=5)
        # the router learns of the dead replica from its health checks (every 2 s): until then a request
        # may still go there; then every request is answered by the living one
        answered = wait_for(lambda: _chats(two_hosts, router, 4), lambda codes: codes == [200] * 4, timeout=30, every=1)
        assert answered == [200] * 4
        status = two_hosts.vllmgen("status", str(spec), "--all")
        assert status.returncode == 1
        assert "problem: node rep-b: vg-rep-rep-b is exited" in status.stdout, status.stdout
        assert f"problem: API server on node rep-b ({replicas['rep-b']}): /health" in status.stdout, status.stdout
    finally:
        down = ok_stderr(two_hosts.vllmgen("down", str(spec), "--all"))
    assert "rep-a: down: removed vg-rep-router (router)" in down, down
    assert two_hosts.daemons[0].client().containers.list(all=True, filters={"name": "vg-rep"}) == []


def test_the_api_key_passes_through_the_router(two_hosts: Cluster, tmp_path: Path, python_prefix: str,
                                               router_venv: str) -> None:
    """With secrets.api_key, apply's verify through the router sends the key (vLLM behind it checks it)
    and sees a request without it refused: the router forwards the Authorization header as it is."""
    venv = cache.vllm_venv()
    vllm = (str(venv), str(cache.tiny_model(venv / "bin" / "python")))
    _router_base(two_hosts.daemons[0].client())
    a, b = two_hosts.hosts.addresses
    spec = write_spec(tmp_path, replicas_spec(
        "vg-key", vllm, python_prefix, tmp_path, two_hosts, "key", secrets={"api_key": {"env": "VG_ROUTER_KEY"}},
        gateway=GATEWAY,  # a keyed deployment has its front door: the router listens on loopback behind it
        router=router_section(python_prefix, router_venv, port=18080, health_check_interval_s=2)))
    env = {"VG_ROUTER_KEY": "router-test-key"}
    try:
        log = ok_stderr(two_hosts.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", str(VLLM_READY_S),
                                                "--router-base-image", ROUTER_BASE), timeout=900, env=env))
        assert "key-a: router: created" in log, log
        assert re.search(r"key-a: gateway: created \(.*without the API key at http://\S+: (\d+) of \1 paths refused", log), log
        assert _chats(two_hosts, f"http://{a}:8800", 1) == [401]  # through the gateway, without the key
        inspect = two_hosts.daemons[0].client().containers.get("vg-key-router").attrs
        assert "router-test-key" not in json.dumps(inspect)  # not in the router's argv, env or labels
    finally:
        ok_stderr(two_hosts.vllmgen("down", str(spec), "--all", env=env))
