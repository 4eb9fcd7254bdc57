"""Data/expert parallelism across nodes, replicas and the router: what the plan says per node."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vllmgen.render.compile import compile_file
from vllmgen.plan.engine import ready_timeout
from vllmgen.runner.executor import ContainerState
from vllmgen.runner.orphans import orphans, scan
from vllmgen.spec.validate import SpecError, validate_file

ROOT = Path(__file__).resolve().parents[1]


def _spec(nodes: int = 2, gpus: int = 8, serve: dict | None = None, backend: str = "mp", **extra) -> dict:
    spec = {
        "version": 1, "name": "dp", "model": {"source": "deepseek-ai/DeepSeek-V3", "served_name": "ds"},
        "cluster": {"backend": backend, "nic": "eth0", "ib_hcas": ["mlx5_0"]},
        "nodes": [{"name": f"n{i}", "address": f"192.0.2.{i + 1}", "role": "head" if i == 0 else "worker",
                   "gpus": gpus} for i in range(nodes)],
        "serve": serve or {},
    }
    spec.update(extra)
    return spec


def _compile(tmp_path: Path, spec: dict):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return compile_file(path)


def _tails(plan) -> dict[str, list[str]]:
    """Each node's flags after `--config FILE`, but its --host (vllmgen.plan.exposure's, tested in test_gateway.py)."""
    tails = {}
    for node in plan.nodes:
        words = list(node.container.command[4:])
        if "--host" in words:
            del words[words.index("--host"):words.index("--host") + 2]
        tails[node.name] = words
    return tails


def test_internal_lb_ranks_per_node(tmp_path):
    plan = _compile(tmp_path, _spec(3, 8, {"tensor_parallel_size": 2, "data_parallel_size": 12})).plan
    assert _tails(plan) == {
        "n0": ["--data-parallel-size-local", "4"],
        "n1": ["--data-parallel-size-local", "4", "--data-parallel-start-rank", "4", "--headless"],
        "n2": ["--data-parallel-size-local", "4", "--data-parallel-start-rank", "8", "--headless"],
    }
    config = plan.serve_config
    assert config["data-parallel-address"] == "192.0.2.1" and config["data-parallel-rpc-port"] == 29550
    assert "nnodes" not in config and "master-addr" not in config  # DP is not torch.distributed's --nnodes
    assert [n.container.healthcheck is not None for n in plan.nodes] == [True, False, False]


@pytest.mark.parametrize(("lb", "serving"), [("internal", ["n0"]), ("hybrid", ["n0", "n1"])])
def test_api_server_count_goes_only_to_nodes_that_serve(tmp_path, lb, serving):
    """vLLM's `serve` refuses --api-server-count beside --headless: across nodes the count is a serving node's
    own flag, not a line of the serve-config.yaml every node reads."""
    serve = {"data_parallel_size": 16, "data_parallel": {"lb": lb, "api_server_count": 2}}
    plan = _compile(tmp_path, _spec(2, 8, serve, **({"router": {}} if lb == "hybrid" else {}))).plan
    assert "api-server-count" not in plan.serve_config
    counted = [name for name, tail in _tails(plan).items() if tail[-2:] == ["--api-server-count", "2"]]
    assert counted == serving
    alone = {"data_parallel_size": 8, "data_parallel": {"api_server_count": 2}}  # one node: every flag shared
    assert _compile(tmp_path, _spec(1, 8, alone)).plan.serve_config["api-server-count"] == 2


def test_hybrid_lb_every_node_serves_and_the_router_fronts_them(tmp_path):
    spec = _spec(2, 8, {"data_parallel_size": 16, "data_parallel": {"lb": "hybrid", "address": "192.0.2.1"}},
                 router={"port": 8080})
    plan = _compile(tmp_path, spec).plan
    assert _tails(plan)["n1"] == ["--data-parallel-size-local", "8", "--data-parallel-start-rank", "8"]
    assert plan.serve_config["data-parallel-hybrid-lb"] is True
    # the router runs on the head: the head's server listens on loopback for it, the other on its own address
    assert [w.url for w in plan.router.workers] == ["http://127.0.0.1:8000", "http://192.0.2.2:8000"]
    assert plan.router.argv()[-3:] == ("--worker-urls", "http://127.0.0.1:8000", "http://192.0.2.2:8000")
    assert [t.address for t in plan.monitoring.targets] == ["127.0.0.1:8000", "192.0.2.2:8000"]


def test_external_lb_one_rank_per_node(tmp_path):
    plan = _compile(tmp_path, _spec(2, 4, {"tensor_parallel_size": 4, "data_parallel_size": 2,
                                           "data_parallel": {"lb": "external"}}, router={})).plan
    assert _tails(plan) == {"n0": ["--data-parallel-rank", "0"], "n1": ["--data-parallel-rank", "1"]}


def test_expert_parallel_env_caps_and_ready_timeout(tmp_path):
    ep = {"enabled": True, "all2all_backend": "deepep_high_throughput", "gid_index": 3}
    compiled = _compile(tmp_path, _spec(2, 8, {"data_parallel_size": 16, "expert_parallel": ep}))
    node = compiled.plan.nodes[1]
    env = dict(node.container.env)
    assert env["NVSHMEM_BOOTSTRAP_UID_SOCK_IFNAME"] == "eth0" and env["NVIDIA_GDRCOPY"] == "enabled"
    assert env["NCCL_IB_GID_INDEX"] == env["NVSHMEM_IB_GID_INDEX"] == "3"
    assert node.container.cap_add == ("IPC_LOCK", "SYS_RAWIO")
    assert compiled.plan.serve_config["all2all-backend"] == "deepep_high_throughput"
    # the expert-parallel warm-up (600 s + 30 s per DP rank) is in the derived allowance, and said so
    timeout = ready_timeout(compiled.valid.spec)
    assert "1080 s expert-parallel warm-up" in timeout.why
    assert int(env["VLLM_ENGINE_READY_TIMEOUT_S"]) == timeout.seconds >= 1080 + 300


def test_without_nvshmem_backend_no_gdrcopy(tmp_path):
    plan = _compile(tmp_path, _spec(2, 8, {"data_parallel_size": 16, "expert_parallel": {"enabled": True}})).plan
    env = dict(plan.nodes[0].container.env)
    assert "NVIDIA_GDRCOPY" not in env and plan.nodes[0].container.cap_add == ("IPC_LOCK",)


def test_replicas_serve_alone(tmp_path):
    spec = _spec(2, 4, {"tensor_parallel_size": 4}, backend="replicas", router={"node": "n1"})
    plan = _compile(tmp_path, spec).plan
    assert plan.backend == "replicas" and all(n.container.healthcheck for n in plan.nodes)
    assert _tails(plan) == {"n0": [], "n1": []}
    assert all("VLLM_HOST_IP" not in dict(n.container.env) for n in plan.nodes)
    assert plan.router.node == "n1" and plan.router.address == "192.0.2.2"


def test_one_head_first_list_of_api_servers(tmp_path):
    """The router's workers, Plan.server_urls and the runner's api_servers are one list, head first."""
    from vllmgen.runner.servers import api_servers

    spec = _spec(3, 4, {"tensor_parallel_size": 4}, backend="replicas", router={"node": "n2"})
    plan = _compile(tmp_path, spec).plan
    assert [node for node, _ in plan.server_urls] == ["n0", "n1", "n2"]
    assert plan.server_urls == tuple((w.node, w.url) for w in plan.router.workers)
    assert plan.server_urls == tuple((s.node, s.url) for s in api_servers(plan))


def test_the_router_container_is_planned(tmp_path):
    """The plan carries the router's container (as it does the gateway's): apply, the scripts and
    `vllmgen plan` read it there, not from a render module at apply time."""
    plan = _compile(tmp_path, _spec(2, 4, {"tensor_parallel_size": 4}, backend="replicas",
                                    router={"node": "n1", "port": 8080})).plan
    container = plan.router_container
    assert container.name == plan.router.container_name and container.image == plan.router.image
    labels = dict(container.labels)
    assert (labels["io.vllmgen.role"], labels["io.vllmgen.node"]) == ("router", "n1")
    assert container.healthcheck.command.endswith(":8080/health") and not container.gpus
    assert _compile(tmp_path, _spec(2, 4, {"tensor_parallel_size": 4}, backend="replicas")).plan.router_container is None


def test_router_is_an_orphan_only_where_the_spec_has_none(tmp_path):
    plan = _compile(tmp_path, _spec(2, 4, {"tensor_parallel_size": 4}, backend="replicas", router={})).plan
    labels = {"io.vllmgen.deployment": "dp", "io.vllmgen.role": "router"}
    here = ContainerState("dp-router", "running", None, {**labels, "io.vllmgen.node": "n0"})
    there = ContainerState("dp-router", "running", None, {**labels, "io.vllmgen.node": "n1"})
    assert orphans(plan, [here]) == [] and orphans(plan, [there]) == [there]


def test_one_orphan_scan_counts_a_shared_engines_container_once(tmp_path):
    """status, down and plan all read orphans.scan: two nodes on one engine list the same stray container."""
    from types import SimpleNamespace

    plan = _compile(tmp_path, _spec(2, 4, {"tensor_parallel_size": 4}, backend="replicas")).plan
    gone = ContainerState("dp-n9", "exited", 1, {"io.vllmgen.deployment": "dp", "io.vllmgen.node": "n9"})
    mine = ContainerState("dp-n0", "running", None, {"io.vllmgen.deployment": "dp", "io.vllmgen.node": "n0"})
    shared = {"n0": SimpleNamespace(endpoint=None), "n1": SimpleNamespace(endpoint=None)}
    assert scan(plan, {"n0": [mine, gone], "n1": [mine, gone]}, shared) == [("n0", gone)]
    apart = {"n0": SimpleNamespace(endpoint="ssh://a"), "n1": SimpleNamespace(endpoint="ssh://b")}
    assert scan(plan, {"n0": [gone], "n1": [gone]}, apart) == [("n0", gone), ("n1", gone)]


def test_the_ray_backend_refuses_dp_across_nodes(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_spec(2, 8, {"data_parallel_size": 16}, backend="ray")))
    with pytest.raises(SpecError) as caught:
        validate_file(str(path))
    assert any("backend 'mp' here" in str(d) for d in caught.value.diagnostics)


def test_doctor_checks_the_ports_of_dp_and_the_router(tmp_path):
    from vllmgen.doctor.from_spec import node_ports

    compiled = _compile(tmp_path, _spec(2, 8, {"data_parallel_size": 16, "data_parallel": {"lb": "hybrid"}},
                                        router={"port": 8080}))
    plan, spec = compiled.plan, compiled.valid.spec
    assert node_ports(plan, spec, plan.nodes[0]) == (8000, 8080, 29000, 29550)  # API, router, its metrics, DP RPC
    assert node_ports(plan, spec, plan.nodes[1]) == (8000,)  # hybrid: its own API server


@pytest.mark.parametrize("resolved, pinned, status", [
    (["127.0.1.1"], False, "fail"), (["127.0.1.1"], True, "warn"), (["127.0.1.1", "192.0.2.1"], False, "ok"),
])
def test_doctor_hostname_resolving_to_loopback(resolved, pinned, status):
    from vllmgen.doctor.network import check_hostname_resolution

    result = check_hostname_resolution("gpu-1", resolved, True, pinned)
    assert result.status == status and (status == "ok" or "127.0.1.1" in result.detail)
    assert check_hostname_resolution("gpu-1", resolved, False, pinned).status == "skip"


def test_doctor_live_probe_resolves_this_hosts_name():
    from vllmgen.doctor.probe import LiveProbe

    name, found = LiveProbe().hostname_addresses()
    assert name and all(isinstance(address, str) for address in found)


def test_a_router_is_refused_with_the_process_runtime(tmp_path):
    path = tmp_path / "spec.yaml"
    spec = _spec(2, 4, {"tensor_parallel_size": 4}, backend="replicas", router={})
    spec["runtime"] = {"kind": "process"}
    path.write_text(yaml.safe_dump(spec))
    try:
        validate_file(str(path))
    except SpecError as exc:
        messages = [str(d) for d in exc.diagnostics]
    else:
        messages = []
    assert any("router: the router runs in a container" in m for m in messages), messages


def test_a_flag_the_layout_needs_missing_from_the_catalog_warns(tmp_path, monkeypatch):
    from dataclasses import replace as dc_replace

    from vllmgen.spec import catalog
    from vllmgen.spec.rules import catalog as rules_catalog

    real, _ = catalog.load_catalog("0.32.0")
    older = dc_replace(real, flags={k: v for k, v in real.flags.items() if k != "--data-parallel-hybrid-lb"},
                       _index={})
    older = catalog.Catalog(older.version, older.flags, older.reasoning_parsers, older.tool_call_parsers,
                            older.speculative_methods)
    monkeypatch.setattr(rules_catalog, "catalog_for", lambda spec: (older, None))
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_spec(2, 8, {"data_parallel_size": 16, "data_parallel": {"lb": "hybrid"}},
                                         router={})))
    warnings = [str(w) for w in validate_file(str(path)).warnings]
    assert any("has no flag --data-parallel-hybrid-lb, which this layout needs" in w for w in warnings), warnings


def test_hybrid_with_one_rank_per_node_says_write_external(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_spec(2, 4, {"tensor_parallel_size": 4, "data_parallel_size": 2,
                                                "data_parallel": {"lb": "hybrid"}}, router={})))
    with pytest.raises(SpecError) as caught:
        validate_file(str(path))
    assert any("vLLM switches hybrid to external load balancing there; write lb: external" in str(d)
               for d in caught.value.diagnostics)


@pytest.mark.parametrize("backend", ["mp", "ray"])
def test_nodes_that_talk_to_each_other_know_each_others_names_without_dns(tmp_path, backend):
    """torch names its peers by reverse DNS (tests/runner/test_bundle_real.py's trap caught the queries on an
    air-gapped host): every container of a cluster gets every node's IP under its container name, head
    first, and no /etc/hosts line appears where nodes do not talk."""
    spec = _spec(3, 8, {"tensor_parallel_size": 24}, backend=backend)
    spec["nodes"][0]["role"], spec["nodes"][1]["role"] = "worker", "head"
    if backend == "ray":
        spec["cluster"] = {"backend": "ray", "nic": "eth0"}
    plan = _compile(tmp_path, spec).plan
    expected = tuple((name, ip) for name, v4 in (("dp-n1", "192.0.2.2"), ("dp-n0", "192.0.2.1"), ("dp-n2", "192.0.2.3"))
                     for ip in (v4, f"::ffff:{v4}"))  # as an IPv6 socket names an IPv4 peer, too
    assert [n.container.extra_hosts for n in plan.nodes] == [expected] * 3
    from vllmgen.targets.docker.dockercli import run_argv
    argv = run_argv(plan.nodes[2].container)
    assert argv[argv.index("--network") + 2:argv.index("--network") + 6] == [
        "--add-host", "dp-n1:192.0.2.2", "--add-host", "dp-n1:::ffff:192.0.2.2"]

    alone = _compile(tmp_path, _spec(2, 4, {"tensor_parallel_size": 4}, backend="replicas")).plan
    assert [n.container.extra_hosts for n in alone.nodes] == [(), ()]


def test_a_container_without_extra_hosts_keeps_the_hash_it_had():
    """extra_hosts came later: a container that has none hashes as before it existed, so an upgrade of vllmgen
    does not replace every running container for a field none of them uses."""
    import dataclasses
    import hashlib
    import json

    from vllmgen.plan.plan import Container, container_hash

    container = Container(name="c", image="i", entrypoint="vllm", command=("serve", "m"), env=(("A", "1"),),
                          secrets=(), mounts=(), labels=(("k", "v"),))
    before = {f.name: getattr(container, f.name) for f in dataclasses.fields(container) if f.name != "extra_hosts"}
    before = json.loads(json.dumps(before))  # tuples as lists, as the hash sees them
    before["labels"] = []
    expected = hashlib.sha256(json.dumps([before, "inputs"], sort_keys=True).encode()).hexdigest()[:16]
    assert container_hash(container, "inputs") == expected
    with_hosts = dataclasses.replace(container, extra_hosts=(("c", "192.0.2.1"),))
    assert container_hash(with_hosts, "inputs") != expected
