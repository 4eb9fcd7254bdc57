"""The front door against real components: `vllmgen apply` of a spec with an API key starts a real CPU vLLM
(and a real vllm-router) behind the gateway (a real nginx, in a container built from the test rootfs with
Debian's nginx), then an attacker on another namespace host, without the key, tries every client and admin
path through the public address and the servers' and router's own ports: nothing answers but 401/404 or a
refused connection. A client with the key gets completions, streamed ones too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from infra import cache
from infra.images import ensure_nginx_image

from vllmgen.plan import gateway

from .support import Cluster, apply_args, write_spec
from .test_vllm_e2e import _ok, _spec

pytestmark = pytest.mark.slow
KEY = "door-test.key+0123456789/abcdef"
PORT, GATEWAY_PORT, ROUTER_PORT = 18000, 18800, 18080

ATTACK = r"""
import json, socket, sys, urllib.request as u, urllib.error as e
public, key, ports = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3].split(",")]
opener = u.build_opener(u.ProxyHandler({}))
paths = ["/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/score",
         "/v1/rerank", "/v1/audio/transcriptions", "/v1/audio/translations", "/health", "/invocations", "/tokenize",
         "/detokenize", "/metrics", "/openapi.json", "/docs", "/version", "/ping", "/pooling", "/classify",
         "/add_worker?url=http://10.77.0.2:9", "/remove_worker?url=http://127.0.0.1:18000", "/list_workers",
         "/scale_elastic_ep", "/v1/models/../../invocations", "/%69nvocations"]
chat = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}).encode()
prompt = json.dumps({"model": "tiny", "prompt": "hi", "max_tokens": 4}).encode()
def call(url, method, headers, body=None):
    try:
        with opener.open(u.Request(url, body, headers, method=method), timeout=60) as r:
            return r.status, r.read().decode(errors="replace")
    except e.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)
out = {"without_key": {}, "wrong_key": {}, "with_key": {}, "ports": {}}
for path in paths:
    for method in ("GET", "POST"):
        body = (prompt if path == "/v1/completions" else chat) if method == "POST" else None
        json_type = {"Content-Type": "application/json"}
        out["without_key"][f"{method} {path}"] = call(public + path, method, json_type, body)[0]
        out["wrong_key"][f"{method} {path}"] = call(public + path, method, {**json_type, "Authorization": "Bearer x"}, body)[0]
        out["with_key"][f"{method} {path}"] = call(public + path, method, {**json_type, "Authorization": "Bearer " + key}, body)[0]
host = public.split("//")[1].rsplit(":", 1)[0]
for port in ports:
    s = socket.socket(); s.settimeout(3)
    out["ports"][port] = s.connect_ex((host, port)); s.close()
stream = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True}).encode()
request = u.Request(public + "/v1/chat/completions", stream, {"Content-Type": "application/json", "Authorization": "Bearer " + key})
with opener.open(request, timeout=60) as r:
    out["stream"] = [line.decode().strip() for line in r if line.startswith(b"data:")]
print(json.dumps(out))
"""


def _attack(cluster: Cluster, public: str, ports: list[int]) -> dict:
    """From host 1's namespace: another machine on the network, without (and then with) the key."""
    out = subprocess.run(["nsenter", f"--net={cluster.hosts.path(1)}", sys.executable, "-c", ATTACK, public, KEY,
                          ",".join(map(str, ports))], capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout)


def _check(result: dict, closed_ports: list[int], router: bool = False) -> None:
    """Without the key (or with a wrong one) every path is 401; with it the client API answers and every
    other path is 404; the servers' and router's own ports refuse the connection on the public address.
    ``router``: vllm-router 0.1.17 answers some forwarded client paths 401 although the gateway passed the
    key on (seen: POST /v1/responses): listed, allowed (refusing is not the danger here)."""
    assert set(result["without_key"].values()) == {401}, result["without_key"]
    assert set(result["wrong_key"].values()) == {401}, result["wrong_key"]
    answered = {"GET /v1/models", "POST /v1/chat/completions", "POST /v1/completions", "GET /health"}
    for call, status in result["with_key"].items():
        path = call.split(" ", 1)[1]
        if call in answered:
            assert status == 200, (call, status)
        elif path in gateway.CLIENT_PATHS:  # forwarded: vLLM answers (405, 400, 404 for a task it lacks)
            assert status != 0 and (status != 401 or router), (call, status)
            if status == 401:
                print(f"through vllm-router: {call} answered 401 with the key")
        else:  # vLLM's other paths and the router's admin paths: unreachable with the key too
            assert status == 404, (call, status)
    assert all(result["ports"][str(port)] != 0 for port in closed_ports), result["ports"]
    assert len(result["stream"]) >= 2 and result["stream"][-1] == "data: [DONE]", result["stream"]


