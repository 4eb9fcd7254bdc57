"""Stage 1, load: the same data and positions with or without libyaml; YAML anchors and merge keys."""

from pathlib import Path

import pytest
from conftest import ROOT

from vllmgen.spec import load
from vllmgen.errors import SpecError
from vllmgen.spec.load import load_text

YAML_FILES = sorted([*ROOT.glob("specs/*.yaml"), *ROOT.glob("tests/**/*.yaml")])

MERGED = """\
version: 1
name: anchors
model: {source: org/model}
x-node: &node
  gpus: 8
  nic: eth0
nodes:
  - <<: *node
    name: head
    address: 192.0.2.1
    role: head
  - <<: *node
    name: worker-1
    address: 192.0.2.2
"""


def _outcome(text: str) -> tuple:
    try:
        loaded = load_text(text, "spec.yaml")
    except SpecError as exc:
        return ("error", [str(d) for d in exc.diagnostics])
    return ("ok", loaded.data, loaded.positions.keys, loaded.positions.values)


@pytest.mark.skipif(load.CParser is None, reason="libyaml (ruamel.yaml[libyaml]) is not installed")
@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_libyaml_and_pure_python_agree(path: Path, monkeypatch):
    text = path.read_text(encoding="utf-8")
    with_libyaml = _outcome(text)
    monkeypatch.setattr(load, "CParser", None)
    assert _outcome(text) == with_libyaml


def test_anchors_and_merge_keys_load():
    loaded = load_text(MERGED, "spec.yaml")
    head, worker = loaded.data["nodes"]
    assert head == {"gpus": 8, "nic": "eth0", "name": "head", "address": "192.0.2.1", "role": "head"}
    assert worker["gpus"] == 8 and worker["name"] == "worker-1"
    assert loaded.positions.of(("nodes", 1, "address")) == (14, 14)
    assert loaded.positions.of(("nodes", 1, "gpus")) == (5, 9)  # where the anchor gave it


def test_duplicate_keys_are_an_error():
    with pytest.raises(SpecError) as caught:
        load_text("version: 1\nname: a\nname: b\n", "spec.yaml")
    assert [str(d) for d in caught.value.diagnostics] == [
        'spec.yaml:3:1: <yaml>: invalid YAML: found duplicate key "name"'
    ]
