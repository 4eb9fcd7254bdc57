"""The rendered monitoring config against real consumers: Debian's promtool checks it, and a real
Prometheus (Debian's binary, run in the node's namespace) scrapes a real vLLM that `apply` started,
with samples for every metric family the dashboard reads. The same deployment (one apply for the module)
is the one-host end-to-end test: apply verifies a real chat completion, and again changes nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from infra import cache

from vllmgen.render.monitoring import metric_names

from .support import CPU_VLLM_ENV, PATH, ROOT, VLLM_READY_S, Cluster, apply_args, wait_for, write_spec

pytestmark = pytest.mark.slow
PORT = 18020
PROMETHEUS_PORT = 19090


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} (Debian package prometheus) is needed: tests/infra/setup.sh installs it"
    return found


@pytest.mark.parametrize("config", sorted((ROOT / "build").glob("*/monitoring/prometheus.yml")),
                         ids=lambda p: p.parents[1].name)
def test_promtool_accepts_every_rendered_scrape_config(config: Path) -> None:
    result = subprocess.run([_tool("promtool"), "check", "config", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def _in_namespace(cluster: Cluster, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net={cluster.hosts.path(0)}", *argv], capture_output=True, text=True,
                          timeout=timeout, check=False)


def _query(cluster: Cluster, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/query?query={urllib.parse.quote(expr)}"
    result = _in_namespace(cluster, "curl", "-fsS", "--noproxy", "*", url)
    if result.returncode != 0:
        return []
    return json.loads(result.stdout)["data"]["result"]


@dataclass
class Watched:
    cluster: Cluster
    folder: Path
    spec: Path
    apply: list[str]  # the apply command's arguments
    log: str  # apply's progress (stderr)


@pytest.fixture(scope="module")
def watched(one_host_made: Cluster, tmp_path_factory: pytest.TempPathFactory, python_prefix: str) -> Iterator[Watched]:
    """One keyless CPU vLLM with monitoring on the namespace host, applied once for this module's tests (each
    real CPU vLLM takes 35-90 s to start);
    downed and the host put back as it was made after them."""
    cluster = one_host_made
    cluster.clear()
    tmp_path = tmp_path_factory.mktemp("watch")
    venv = cache.vllm_venv()
    model = cache.tiny_model(venv / "bin" / "python")
    daemon = cluster.daemons[0]
    spec = write_spec(tmp_path, {
        "version": 1,
        "name": "vg-watch",
        "image": {"base": "vllm/vllm-openai:v0.32.0"},
        "model": {"source": "test/tiny", "host_path": str(model), "path": "/models/tiny", "served_name": "tiny",
                  "hf_cache": str(tmp_path / "hf-cache")},
        "runtime": {
            "volumes": [{"host": python_prefix, "container": python_prefix, "read_only": True},
                        {"host": str(venv), "container": str(venv), "read_only": True}],
            "env": {"PATH": f"{venv}/bin:{PATH}", **CPU_VLLM_ENV},
        },
        "caches": {"host_path": str(tmp_path / "engine-caches")},
        "monitoring": {"prometheus_port": PROMETHEUS_PORT, "scrape_interval": "1s"},
        "nodes": [{"name": "solo", "address": "127.0.0.1", "gpus": 1, "docker_host": daemon.endpoint}],
        "serve": {"max_model_len": 256, "enforce_eager": True, "port": PORT, "extra_args": ["--load-format", "dummy"]},
    })
    # the kept caches as an earlier start on this machine leaves them (default caches.host_path: ~/.cache)
    cache.seed_vllm_cache(tmp_path / "engine-caches" / "vg-watch" / "vllm", venv / "bin" / "python", model)
    apply = apply_args(spec, "--all", "--no-gpus", "--timeout", str(VLLM_READY_S), daemon=daemon)
    try:
        applied = cluster.vllmgen(*apply)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        yield Watched(cluster, tmp_path, spec, apply, applied.stderr)
    finally:
        cluster.vllmgen("down", str(spec), "--all")  # a no-op after the last test's own down
        cluster.clear()


def test_real_vllm_on_one_host(watched: Watched) -> None:
    """apply (with the daemon.json merge) starts it and verifies a real chat completion; again, nothing changes."""
    assert "verify: /v1/models lists tiny" in watched.log and "verify: chat completion answered" in watched.log
    again = watched.cluster.vllmgen(*watched.apply)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing changed" in again.stderr


def test_real_prometheus_scrapes_the_deployed_vllm(watched: Watched) -> None:
    one_host, tmp_path = watched.cluster, watched.folder
    config = tmp_path / "build" / "vg-watch" / "monitoring" / "prometheus.yml"
    prometheus = None
    try:
        prometheus = subprocess.Popen(
            ["nsenter", f"--net={one_host.hosts.path(0)}", _tool("prometheus"), f"--config.file={config}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        up = wait_for(lambda: _query(one_host, 'up{job="vllm",deployment="vg-watch"} == 1'), bool, timeout=60, every=1)
        assert up, "Prometheus never scraped vLLM"
        live = _in_namespace(one_host, "curl", "-fsS", "--noproxy", "*", f"http://127.0.0.1:{PORT}/metrics").stdout
        for name in sorted(metric_names()):
            family = name.removesuffix("_bucket")
            assert f"# TYPE {family} " in live, f"the dashboard reads {name}, which the live server lacks"
        # the verify step's chat completion, once a scrape after it has landed
        served = wait_for(lambda: _query(one_host, 'vllm:request_success_total{deployment="vg-watch",node="solo"}'),
                          lambda found: sum(float(s["value"][1]) for s in found) >= 1, timeout=30, every=1)
        assert served and sum(float(s["value"][1]) for s in served) >= 1, served
        assert wait_for(lambda: _query(one_host, 'vllm:kv_cache_usage_perc{deployment="vg-watch"}'), bool, timeout=30)
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=20)


def test_down_removes_the_deployment(watched: Watched) -> None:
    down = watched.cluster.vllmgen("down", str(watched.spec), "--all")
    assert down.returncode == 0, down.stdout + down.stderr
    assert watched.cluster.daemons[0].client().containers.list(all=True, filters={"name": "vg-watch"}) == []
