"""The doctor's per-node check that what apply and vLLM would otherwise fetch is on the host: the images of the
node's containers (the plan's one list, as `vllmgen bundle` carries them) and the model's Hugging Face cache
snapshot. A missing one fails under `offline: true` with the `bundle load` that brings it; otherwise the row
says what apply will build or pull. The host is a recorded probe folder written by each test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from vllmgen.bundle import contents
from vllmgen.doctor.from_spec import expectation
from vllmgen.doctor.host import docker_checks, storage_checks
from vllmgen.doctor.probe import ImageUnknown, RecordedProbe
from vllmgen.doctor.workloads import node_images
from vllmgen.render.compile import compile_file, plan_file
from vllmgen.render.write import write

ROOT = Path(__file__).resolve().parents[2]
AIRGAPPED = ROOT / "specs" / "airgapped.yaml"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SIDECARS = {"router": "vllmgen/qwen3-airgapped-router:0.1.17", "gateway": "nginx:1.28.0",
            "prometheus": "prom/prometheus:v3.5.0", "grafana": "grafana/grafana:12.1.1"}


def _host(folder: Path, images: dict[str, dict], *, listing: dict | None = None, files: dict | None = None) -> RecordedProbe:
    """A recorded host with a Docker engine holding ``images`` (reference -> id and labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "docker_info.json").write_text(json.dumps({"ServerVersion": "28.0.1", "Runtimes": {"runc": {}}}))
    (folder / "images.json").write_text(json.dumps(images))
    (folder / "listing.json").write_text(json.dumps(listing or {}))
    for path, text in (files or {}).items():
        (folder / (Path(path).name + ".txt")).write_text(text)
    (folder / "files.json").write_text(json.dumps({path: Path(path).name + ".txt" for path in files or {}}))
    return RecordedProbe(folder)


def _rows(results) -> dict:
    return {r.name: r for r in results}


def test_each_node_is_checked_for_the_images_its_containers_run_as_the_bundle_carries_them(tmp_path: Path) -> None:
    head = node_images(AIRGAPPED, "gpu-a")
    worker = node_images(AIRGAPPED, "gpu-b")
    assert [i.role for i in head] == ["vllm", "router", "gateway", "prometheus", "grafana"]
    assert [i.role for i in worker] == ["vllm"]
    assert {i.role: i.reference for i in head if not i.built} == {k: v for k, v in SIDECARS.items() if k != "router"}
    # the labels are those apply compares (and bundle builds with) for the rendered Dockerfiles
    compiled = compile_file(AIRGAPPED)
    write(compiled.artifacts, tmp_path / compiled.plan.name)
    carried = {(n.reference, n.role): dict(n.labels) for n in contents.images(compiled.plan, tmp_path / compiled.plan.name)}
    assert {(i.reference, i.role): dict(i.labels) for i in head} == carried
    assert all(i.labels for i in head if i.built)
    # apply's --base-image changes what it builds, so it changes the label the doctor wants
    swapped = node_images(AIRGAPPED, "gpu-b", base_image="local/base:1")
    assert swapped[0].labels != worker[0].labels


def _airgapped(tmp_path: Path, *, offline: bool = True):
    spec = yaml.safe_load(AIRGAPPED.read_text())
    spec["offline"] = offline
    path = tmp_path / "airgapped.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    valid, plan = plan_file(path)
    return path, valid, plan


