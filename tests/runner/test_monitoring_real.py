"""The rendered monitoring config against real consumers: Debian's promtool checks it, and a real
Prometheus (Debian's binary, run in the node's namespace) scrapes a real vLLM that `apply` started,
with samples for every metric family the dashboard reads."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from infra import cache

from vllmgen.render.monitoring import metric_names

from .support import PATH, ROOT, VLLM_READY_S, Cluster, apply_args, wait_for, write_spec

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


def test_real_prometheus_scrapes_the_deployed_vllm(one_host: Cluster, tmp_path: Path, python_prefix: str) -> None:
    venv = cache.vllm_venv()
    model = cache.tiny_model(venv / "bin" / "python")
    daemon = one_host.daemons[0]
    spec = write_spec(tmp_path, {
        "version": 1,
        "name": "vg-watch",
        "image": {"base": "vllm/vllm-openai:v0.32.0"},
        "model": {"source": "test/tiny", "host_path": str(model), "path": "/models/tiny", "served_name": "tiny",
                  "hf_cache": str(tmp_path / "hf-cache")},
        "runtime": {
            "volumes": [{"host": python_prefix, "container": python_prefix, "read_only": True},
                        {"host": str(venv), "container": str(venv), "read_only": True}],
            "env": {"PATH": f"{venv}/bin:{PATH}", "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
                    "TORCH_COMPILE_DISABLE": "1"},
        },
        "caches": {"host_path": str(tmp_path / "engine-caches")},
        "monitoring": {"prometheus_port": PROMETHEUS_PORT, "scrape_interval": "1s"},
        "nodes": [{"name": "solo", "address": "127.0.0.1", "gpus": 1, "docker_host": daemon.endpoint}],
        "serve": {"max_model_len": 256, "enforce_eager": True, "port": PORT, "extra_args": ["--load-format", "dummy"]},
    })
    config = tmp_path / "build" / "vg-watch" / "monitoring" / "prometheus.yml"
    prometheus = None
    try:
        applied = one_host.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", str(VLLM_READY_S),
                                               daemon=daemon))
        assert applied.returncode == 0, applied.stdout + applied.stderr
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
        one_host.vllmgen("down", str(spec), "--all")
