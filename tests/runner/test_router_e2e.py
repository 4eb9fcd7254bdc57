"""Two real CPU vLLM replicas on two namespace hosts behind the real vllm-router and the real gateway
(nginx), with an API key, all started by one `apply` that the tests of this module share.

One deployment, applied once by a module fixture (each real CPU vLLM takes 35-90 s to start; this shape
was applied three times before, by three tests): the router passes the key on and the key is nowhere in
its container; an attacker without the key reaches nothing through the gateway's public address (host
0's second address, 10.77.1.1) and the servers' and router's own ports refuse; completions through the
gateway and router reach both replicas (counted in each replica's own access log); with one replica
stopped the router keeps answering from the other and `status` names the dead one; `down` removes the
gateway first, then the router with the replicas. The tests run in file order (the last ones stop a
replica and take the deployment down); the fixture downs it and clears the hosts whatever happened.
vllm-router (PyPI, a Rust binary in a wheel) reaches its container as a bind-mounted venv, as vLLM
does; its image is built from the generated router/Dockerfile on a base whose stand-in python3 says
the pinned version is there.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from infra import cache
from infra.images import ROOTFS, ensure_base_images, ensure_nginx_image

from .support import PATH, VLLM_READY_S, Cluster, apply_args, cpu_vllm_tp_spec, ok_stderr, wait_for, write_spec
from .test_gateway_e2e import GATEWAY_PORT, KEY, PORT, ROUTER_PORT, _attack, _check

pytestmark = pytest.mark.slow
ROUTER_VERSION = "0.1.17"
ROUTER_BASE = "local/vllmgen-routerbase:1"
METRICS_PORT = 18290  # router.metrics_port: vllm-router's Prometheus listener, on loopback
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
headers = {"Content-Type": "application/json"}
if len(sys.argv) > 3:
    headers["Authorization"] = "Bearer " + sys.argv[3]
request = u.Request(sys.argv[1] + "/v1/chat/completions", body, headers)
for _ in range(int(sys.argv[2])):
    try:
        print(u.build_opener(u.ProxyHandler({})).open(request, timeout=60).status)
    except e.HTTPError as exc:
        print(exc.code, exc.read()[:200], file=sys.stderr)
        print(exc.code)
"""


def _chats(cluster: Cluster, url: str, count: int, key: str | None = None) -> list[int]:
    """``count`` chat completions from inside host 0's namespace (the hosts' addresses live there), with
    ``key`` as the bearer token when given."""
    out = subprocess.run(["nsenter", f"--net={cluster.hosts.path(0)}", sys.executable, "-c", CHAT, url, str(count),
                          *([key] if key else [])], capture_output=True, text=True, timeout=300, check=True)
    print(out.stderr, end="")
    return [int(line) for line in out.stdout.split()]


def _ip(namespace: str, *args: str) -> None:
    subprocess.run(["ip", "-n", Path(namespace).name, *args], check=True, capture_output=True)


PUBLIC = "10.77.1.1"  # the gateway's public address: a second address of host 0, which host 1 routes to
ENV = {"VG_DOOR_KEY": KEY}


@dataclass
class Deployment:
    cluster: Cluster
    spec: Path
    log: str  # apply's progress (stderr)
    public: str  # the gateway's URL
    replicas: dict[str, str]  # node -> its API server's URL


