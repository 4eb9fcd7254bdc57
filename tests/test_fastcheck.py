"""`render --check` of an unchanged tree is decided from the manifest alone; anything else runs the full check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from inprocess import run_vllmgen

from vllmgen.render import fastcheck, fingerprint
from vllmgen.cli.entry import _check_arguments

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "tests" / "fixtures" / "diff" / "before.yaml"
# the pipeline's libraries, and what the quick check leaves out to stay under half of their import time
HEAVY = ("pydantic", "jinja2", "click", "ruamel", "importlib.metadata", "pathlib")
# runs `vllmgen ARGS` in a fresh interpreter, then names the heavy modules it imported
PROBE = """
import sys
from vllmgen.cli.entry import main
sys.argv = ["vllmgen", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = sorted({name for name in %r for m in sys.modules if m == name or m.startswith(name + ".")})
print("heavy:", ",".join(heavy), "exit:", code, file=sys.stderr)
sys.exit(code)
""" % (HEAVY,)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    spec = tmp_path / "spec.yaml"
    shutil.copy(SPEC, spec)
    run = run_vllmgen("render", "spec.yaml", "-o", "out", cwd=tmp_path)  # in-process: only the checks below need a fresh one
    assert run.returncode == 0, run.stderr
    return spec, tmp_path / "out" / "review-demo"


def _vllmgen(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=cwd)


def test_unchanged_tree_answers_without_the_pipeline(tree):
    spec, target = tree
    run = _vllmgen(spec.parent, "render", "spec.yaml", "--check", "-o", "out")
    assert run.stdout == "out/review-demo is up to date\n"
    assert run.stderr.endswith("heavy:  exit: 0\n")  # nothing heavy was imported


def test_changed_spec_runs_the_full_check_and_reports_drift(tree):
    spec, _ = tree
    spec.write_text(spec.read_text() + "# a comment changes the spec's bytes\n")
    run = _vllmgen(spec.parent, "render", "spec.yaml", "--check", "-o", "out")
    assert "exit: 1" in run.stderr and "pydantic" in run.stderr
    assert '-    "spec_sha256": ' in run.stdout  # the manifest records what it was made from


def test_edited_output_runs_the_full_check(tree):
    spec, target = tree
    with (target / "README.md").open("a") as handle:
        handle.write("hand edit\n")
    run = _vllmgen(spec.parent, "render", "spec.yaml", "--check", "-o", "out")
    assert "exit: 1" in run.stderr
    assert "+hand edit" not in run.stdout and "-hand edit" in run.stdout


def test_every_other_difference_falls_back(tree, monkeypatch):
    spec, target = tree
    out = target.parent
    assert fastcheck.up_to_date(spec, out) == str(target)
    monkeypatch.setattr(fingerprint, "compiler_sha256", lambda: "another compiler")
    assert fastcheck.up_to_date(spec, out) is None
    monkeypatch.undo()
    start = target / "nodes" / "node-0" / "start.sh"
    start.chmod(0o644)
    assert fastcheck.up_to_date(spec, out) is None
    start.chmod(0o755)
    (target / "daemon.json").unlink()
    assert fastcheck.up_to_date(spec, out) is None
    assert fastcheck.up_to_date(spec.parent / "missing.yaml", out) is None


def test_a_spec_with_warnings_always_takes_the_full_path(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.read_text().replace("  nic: eth0\n", ""))  # no data NIC: a warning
    assert run_vllmgen("render", "spec.yaml", "-o", "out", cwd=tmp_path).returncode == 0
    run = _vllmgen(tmp_path, "render", "spec.yaml", "--check", "-o", "out")
    assert "warning: no data NIC" in run.stderr and "exit: 0" in run.stderr and "pydantic" in run.stderr
    # the runner validated the spec and printed its warnings itself: it gives their count, which must match
    assert fastcheck.up_to_date(spec, tmp_path / "out") is None
    assert fastcheck.up_to_date(spec, tmp_path / "out", warnings=1) == str(tmp_path / "out" / "review-demo")
    assert fastcheck.up_to_date(spec, tmp_path / "out", warnings=2) is None


@pytest.mark.parametrize(("argv", "expected"), [
    (["render", "s.yaml", "--check"], ("s.yaml", "build")),
    (["render", "--check", "-o", "o", "s.yaml"], ("s.yaml", "o")),
    (["render", "s.yaml", "--check", "--output=o"], ("s.yaml", "o")),
    (["render", "s.yaml", "--check", "--strict"], None),
    (["render", "s.yaml"], None),
    (["render", "s.yaml", "t.yaml", "--check"], None),
    (["render", "--check", "-o"], None),
    (["validate", "s.yaml", "--check"], None),
])
def test_only_a_plain_render_check_is_answered_early(argv, expected):
    assert _check_arguments(argv) == expected


def _rewrite_manifest(target: Path, change) -> None:  # noqa: ANN001
    import json

    path = target / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def test_what_the_review_found_takes_the_full_path(tree, tmp_path):
    """Each case once made the fast path say "up to date" where the full check reports drift."""
    spec, target = tree
    out = target.parent
    renamed = spec.with_name("other.yaml")  # the file name is in every header
    shutil.copy(spec, renamed)
    assert fastcheck.up_to_date(renamed, out) is None
    assert run_vllmgen("render", "other.yaml", "--check", "-o", "out", cwd=spec.parent).returncode == 1

    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    assert fastcheck.up_to_date(fifo, out) is None  # never read: the full check gets the bytes

    _rewrite_manifest(target, lambda m: m["files"].pop("Dockerfile"))
    (target / "Dockerfile").unlink()
    assert fastcheck.up_to_date(spec, out) is None  # the file list's own hash no longer matches
    assert run_vllmgen("render", "spec.yaml", "--check", "-o", "out", cwd=spec.parent).returncode == 1


def test_a_manifest_naming_paths_outside_the_folder_is_not_trusted(tree):
    spec, target = tree
    (target.parent / "x").write_text("outside\n")

    def outside(manifest):  # noqa: ANN001
        manifest["files"]["../x"] = fingerprint.file_sha256(target.parent / "x")
        manifest["inputs"]["outputs_sha256"] = fingerprint.outputs_sha256(manifest["files"])

    _rewrite_manifest(target, outside)
    assert fastcheck.up_to_date(spec, target.parent) is None
    (target / "manifest.json").write_text((target / "manifest.json").read_text().replace("\n", "\n ", 1))
    assert fastcheck.up_to_date(spec, target.parent) is None  # not as vllmgen writes it