def test_offline_a_missing_or_stale_image_fails_with_the_bundle_load_that_brings_it(tmp_path: Path) -> None:
    path, valid, plan = _airgapped(tmp_path)
    images = node_images(path, "gpu-a")
    vllm = next(i for i in images if i.role == "vllm")
    present = {vllm.reference: {"id": "sha256:" + "a" * 64, "labels": dict(vllm.labels)},
               SIDECARS["router"]: {"id": "sha256:" + "b" * 64, "labels": {"io.vllmgen.image-hash": "stale"}},
               SIDECARS["prometheus"]: {"id": "sha256:" + "c" * 64, "labels": {}},
               SIDECARS["grafana"]: {"id": "sha256:" + "d" * 64}}
    expect = expectation(plan, valid.spec, plan.node("gpu-a"), docker=True, image_cuda=None, images=images)
    rows = _rows(docker_checks(_host(tmp_path / "host", present), expect))
    assert rows["image.vllm"].status == "ok" and "aaaaaaaaaaaa" in rows["image.vllm"].detail
    assert rows["image.prometheus"].status == "ok" and rows["image.grafana"].status == "ok"
    gateway = rows["image.gateway"]
    assert gateway.status == "fail"
    assert gateway.detail == "nginx:1.28.0 is not on this host, and offline: true forbids apply to pull it"
    assert "vllmgen bundle load DIR --node gpu-a" in gateway.fix
    router = rows["image.router"]
    assert router.status == "fail" and "built from another Dockerfile" in router.detail
    assert "offline: true forbids" in router.detail and "--router-base-image" in router.fix
    model = _rows(storage_checks(_host(tmp_path / "host", present), expect))["storage.model_path"]
    assert model.status == "fail" and "vllmgen bundle load DIR --node gpu-a" in model.fix


def test_an_engine_that_cannot_say_is_not_a_missing_image(tmp_path: Path) -> None:
    """An engine error (permission, a 500, a timeout) is said as such: not "not on this host", whose fix, a
    bundle load, would not help."""
    path, valid, plan = _airgapped(tmp_path)
    images = node_images(path, "gpu-a")
    expect = expectation(plan, valid.spec, plan.node("gpu-a"), docker=True, image_cuda=None, images=images)

    class Refusing(RecordedProbe):
        def image(self, reference: str):  # noqa: ANN202 - the Probe verb
            raise ImageUnknown("500 Server Error: layer store busy")

    rows = _rows(docker_checks(Refusing(_host(tmp_path / "host", {}).folder), expect))
    gateway = rows["image.gateway"]
    assert gateway.status == "skip" and "the engine did not answer (500 Server Error: layer store busy)" in gateway.detail
    assert all(rows[f"image.{role}"].status == "skip" for role in ("vllm", "router", "gateway", "prometheus", "grafana"))


def test_without_offline_the_image_rows_say_what_apply_will_build_or_pull(tmp_path: Path) -> None:
    path, valid, plan = _airgapped(tmp_path, offline=False)
    images = node_images(path, "gpu-a")
    expect = expectation(plan, valid.spec, plan.node("gpu-a"), docker=True, image_cuda=None, images=images)
    rows = _rows(docker_checks(_host(tmp_path / "host", {}), expect))
    assert rows["image.vllm"].status == "ok" and rows["image.vllm"].detail.endswith("apply will build it")
    assert rows["image.gateway"].status == "ok" and rows["image.gateway"].detail.endswith("apply will pull it")


def test_no_daemon_skips_the_image_rows_and_no_docker_has_none(tmp_path: Path) -> None:
    path, valid, plan = _airgapped(tmp_path)
    images = node_images(path, "gpu-b")
    expect = expectation(plan, valid.spec, plan.node("gpu-b"), docker=True, image_cuda=None, images=images)
    (tmp_path / "down").mkdir()
    (tmp_path / "down" / "docker_error.txt").write_text("Cannot connect to the Docker daemon at unix:///var/run/docker.sock")
    rows = _rows(docker_checks(RecordedProbe(tmp_path / "down"), expect))
    assert rows["docker.daemon"].status == "fail" and rows["image.vllm"].status == "skip"
    expect = expectation(plan, valid.spec, plan.node("gpu-b"), docker=False, image_cuda=None, images=images)
    assert not [r for r in docker_checks(RecordedProbe(tmp_path / "down"), expect) if r.name.startswith("image.")]