@pytest.fixture(scope="module")
def deployment(two_hosts_made: Cluster, tmp_path_factory: pytest.TempPathFactory, python_prefix: str,
               router_venv: str) -> Iterator[Deployment]:
    """The keyed replicas + router + gateway, applied once for this module's tests; downed, the hosts put
    back as they were made (every container removed, daemon.json restored) and the address removed after."""
    cluster = two_hosts_made
    cluster.clear()
    tmp_path = tmp_path_factory.mktemp("router")
    venv = cache.vllm_venv()
    vllm = (str(venv), str(cache.tiny_model(venv / "bin" / "python")))
    _router_base(cluster.daemons[0].client())
    image = ensure_nginx_image(cluster.daemons[0].client())
    a, b = cluster.hosts.addresses
    _ip(cluster.hosts.path(0), "addr", "add", f"{PUBLIC}/24", "dev", "vg0")
    _ip(cluster.hosts.path(1), "route", "add", "10.77.1.0/24", "dev", "vg0")
    nodes = [
        {"name": "rep-a", "role": "head", "address": a, "gpus": 1, "docker_host": cluster.daemons[0].endpoint},
        {"name": "rep-b", "role": "worker", "address": b, "gpus": 1, "docker_host": cluster.daemons[1].endpoint},
    ]
    spec = cpu_vllm_tp_spec("vg-rep", vllm, python_prefix, tmp_path, nodes, ipc_host=False, backend="replicas")
    spec["serve"]["tensor_parallel_size"] = 1
    spec["secrets"] = {"api_key": {"env": "VG_DOOR_KEY"}}
    spec["router"] = {
        "node": "rep-a", "port": ROUTER_PORT, "metrics_port": METRICS_PORT, "policy": "round_robin",
        "health_check_interval_s": 2,
        "volumes": [{"host": python_prefix, "container": python_prefix},
                    {"host": router_venv, "container": router_venv}],
        "extra_env": {"PATH": f"{router_venv}/bin:{PATH}"},
    }
    spec["gateway"] = {"image": image, "port": GATEWAY_PORT, "address": PUBLIC}
    path = write_spec(tmp_path, spec)
    try:
        result = cluster.vllmgen(*apply_args(path, "--all", "--no-gpus", "--timeout", str(VLLM_READY_S),
                                             "--router-base-image", ROUTER_BASE), env=ENV)
        yield Deployment(cluster, path, ok_stderr(result), f"http://{PUBLIC}:{GATEWAY_PORT}",
                         {"rep-a": f"http://{a}:{PORT}", "rep-b": f"http://{b}:{PORT}"})
    finally:
        cluster.vllmgen("down", str(path), "--all", env=ENV)  # a no-op after the last test's own down
        cluster.clear()
        subprocess.run(["ip", "-n", Path(cluster.hosts.path(0)).name, "addr", "del", f"{PUBLIC}/24", "dev", "vg0"],
                       capture_output=True, check=False)


def test_apply_starts_replicas_router_and_gateway(deployment: Deployment) -> None:
    log = deployment.log
    assert "rep-b: servers: ok" in log, log
    assert re.search(r"rep-a: router: created \(http://[0-9.]+:18080 in front of 2 server\(s\); "
                     r"/v1/models lists tiny; chat completion answered", log), log
    assert f"rep-a: gateway: created (http://{PUBLIC}:{GATEWAY_PORT} in front of 127.0.0.1:{ROUTER_PORT}" in log, log
    assert re.search(r"rep-a: gateway: created \(.*without the API key at http://\S+: (\d+) of \1 paths refused", log), log
    router = deployment.cluster.daemons[0].client().containers.get("vg-rep-router").attrs["Config"]["Cmd"]
    assert router[:2] == ["--host", "127.0.0.1"]
    assert router[4:8] == ["--prometheus-host", "127.0.0.1", "--prometheus-port", str(METRICS_PORT)]
    assert router[-2:] == ["http://127.0.0.1:18000", f"{deployment.replicas['rep-b']}"]


def test_the_api_key_passes_through_the_router(deployment: Deployment) -> None:
    """apply's verify through the router sent the key (vLLM behind it checks it) and saw a request without it
    refused: the router forwards the Authorization header as it is; the key is not in the router's argv, env
    or labels."""
    assert _chats(deployment.cluster, deployment.public, 1) == [401]  # through the gateway, without the key
    assert _chats(deployment.cluster, deployment.public, 1, KEY) == [200]
    inspect = deployment.cluster.daemons[0].client().containers.get("vg-rep-router").attrs
    assert KEY not in json.dumps(inspect)


def test_nothing_answers_without_the_key_through_the_gateway(deployment: Deployment) -> None:
    """From host 1 (another machine), without the key: every path 401 at the public address, the servers'
    and router's own ports refused; with it the client API answers, streamed too."""
    cluster = deployment.cluster
    _check(_attack(cluster, deployment.public, [PORT, ROUTER_PORT]), [PORT, ROUTER_PORT], router=True)
    # the attacker's /add_worker never reached the router: it still fronts exactly the spec's two servers
    listed = subprocess.run(["nsenter", f"--net={cluster.hosts.path(0)}", "curl", "-s", "--noproxy", "*",
                             f"http://127.0.0.1:{ROUTER_PORT}/list_workers"], capture_output=True, text=True,
                            timeout=30, check=True).stdout
    assert "10.77.0.2:9" not in listed, listed


