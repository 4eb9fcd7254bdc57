"""Every spec in tests/broken/ fails with exactly the reviewed text in its .expected file."""

import os
from pathlib import Path

import pytest

from vllmgen.errors import SpecError
from vllmgen.validate import validate_file

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