def test_single_node_behind_the_real_gateway(two_hosts: Cluster, tmp_path: Path, python_prefix: str) -> None:
    venv = cache.vllm_venv()
    vllm = (str(venv), str(cache.tiny_model(venv / "bin" / "python")))
    image = ensure_nginx_image(two_hosts.daemons[0].client())
    a = two_hosts.hosts.addresses[0]
    nodes = [{"name": "solo", "address": a, "gpus": 1, "docker_host": two_hosts.daemons[0].endpoint}]
    spec = _spec("vg-door", vllm, python_prefix, tmp_path, nodes)
    spec["secrets"] = {"api_key": {"env": "VG_DOOR_KEY"}}
    spec["gateway"] = {"image": image, "port": GATEWAY_PORT}
    spec = write_spec(tmp_path, spec)
    env = {"VG_DOOR_KEY": KEY}
    client = two_hosts.daemons[0].client()
    try:
        log = _ok(two_hosts.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", "300"), env=env, timeout=900))
        assert f"solo: gateway: created (http://{a}:{GATEWAY_PORT} in front of 127.0.0.1:{PORT}" in log, log
        assert re.search(r"without the API key at http://\S+: (\d+) of \1 paths refused", log), log
        server = client.containers.get("vg-door-solo").attrs["Config"]["Cmd"]
        assert server[-2:] == ["--host", "127.0.0.1"]  # gateway, Prometheus and vllmgen all on this node
        door = client.containers.get("vg-door-gateway").attrs["Config"]
        assert KEY not in json.dumps(door["Cmd"]) + json.dumps(door["Labels"]) + json.dumps(door["Entrypoint"])
        assert KEY not in client.containers.get("vg-door-gateway").logs().decode(errors="replace")
        assert KEY not in "".join(p.read_text(errors="replace") for p in (tmp_path / "build").rglob("*") if p.is_file())

        _check(_attack(two_hosts, f"http://{a}:{GATEWAY_PORT}", [PORT]), [PORT])

        status = two_hosts.vllmgen("status", str(spec), "--all", "--output", "json", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert report["gateway"]["health"] == 200 and report["gateway"]["without_key"] == 401
        again = _ok(two_hosts.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", "300"), env=env))
        assert "nothing changed" in again, again
    finally:
        down = _ok(two_hosts.vllmgen("down", str(spec), "--all"))
    lines = [line for line in down.splitlines() if "down: removed" in line]
    assert "vg-door-gateway" in lines[0], down  # the front door goes first
    assert client.containers.list(all=True, filters={"name": "vg-door"}) == []


def _ip(namespace: str, *args: str) -> None:
    subprocess.run(["ip", "-n", Path(namespace).name, *args], check=True, capture_output=True)


def test_replicas_and_router_behind_the_real_gateway(two_hosts: Cluster, tmp_path: Path, python_prefix: str) -> None:
    """Two CPU vLLM replicas behind the real vllm-router, the gateway in front on a public address of
    host 0 (10.77.1.1, a second address): the attacker on host 1 reaches only that address."""
    from .test_router_e2e import _router_base, router_venv_path

    venv = cache.vllm_venv()
    vllm = (str(venv), str(cache.tiny_model(venv / "bin" / "python")))
    router_venv = router_venv_path()
    _router_base(two_hosts.daemons[0].client())
    image = ensure_nginx_image(two_hosts.daemons[0].client())
    a, b = two_hosts.hosts.addresses
    public = "10.77.1.1"
    _ip(two_hosts.hosts.path(0), "addr", "add", f"{public}/24", "dev", "vg0")
    _ip(two_hosts.hosts.path(1), "route", "add", "10.77.1.0/24", "dev", "vg0")
    nodes = [
        {"name": "rep-a", "role": "head", "address": a, "gpus": 1, "docker_host": two_hosts.daemons[0].endpoint},
        {"name": "rep-b", "role": "worker", "address": b, "gpus": 1, "docker_host": two_hosts.daemons[1].endpoint},
    ]
    spec = _spec("vg-door-rep", vllm, python_prefix, tmp_path, nodes, ipc_host=False, backend="replicas")
    spec["serve"]["tensor_parallel_size"] = 1
    spec["secrets"] = {"api_key": {"env": "VG_DOOR_KEY"}}
    spec["router"] = {
        "node": "rep-a", "port": ROUTER_PORT, "policy": "round_robin", "health_check_interval_s": 2,
        "volumes": [{"host": python_prefix, "container": python_prefix},
                    {"host": router_venv, "container": router_venv}],
        "extra_env": {"PATH": f"{router_venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
    }
    spec["gateway"] = {"image": image, "port": GATEWAY_PORT, "address": public}
    spec = write_spec(tmp_path, spec)
    env = {"VG_DOOR_KEY": KEY}
    try:
        log = _ok(two_hosts.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", "300",
                                                "--router-base-image", "local/vllmgen-routerbase:1"),
                                    env=env, timeout=900))
        assert f"rep-a: gateway: created (http://{public}:{GATEWAY_PORT} in front of 127.0.0.1:{ROUTER_PORT}" in log
        router = two_hosts.daemons[0].client().containers.get("vg-door-rep-router").attrs["Config"]["Cmd"]
        assert router[:2] == ["--host", "127.0.0.1"]
        assert router[-2:] == ["http://127.0.0.1:18000", f"http://{b}:18000"]

        _check(_attack(two_hosts, f"http://{public}:{GATEWAY_PORT}", [PORT, ROUTER_PORT]), [PORT, ROUTER_PORT],
               router=True)

        # the attacker's /add_worker never reached the router: it still fronts exactly the spec's two servers
        listed = subprocess.run(["nsenter", f"--net={two_hosts.hosts.path(0)}", "curl", "-s", "--noproxy", "*",
                                 f"http://127.0.0.1:{ROUTER_PORT}/list_workers"], capture_output=True, text=True,
                                timeout=30, check=True).stdout
        assert "10.77.0.2:9" not in listed, listed
        status = two_hosts.vllmgen("status", str(spec), "--all", "--output", "json", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert report["gateway"]["health"] == 200 and report["router"]["health"] == 200
    finally:
        down = _ok(two_hosts.vllmgen("down", str(spec), "--all"))
    removed = [line for line in down.splitlines() if "down: removed" in line]
    assert "vg-door-rep-gateway" in removed[0] and "vg-door-rep-router" in removed[1], down