def test_the_routers_metrics_listen_on_loopback_only(deployment: Deployment) -> None:
    """vllm-router's Prometheus listener is where the spec puts it (router.metrics_port, 127.0.0.1 of the
    router's host): it answers there, and host 1 reaches it on neither of host 0's addresses."""
    cluster = deployment.cluster
    inside = ["nsenter", f"--net={cluster.hosts.path(0)}"]
    listening = subprocess.run([*inside, "ss", "-ltnH", f"sport = :{METRICS_PORT}"], capture_output=True, text=True,
                               timeout=30, check=True).stdout
    assert [line.split()[3] for line in listening.splitlines()] == [f"127.0.0.1:{METRICS_PORT}"], listening
    local = subprocess.run([*inside, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--noproxy", "*",
                            f"http://127.0.0.1:{METRICS_PORT}/metrics"], capture_output=True, text=True, timeout=30)
    assert local.stdout == "200", local
    probe = ("import socket, sys\nfor host in sys.argv[2:]:\n    s = socket.socket(); s.settimeout(3)\n"
             "    print(s.connect_ex((host, int(sys.argv[1]))))\n")
    refused = subprocess.run(["nsenter", f"--net={cluster.hosts.path(1)}", sys.executable, "-c", probe,
                              str(METRICS_PORT), cluster.hosts.addresses[0], PUBLIC], capture_output=True, text=True,
                             timeout=30, check=True).stdout.split()
    assert len(refused) == 2 and "0" not in refused, refused  # connection refused from another machine


def test_status_reports_servers_router_and_gateway_healthy(deployment: Deployment) -> None:
    status = deployment.cluster.vllmgen("status", str(deployment.spec), "--all", "--output", "json", env=ENV)
    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)
    assert [s["health"] for s in report["servers"]] == [200, 200]
    assert report["router"]["health"] == 200 and report["gateway"]["health"] == 200


def test_completions_through_the_router_reach_both_replicas(deployment: Deployment) -> None:
    cluster = deployment.cluster
    clients = {"rep-a": cluster.daemons[0].client(), "rep-b": cluster.daemons[1].client()}
    before = {name: _served(clients[name], f"vg-rep-{name}") for name in clients}
    assert _chats(cluster, deployment.public, 6, KEY) == [200] * 6
    after = {name: _served(clients[name], f"vg-rep-{name}") for name in clients}
    gained = {name: after[name] - before[name] for name in clients}
    print(f"completions per replica through the router: {gained}")
    assert gained["rep-a"] >= 1 and gained["rep-b"] >= 1 and sum(gained.values()) == 6


def test_a_stopped_replica_is_routed_around_and_named_by_status(deployment: Deployment) -> None:
    cluster = deployment.cluster
    cluster.daemons[1].client().containers.get("vg-rep-rep-b").stop(timeout=5)
    # the router learns of the dead replica from its health checks (every 2 s): until then a request
    # may still go there; then every request is answered by the living one
    answered = wait_for(lambda: _chats(cluster, deployment.public, 4, KEY), lambda codes: codes == [200] * 4,
                        timeout=30, every=1)
    assert answered == [200] * 4
    status = cluster.vllmgen("status", str(deployment.spec), "--all", env=ENV)
    assert status.returncode == 1
    assert "problem: node rep-b: vg-rep-rep-b is exited" in status.stdout, status.stdout
    assert f"problem: API server on node rep-b ({deployment.replicas['rep-b']}): /health" in status.stdout, status.stdout


def test_down_removes_the_gateway_first_then_the_router(deployment: Deployment) -> None:
    cluster = deployment.cluster
    down = ok_stderr(cluster.vllmgen("down", str(deployment.spec), "--all", env=ENV))
    removed = [line for line in down.splitlines() if "down: removed" in line]
    assert "vg-rep-gateway" in removed[0] and "rep-a: down: removed vg-rep-router (router)" in removed[1], down
    for daemon in cluster.daemons:
        assert daemon.client().containers.list(all=True, filters={"name": "vg-rep"}) == []