def _hf_spec(tmp_path: Path, revision: str, *, offline: bool = True) -> tuple:
    spec = {"version": 1, "name": "hf", "offline": offline, "image": {"base": "vllm/vllm-openai:v0.32.0"},
            "model": {"source": "test/tiny", "revision": revision},
            "nodes": [{"name": "n0", "address": "192.0.2.2", "gpus": 1, "hf_cache": "/srv/hf-n0"}]}
    path = tmp_path / "hf.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    valid, plan = plan_file(path)
    return expectation(plan, valid.spec, plan.head, docker=False, image_cuda=None)


SNAPSHOT = f"/srv/hf-n0/hub/models--test--tiny/snapshots/{COMMIT}"


def test_offline_the_model_snapshot_in_the_nodes_hf_cache_is_checked(tmp_path: Path) -> None:
    expect = _hf_spec(tmp_path, COMMIT)
    there = _host(tmp_path / "there", {}, listing={SNAPSHOT: ["config.json", "model.safetensors", "tokenizer.json"]})
    row = _rows(storage_checks(there, expect))["model.hf_snapshot"]
    assert row.status == "ok" and row.detail.startswith(f"test/tiny@{COMMIT}: {SNAPSHOT}: config.json")
    missing = _rows(storage_checks(_host(tmp_path / "empty", {}), expect))["model.hf_snapshot"]
    assert missing.status == "fail" and f"{SNAPSHOT} is missing" in missing.detail
    assert "offline: true keeps vLLM from downloading it" in missing.detail
    assert "vllmgen bundle load DIR --node n0" in missing.fix
    no_weights = _host(tmp_path / "half", {}, listing={SNAPSHOT: ["config.json"]})
    row = _rows(storage_checks(no_weights, expect))["model.hf_snapshot"]
    assert row.status == "fail" and "no weights" in row.detail and "bundle load" in row.fix


def test_a_branch_is_found_through_refs_as_huggingface_hub_finds_it(tmp_path: Path) -> None:
    """Without offline (which insists on a commit) a branch names its commit in refs/; vLLM downloads what is missing."""
    expect = _hf_spec(tmp_path, "main", offline=False)
    refs = "/srv/hf-n0/hub/models--test--tiny/refs/main"
    there = _host(tmp_path / "there", {}, listing={SNAPSHOT: ["config.json", "model.safetensors"]},
                  files={refs: COMMIT + "\n"})
    assert _rows(storage_checks(there, expect))["model.hf_snapshot"].status == "ok"
    row = _rows(storage_checks(_host(tmp_path / "nothing", {}), expect))["model.hf_snapshot"]
    assert row.status == "ok" and f"{refs} is missing" in row.detail and row.detail.endswith("vLLM downloads it at start")
    half = _host(tmp_path / "half", {}, listing={SNAPSHOT: ["config.json"]}, files={refs: COMMIT})
    assert _rows(storage_checks(half, expect))["model.hf_snapshot"].status == "warn"


def test_doctor_on_this_machine_names_a_missing_snapshot_and_passes_once_it_is_there(tmp_path: Path) -> None:
    """The real command and probe: this machine's files (and no Docker daemon: the image rows are skipped)."""
    cache = tmp_path / "hf"
    spec = {"version": 1, "name": "hf", "offline": True, "image": {"base": "vllm/vllm-openai:v0.32.0"},
            "model": {"source": "test/tiny", "revision": COMMIT},
            "nodes": [{"name": "n0", "address": "192.0.2.2", "gpus": 1, "hf_cache": str(cache)}]}
    path = tmp_path / "hf.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))

    def rows() -> dict:
        done = subprocess.run([sys.executable, "-m", "vllmgen", "doctor", str(path), "--output", "json"],
                              capture_output=True, text=True)
        assert done.returncode == 1, done.stderr  # no GPU, no daemon here
        return {r["name"]: r for r in json.loads(done.stdout)["results"]}

    before = rows()
    assert before["model.hf_snapshot"]["status"] == "fail" and "bundle load" in before["model.hf_snapshot"]["fix"]
    assert before["image.vllm"]["status"] == "skip"
    snapshot = cache / "hub" / "models--test--tiny" / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"\0" * 16)
    assert rows()["model.hf_snapshot"]["status"] == "ok"
