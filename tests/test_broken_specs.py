"""Every spec in tests/broken/ fails with exactly the reviewed text in its .expected file."""

import os
from pathlib import Path

import pytest

from vllmgen.errors import SpecError
from vllmgen.spec.validate import validate_file

BROKEN = Path(__file__).parent / "broken"


@pytest.mark.parametrize("spec", sorted(BROKEN.glob("*.yaml")), ids=lambda p: p.stem)
def test_broken_spec_reports_expected_errors(spec: Path, monkeypatch):
    monkeypatch.chdir(BROKEN)  # diagnostics name the file as given
    with pytest.raises(SpecError) as caught:
        validate_file(spec.name)
    expected = (BROKEN / f"{spec.stem}.expected").read_text().splitlines()
    assert [str(d) for d in caught.value.diagnostics] == expected


def test_every_broken_spec_has_expected_text():
    stems = {p.stem for p in BROKEN.glob("*.yaml")}
    assert stems == {p.stem for p in BROKEN.glob("*.expected")}
    assert len(stems) >= 8, os.listdir(BROKEN)


def test_version_without_catalog_warns_naming_both_versions(tmp_path):
    spec = tmp_path / "old.yaml"
    spec.write_text(
        "version: 1\nname: old\nimage: {base: 'vllm/vllm-openai:v0.20.0'}\nmodel: {source: a/b}\n"
        "nodes: [{name: a, address: 127.0.0.1, gpus: 1}]\nserve: {extra_args: [--swap-space, '4']}\n"
    )
    valid = validate_file(str(spec))  # --swap-space exists in 0.17.1, the nearest older catalog
    assert [str(d).split(": ", 1)[1] for d in valid.warnings] == [
        "image.base: warning: no flag catalog for vLLM 0.20.0; checking serve options against the nearest older one, 0.17.1"
    ]


def test_nested_writable_volumes_of_the_users_own_are_allowed(tmp_path):
    spec = tmp_path / "nested.yaml"
    spec.write_text(
        "version: 1\nname: nested\nmodel: {source: a/b, host_path: /data/m, path: /models/m}\n"
        "runtime: {volumes: [{host: /srv/a, container: /data}, {host: /srv/b, container: /data/inner},"
        " {host: /srv/c, container: /models/other}]}\n"
        "nodes: [{name: a, address: 127.0.0.1, gpus: 1}]\n"
    )
    assert validate_file(str(spec)).warnings == []
