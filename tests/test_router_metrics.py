"""vllm-router's Prometheus listener (router.metrics_port): every runtime's rendered router binds it to
loopback on the spec's port (0.1.17 opens 127.0.0.1:29000 by itself, told or not: measured), the
Kubernetes NetworkPolicy lets nothing in on it, and the port-clash rules reserve it on the router's host
with a positioned error. tests/runner/test_router_e2e.py shows it with the real router: listening on
127.0.0.1 only, refused from another host."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from vllmgen.errors import SpecError
from vllmgen.render.compile import compile_file
from vllmgen.spec.validate import validate_file

ROOT = Path(__file__).resolve().parents[1]


def _after(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


@pytest.mark.parametrize("spec, router_file", [
    ("specs/dense-replicas-router.yaml", "router/start.sh"),  # docker
    ("specs/pd-one-node.yaml", "router/compose.yaml"),  # docker, P/D mode
    ("specs/k8s-replicas-router.yaml", "deployment-router.yaml"),  # kubernetes, service discovery
    ("specs/k8s-pd.yaml", "deployment-router.yaml"),  # kubernetes, P/D mode
    ("tests/fixtures/gpu/specs/h200-pd.yaml", "nodes/decode-0.router/run.sh"),  # process runtime (P/D)
])
def test_every_runtimes_router_binds_its_metrics_to_loopback(spec: str, router_file: str) -> None:
    compiled = compile_file(ROOT / spec)
    rendered = {artifact.path: artifact.content for artifact in compiled.artifacts}
    text = rendered[router_file]
    if router_file.endswith(".yaml") and "deployment" in router_file:
        words = [str(word) for word in yaml.safe_load(text)["spec"]["template"]["spec"]["containers"][0]["args"]]
    else:
        words = list(compiled.plan.router_container.command)  # type: ignore[union-attr]
    assert re.search(r"--prometheus-host\W+127\.0\.0\.1\W+--prometheus-port\W+29000\b", text), text
    assert _after(words, "--prometheus-host") == "127.0.0.1"
    assert _after(words, "--prometheus-port") == "29000"  # router.metrics_port's default, named: no default left to a version


@pytest.mark.parametrize("spec", ["specs/k8s-replicas-router.yaml", "specs/k8s-pd.yaml"])
def test_no_network_policy_lets_anyone_in_on_the_metrics_port(spec: str) -> None:
    compiled = compile_file(ROOT / spec)
    objects = [yaml.safe_load(a.content) for a in compiled.artifacts if a.path.endswith(".yaml")]
    policies = [o for o in objects if isinstance(o, dict) and o.get("kind") == "NetworkPolicy"]
    assert policies
    for policy in policies:
        for rule in policy["spec"]["ingress"]:
            assert 29000 not in [port["port"] for port in rule.get("ports", [])], policy
    router = next(p for p in policies if p["metadata"]["name"].endswith("-router"))
    assert [port["port"] for rule in router["spec"]["ingress"] for port in rule["ports"]] == [8080]  # its HTTP port only


def _diagnostics(path: Path, text: str) -> list[str]:
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        validate_file(str(path))
    return [str(d) for d in caught.value.diagnostics]


def _at(path: Path, text: str, needle: str, value: str = "") -> str:
    """file:line:col of the value after ``needle`` (the first line holding ``needle`` + ``value``)."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle + value in line:
            return f"{path}:{number}:{line.index(needle) + len(needle) + 1}"
    raise AssertionError(needle)


def _replicas(router: str, extra: str = "") -> str:
    source = (ROOT / "specs" / "dense-replicas-router.yaml").read_text()
    head, rest = source.split("router:\n", 1)
    return head + "router:\n" + router + "\n" + "\n".join(line for line in rest.splitlines() if not line.startswith("  ")) + extra


@pytest.mark.parametrize("router, taken", [
    ("  node: replica-a\n  metrics_port: 8000", "serve.port"),  # the API server on the router's host
    ("  node: replica-a\n  port: 8080\n  metrics_port: 8080", "router.port"),  # its own HTTP port
])
def test_a_metrics_port_taken_on_the_routers_host_is_refused_where_it_is_set(tmp_path: Path, router: str,
                                                                               taken: str) -> None:
    spec = tmp_path / "spec.yaml"
    text = _replicas(router)
    port = router.rsplit(" ", 1)[1]
    assert f"{_at(spec, text, 'metrics_port: ')}: router.metrics_port: port {port} on node replica-a is already used by " \
           f"{taken}" in _diagnostics(spec, text)


def test_the_metrics_port_on_another_host_than_the_servers_is_free(tmp_path: Path) -> None:
    """replica-b's API port is 8000 too, but the router runs on replica-a: no clash there... only on a's."""
    spec = tmp_path / "spec.yaml"
    text = _replicas("  node: replica-a\n  metrics_port: 9400")
    spec.write_text(text)
    assert validate_file(str(spec)) is not None


def test_the_gateways_port_may_not_take_the_routers_metrics_port(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    text = _replicas("  node: replica-a\n  metrics_port: 8443", "\ngateway:\n  port: 8443\n")
    assert f"{_at(spec, text, '  port: ', '8443')}: gateway.port: the gateway's port 8443 on node replica-a is already " \
           "used by router.metrics_port" in _diagnostics(spec, text)


def test_the_metrics_port_may_not_take_the_heads_ray_port(tmp_path: Path) -> None:
    source = (ROOT / "specs" / "seed-two-node-ray.yaml").read_text()
    spec = tmp_path / "spec.yaml"
    text = source + "\nrouter:\n  metrics_port: 6379\n"
    head = yaml.safe_load(source)["nodes"][0]["name"]
    assert f"{_at(spec, text, 'metrics_port: ')}: router.metrics_port: port 6379 on node {head} is already used by " \
           "cluster.ray_port" in _diagnostics(spec, text)


def test_a_pd_instance_may_not_take_the_routers_metrics_port(tmp_path: Path) -> None:
    source = (ROOT / "tests" / "fixtures" / "gpu" / "specs" / "h200-pd.yaml").read_text()
    spec = tmp_path / "spec.yaml"
    text = source.replace("  port: 8090\n", "  port: 8090\n  metrics_port: 8200\n")
    assert f"{_at(spec, text, 'metrics_port: ')}: router.metrics_port: port 8200 (vllm-router's metrics) is already " \
           "used on this host by disaggregation.decode.instances[0].port" in _diagnostics(spec, text)
