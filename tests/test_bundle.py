"""vllmgen bundle and bundle load without a Docker daemon: a fake engine streams image archives; the
model and deployment go through the real code (tar streams, parts, checksums, the local host's sh/tar)."""

from __future__ import annotations

import hashlib
import io
import json
import os
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

    def save(self, image_id: str) -> Iterator[bytes]:
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
    assert "prom/prometheus:v3.5.0 (monitoring; nodes solo): not on this machine: would be pulled" in text
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


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_part_is_refused_by_name_before_anything_loads(deployment: Path, tmp_path: Path,
                                                                 damage: str) -> None:
    out = tmp_path / "out"
    _bundle(deployment, out, FakeEngine())
    victim = out / _item(out, "model")["parts"][2]["file"]
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
