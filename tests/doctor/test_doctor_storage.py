"""Storage checks on the H100's recorded df, and model directories built from the fixture config."""

from __future__ import annotations

import json
import shutil

from doctor_fixtures import H100, QWEN3_NEXT, text

from vllmgen.doctor import storage


def rows() -> dict[str, storage.DfRow]:
    return {r.mount: r for r in storage.parse_df(text(H100 / "df.txt"))}


def test_parse_df():
    r = rows()
    assert r["/dev/shm"] == storage.DfRow("tmpfs", 137438953472, 0, 137438953472, "/dev/shm")
    assert r["/"].available == 68701421568


def test_parse_size_is_dockers():
    assert storage.parse_size("10.24g") == int(10.24 * 1024**3)
    assert storage.parse_size("512m") == 512 * 1024**2
    assert storage.parse_size("64") == 64
    assert storage.parse_size("1G") == 1024**3


def test_shm():
    shm = rows()["/dev/shm"].size
    ok = storage.check_shm(shm, storage.parse_size("10.24g"))  # the seed's --shm-size
    assert ok.status == "ok" and ok.detail == "/dev/shm 128.0 GiB >= 10.2 GiB"
    small = storage.check_shm(64 * 1024**2, storage.parse_size("10.24g"))  # docker's default 64m
    assert small.status == "fail" and "--ipc=host" in small.fix
    assert storage.check_shm(None, 1).status == "fail"


def test_free_disk():
    free = rows()["/"].available
    assert storage.check_free_disk("/", free, 20 * 1024**3).status == "ok"
    r = storage.check_free_disk("/", free, 200 * 1024**3, "model and image")
    assert r.status == "fail" and r.detail == "/ (model and image): 64.0 GiB free < 200.0 GiB needed"
    assert storage.check_free_disk("/data", None, 1).status == "fail"


def _model_dir(tmp_path, shards=("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")):
    d = tmp_path / "Qwen3-Next-80B-A3B"
    d.mkdir()
    shutil.copy(QWEN3_NEXT, d / "config.json")
    weight_map = {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                  "lm_head.weight": "model-00002-of-00002.safetensors"}  # fmt: skip
    (d / storage.INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for s in shards:
        (d / s).write_bytes(b"")
    return d


def test_model_path_complete(tmp_path):
    d = _model_dir(tmp_path)
    index = json.loads((d / storage.INDEX).read_text())
    r = storage.check_model_path(str(d), sorted(p.name for p in d.iterdir()), index)
    assert r.status == "ok" and "2 shard(s)" in r.detail


def test_model_path_missing_shard(tmp_path):
    d = _model_dir(tmp_path, shards=("model-00001-of-00002.safetensors",))
    index = json.loads((d / storage.INDEX).read_text())
    r = storage.check_model_path(str(d), sorted(p.name for p in d.iterdir()), index)
    assert r.status == "fail" and "model-00002-of-00002.safetensors" in r.detail


def test_model_path_other_shapes():
    assert storage.check_model_path("/m", None).status == "fail"
    assert storage.check_model_path("/m", ["model.safetensors"]).status == "fail"  # no config.json
    assert storage.check_model_path("/m", ["config.json", "model.safetensors"]).status == "ok"
    assert storage.check_model_path("/m", ["config.json", "pytorch_model.bin"]).status == "warn"
    assert storage.check_model_path("/m", ["config.json"]).status == "fail"
