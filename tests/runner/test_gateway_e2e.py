"""The front door against real components: `vllmgen apply` of a spec with an API key starts a real CPU vLLM
(and a real vllm-router) behind the gateway (a real nginx, in a container built from the test rootfs with
Debian's nginx), then an attacker on another namespace host, without the key, tries every client and admin
path through the public address and the servers' and router's own ports: nothing answers but 401/404 or a
refused connection. A client with the key gets completions, streamed ones too. On the same deployment (one
apply for the module, with the daemon.json merge), apply's and status's startup report, `vllmgen bench` (`vllm
bench serve` inside the container, run twice, compared) and the rendered monitoring are tested too: a real
Prometheus (Debian's) on the node scrapes the server behind the front door, with samples for every metric
family the dashboard reads. They had CPU vLLMs of their own (test_bench_real.py, test_monitoring_real.py).
The replicas and router behind the gateway are tested on the deployment test_router_e2e.py shares between
its tests (this module's helpers attack it).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from infra import cache
from infra.images import ensure_nginx_image

from vllmgen.plan import gateway
from vllmgen.render.monitoring import metric_names

from .support import VLLM_READY_S, Cluster, apply_args, cpu_vllm_tp_spec, debian_tool, ok_stderr, wait_for, write_spec

pytestmark = pytest.mark.slow
KEY = "door-test.key+0123456789/abcdef"
PORT, GATEWAY_PORT, ROUTER_PORT, PROMETHEUS_PORT = 18000, 18800, 18080, 19090
ENV = {"VG_DOOR_KEY": KEY}

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


@dataclass
class Door:
    cluster: Cluster
    folder: Path
    spec: Path
    log: str  # apply's progress (stderr)
    applied: dict  # apply's --output json (stdout): the startup report among it


@pytest.fixture(scope="module")
def door(two_hosts_made: Cluster, tmp_path_factory: pytest.TempPathFactory, python_prefix: str) -> Iterator[Door]:
    """One keyed CPU vLLM behind the gateway on host 0, applied once for this module's tests (each real CPU
    vLLM takes 35-90 s to start; the startup report and `vllmgen bench` had their own before); downed and the
    hosts put back as they were made after them."""
    cluster = two_hosts_made
    cluster.clear()
    tmp_path = tmp_path_factory.mktemp("door")
    venv = cache.vllm_venv()
    vllm = (str(venv), str(cache.tiny_model(venv / "bin" / "python")))
    image = ensure_nginx_image(cluster.daemons[0].client())
    nodes = [{"name": "solo", "address": cluster.hosts.addresses[0], "gpus": 1,
              "docker_host": cluster.daemons[0].endpoint}]
    spec = cpu_vllm_tp_spec("vg-door", vllm, python_prefix, tmp_path, nodes)
    spec["secrets"] = {"api_key": {"env": "VG_DOOR_KEY"}}
    spec["gateway"] = {"image": image, "port": GATEWAY_PORT}
    spec["monitoring"] = {"prometheus_port": PROMETHEUS_PORT, "scrape_interval": "1s"}
    path = write_spec(tmp_path, spec)
    try:
        result = cluster.vllmgen(*_apply(cluster, path), "--output", "json", env=ENV)
        yield Door(cluster, tmp_path, path, ok_stderr(result), json.loads(result.stdout))
    finally:
        cluster.vllmgen("down", str(path), "--all")  # a no-op after the last test's own down
        cluster.clear()


def _apply(cluster: Cluster, spec: Path) -> list[str]:
    """apply with host 0's daemon.json merged (and its dockerd restarted) where the spec's keys are missing."""
    return apply_args(spec, "--all", "--no-gpus", "--timeout", str(VLLM_READY_S), daemon=cluster.daemons[0])


def test_single_node_behind_the_real_gateway(door: Door) -> None:
    cluster, log, a = door.cluster, door.log, door.cluster.hosts.addresses[0]
    client = cluster.daemons[0].client()
    assert f"solo: gateway: created (http://{a}:{GATEWAY_PORT} in front of 127.0.0.1:{PORT}" in log, log
    assert re.search(r"without the API key at http://\S+: (\d+) of \1 paths refused", log), log
    server = client.containers.get("vg-door-solo").attrs["Config"]["Cmd"]
    assert server[-2:] == ["--host", "127.0.0.1"]  # gateway, Prometheus and vllmgen all on this node
    gateway = client.containers.get("vg-door-gateway").attrs["Config"]
    assert KEY not in json.dumps(gateway["Cmd"]) + json.dumps(gateway["Labels"]) + json.dumps(gateway["Entrypoint"])
    assert KEY not in client.containers.get("vg-door-gateway").logs().decode(errors="replace")
    assert KEY not in "".join(p.read_text(errors="replace") for p in (door.folder / "build").rglob("*") if p.is_file())

    _check(_attack(cluster, f"http://{a}:{GATEWAY_PORT}", [PORT]), [PORT])

    status = cluster.vllmgen("status", str(door.spec), "--all", "--output", "json", env=ENV)
    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)
    assert report["gateway"]["health"] == 200 and report["gateway"]["without_key"] == 401


def _on_node(cluster: Cluster, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net={cluster.hosts.path(0)}", *argv], capture_output=True, text=True,
                          timeout=30, check=False)


def _query(cluster: Cluster, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/query?query={urllib.parse.quote(expr)}"
    result = _on_node(cluster, "curl", "-fsS", "--noproxy", "*", url)
    return json.loads(result.stdout)["data"]["result"] if result.returncode == 0 else []


def test_real_prometheus_scrapes_the_server_behind_the_gateway(door: Door) -> None:
    """The rendered prometheus.yml, in a real Prometheus on the node: it scrapes the server the front door hides
    (its /metrics answers nobody through the gateway: test_single_node_behind_the_real_gateway), every metric
    family the dashboard reads is there, and the completions served so far are counted."""
    cluster, folder = door.cluster, door.folder
    config = folder / "build" / "vg-door" / "monitoring" / "prometheus.yml"
    prometheus = subprocess.Popen(
        ["nsenter", f"--net={cluster.hosts.path(0)}", debian_tool("prometheus", "prometheus"),
         f"--config.file={config}", f"--storage.tsdb.path={folder / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        up = wait_for(lambda: _query(cluster, 'up{job="vllm",deployment="vg-door"} == 1'), bool, timeout=60, every=1)
        assert up, "Prometheus never scraped vLLM"
        live = _on_node(cluster, "curl", "-fsS", "--noproxy", "*", f"http://127.0.0.1:{PORT}/metrics").stdout
        for name in sorted(metric_names()):
            family = name.removesuffix("_bucket")
            assert f"# TYPE {family} " in live, f"the dashboard reads {name}, which the live server lacks"
        served = wait_for(lambda: _query(cluster, 'vllm:request_success_total{deployment="vg-door",node="solo"}'),
                          lambda found: sum(float(s["value"][1]) for s in found) >= 1, timeout=30, every=1)
        assert served and sum(float(s["value"][1]) for s in served) >= 1, served
        assert wait_for(lambda: _query(cluster, 'vllm:kv_cache_usage_perc{deployment="vg-door"}'), bool, timeout=30)
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=20)


def test_startup_phases_from_apply_and_status(door: Door) -> None:
    """apply and status report the startup phases with plausible seconds, counted from the container's start
    (the interpreter and imports before vLLM's first line shown as their own phase)."""
    [entry] = door.applied["startup"]
    rows = {row["name"]: row for row in entry["phases"]}
    assert entry["container"] == "vg-door-solo" and entry["vllm_version"] == "0.32.0"
    assert 0 < rows["container start"]["seconds"] < 60 and rows["image"]["seconds"] > 0
    assert rows["model load"]["seconds"] is not None and rows["engine init"]["seconds"] > 0
    assert rows["compile"]["seconds"] is None and rows["compile"]["note"] == "not run (eager mode)"
    ready = rows["first healthy answer"]["seconds"]
    assert 5 < ready < VLLM_READY_S and rows["first token"]["seconds"] >= ready
    assert entry["ready_seconds"] is not None and entry["ready_seconds"] <= ready + 2
    assert entry["ready_from"] == "start" and rows["python start"]["seconds"] > 0
    assert entry["ready_seconds"] > entry["log_seconds"]
    status = door.cluster.vllmgen("status", str(door.spec), "--all", "--output", "json", env=ENV)
    assert status.returncode == 0, status.stdout + status.stderr
    phases = json.loads(status.stdout)["endpoint"]["startup"]["phases"]
    assert {row["name"] for row in phases} >= {"model load", "engine init"}


def test_bench_runs_vllm_bench_inside_the_container_and_compares(door: Door) -> None:
    """`vllmgen bench` runs `vllm bench serve` inside the container (the key in its environment), prints the
    table and the JSON, keeps the run, and a second run is compared with the first."""
    results = door.folder / "results"
    bench = ["bench", str(door.spec), "--preset", "smoke", "--results", str(results)]
    ran = door.cluster.vllmgen(*bench, "--output", "json", env=ENV)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    first = json.loads(ran.stdout)
    assert first["where"] == "inside container vg-door-solo on node solo" and first["previous"] is None
    assert [(r["concurrency"], r["completed"], r["failed"]) for r in first["rows"]] == [(1, 4, 0), (2, 8, 0)]
    assert all(r["output_tokens_per_s"] > 0 and r["ttft_p50_ms"] > 0 for r in first["rows"])
    kept = json.loads(Path(first["stored"]).read_text())
    assert kept["results"][0]["completed"] == 4 and KEY not in Path(first["stored"]).read_text()
    again = door.cluster.vllmgen(*bench, env=ENV)
    assert again.returncode == 0, again.stdout + again.stderr
    second = again.stdout
    assert "vllm bench serve ran inside container vg-door-solo on node solo" in second
    assert "compared with the last run of this spec" in second and "vs last: req/s" in second
    assert len(list((results / "vg-door").glob("*-smoke.json"))) == 2


def test_reapply_changes_nothing_and_down_removes_the_gateway_first(door: Door) -> None:
    cluster = door.cluster
    again = ok_stderr(cluster.vllmgen(*_apply(cluster, door.spec), env=ENV))
    assert "nothing changed" in again, again
    down = ok_stderr(cluster.vllmgen("down", str(door.spec), "--all"))
    lines = [line for line in down.splitlines() if "down: removed" in line]
    assert "vg-door-gateway" in lines[0], down  # the front door goes first
    assert cluster.daemons[0].client().containers.list(all=True, filters={"name": "vg-door"}) == []
