"""The command line: exit codes, messages, and that a failed render leaves build/ as it was."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from inprocess import run_vllmgen

TWO_NODE = ROOT / "specs" / "seed-two-node-ray.yaml"


def vllmgen(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """In-process (tests/inprocess.py): the tests below are about what the command does."""
    return run_vllmgen(*args, cwd=cwd)


def vllmgen_process(*args: str) -> subprocess.CompletedProcess:
    """A real `python -m vllmgen` process, for what only a process shows: its exit status and stderr
    as the interpreter leaves them."""
    return subprocess.run([sys.executable, "-m", "vllmgen", *args], capture_output=True, text=True)


def test_version_and_help():
    assert vllmgen_process("--version").stdout.startswith("vllmgen, version ")
    result = vllmgen_process("--help")
    assert result.returncode == 0
    for command in ("init", "validate", "render", "schema"):
        assert command in result.stdout
    assert "Exit codes" in result.stdout


def test_validate_ok_prints_summary():
    result = vllmgen("validate", str(TWO_NODE))
    assert result.returncode == 0
    assert "2 node(s), backend ray, 16 GPU(s)" in result.stdout


def test_usage_error_exits_2():
    assert vllmgen("render").returncode == 2
    assert vllmgen("render", "--bogus", str(TWO_NODE)).returncode == 2


def test_invalid_spec_exits_3_without_traceback(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("version: 1\nname: x\nmodel: {source: a/b}\nnodes: [{name: a, address: 1.2.3.4, gpus: 0}]\n")
    result = vllmgen_process("render", str(spec), "-o", str(tmp_path / "out"))
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert f"{spec}:4:" in result.stderr and "nodes[0].gpus" in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_file_exits_3():
    result = vllmgen("validate", "no-such.yaml")
    assert result.returncode == 3
    assert "no-such.yaml: <file>: no such file" in result.stderr


def test_warning_prints_and_strict_fails(tmp_path):
    spec = tmp_path / "latest.yaml"
    spec.write_text(
        "version: 1\nname: x\nimage: {base: 'vllm/vllm-openai:latest'}\nmodel: {source: a/b}\n"
        "nodes: [{name: a, address: 1.2.3.4, gpus: 1}]\n"
    )
    relaxed = vllmgen("validate", str(spec))
    assert relaxed.returncode == 0
    assert "image.base: warning: unpinned base image" in relaxed.stderr
    strict = vllmgen("validate", "--strict", str(spec))
    assert strict.returncode == 3
    assert "image.base: unpinned base image" in strict.stderr


def test_render_check_and_drift(tmp_path):
    out = tmp_path / "build"
    assert vllmgen("render", str(TWO_NODE), "-o", str(out)).returncode == 0
    clean = vllmgen("render", str(TWO_NODE), "-o", str(out), "--check")
    assert clean.returncode == 0, clean.stdout
    serve = out / "qwen3-next-tp16-ray" / "serve.sh"
    serve.write_text(serve.read_text().replace("sleep 5", "sleep 6"))
    drift = vllmgen("render", str(TWO_NODE), "-o", str(out), "--check")
    assert drift.returncode == 1
    assert "-    sleep 6\n+    sleep 5\n" in drift.stdout
    assert "out of date" in drift.stderr


def test_check_reports_missing_output(tmp_path):
    result = vllmgen("render", str(TWO_NODE), "-o", str(tmp_path), "--check")
    assert result.returncode == 1
    assert "Dockerfile: missing" in result.stdout


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_failed_render_leaves_previous_build_untouched(tmp_path):
    spec = tmp_path / "spec.yaml"
    shutil.copy(TWO_NODE, spec)
    out = tmp_path / "build"
    assert vllmgen("render", str(spec), "-o", str(out)).returncode == 0
    before = _snapshot(out)
    spec.write_text(spec.read_text().replace("gpus: 8\n", "gpus: 9\n", 1))
    assert vllmgen("render", str(spec), "-o", str(out)).returncode == 3
    assert _snapshot(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["qwen3-next-tp16-ray"]  # no staging leftovers


def test_rerender_removes_stale_files_and_keeps_foreign_ones(tmp_path):
    spec = tmp_path / "spec.yaml"
    shutil.copy(TWO_NODE, spec)
    out = tmp_path / "build"
    assert vllmgen("render", str(spec), "-o", str(out)).returncode == 0
    deployment = out / "qwen3-next-tp16-ray"
    (deployment / "NOTES.md").write_text("ours\n")
    # switching to mp drops serve.sh; renaming the worker drops its folder
    text = spec.read_text().replace("backend: ray", "backend: mp").replace("worker-1", "worker-2")
    spec.write_text(text)
    assert vllmgen("render", str(spec), "-o", str(out)).returncode == 0
    assert not (deployment / "serve.sh").exists()
    assert not (deployment / "nodes" / "worker-1").exists()
    assert (deployment / "nodes" / "worker-2" / "start.sh").exists()
    assert (deployment / "NOTES.md").read_text() == "ours\n"
    assert os.access(deployment / "nodes" / "worker-2" / "start.sh", os.X_OK)
    manifest = json.loads((deployment / "manifest.json").read_text())
    assert "NOTES.md" not in manifest["files"] and "serve.sh" not in manifest["files"]


def test_init_writes_a_valid_spec_and_refuses_to_overwrite(tmp_path):
    assert vllmgen("init", cwd=tmp_path).returncode == 0
    assert vllmgen("validate", "vllmgen.yaml", cwd=tmp_path).returncode == 0
    again = vllmgen("init", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr


def test_schema_matches_committed_copy():
    result = vllmgen("schema")
    assert result.returncode == 0
    assert result.stdout == (ROOT / "vllmgen.schema.json").read_text()
    schema = json.loads(result.stdout)
    assert schema["additionalProperties"] is False and "nodes" in schema["required"]


def test_internal_error_exits_123_without_traceback(tmp_path, monkeypatch, capsys):
    import pytest

    from vllmgen.cli import commands as cli
    from vllmgen.render import write

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(write, "write", broken)
    monkeypatch.delenv("VLLMGEN_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["vllmgen", "render", str(TWO_NODE), "-o", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 123
    stderr = capsys.readouterr().err
    assert "internal error: RuntimeError: a bug" in stderr and "Traceback" not in stderr


def test_an_output_folder_under_a_file_is_a_usage_error(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    result = vllmgen("render", str(TWO_NODE), "-o", str(blocker / "sub"))
    assert result.returncode == 2
    assert "is not a folder" in result.stderr and "Traceback" not in result.stderr


def test_readme_reference_is_generated_from_the_models():
    from vllmgen.review.reference import markdown

    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- reference:start -->\n")[1].split("<!-- reference:end -->")[0]
    assert section == markdown()


def test_the_in_process_command_answers_as_the_process_does(tmp_path):
    """tests/inprocess.py, which most command-line tests use, against a real process: the same exit status,
    stdout and stderr, for a spec with a warning and for an invalid one (in a folder of its own: cwd)."""
    (tmp_path / "latest.yaml").write_text(
        "version: 1\nname: x\nimage: {base: 'vllm/vllm-openai:latest'}\nmodel: {source: a/b}\n"
        "nodes: [{name: a, address: 1.2.3.4, gpus: 1}]\n")
    (tmp_path / "bad.yaml").write_text("version: 1\nname: x\nmodel: {source: a/b}\nnodes: [{name: a, address: 1.2.3.4, gpus: 0}]\n")
    for args in (["validate", "latest.yaml"], ["render", "bad.yaml", "-o", "out"]):
        process = subprocess.run([sys.executable, "-m", "vllmgen", *args], capture_output=True, text=True, cwd=tmp_path)
        inside = vllmgen(*args, cwd=tmp_path)
        assert (inside.returncode, inside.stdout, inside.stderr) == (process.returncode, process.stdout, process.stderr)
        assert process.stderr  # a warning, or the errors: something to compare
