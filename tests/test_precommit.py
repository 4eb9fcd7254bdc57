"""The pre-commit hook: which specs a commit touches, and the real `pre-commit` blocking a stale build/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from vllmgen.cli.commands import cli
from vllmgen.review.precommit import select

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "tests" / "fixtures" / "diff" / "before.yaml"


def test_selection_follows_spec_files_build_folders_and_the_compiler():
    specs = [Path("specs/a.yaml"), Path("specs/b.yaml")]
    names = {specs[0]: "alpha", specs[1]: None}
    assert select(specs, names, ["specs/a.yaml"], "build").specs == (specs[0],)
    hand_edit = select(specs, names, ["build/alpha/nodes/n/start.sh"], "build")
    assert hand_edit.specs == (specs[0],)
    assert hand_edit.reason[specs[0]] == "build/alpha/nodes/n/start.sh changed"
    assert select(specs, names, ["README.md", "build/alphabet/x"], "build").specs == ()
    assert select(specs, names, ["templates/start.sh.j2"], "build", own_repo=True).specs == tuple(specs)
    assert select(specs, names, ["templates/deployment.yaml"], "build").specs == ()  # a Helm chart's, elsewhere
    assert select(specs, names, [], "build").specs == tuple(specs)


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    (tmp_path / "specs").mkdir()
    shutil.copy(SPEC, tmp_path / "specs" / "demo.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _hook(*args: str):
    return CliRunner().invoke(cli, ["precommit", *args])


def test_hook_passes_a_fresh_build_and_blocks_a_stale_one_with_the_fix(project):
    assert CliRunner().invoke(cli, ["render", "specs/demo.yaml"]).exit_code == 0
    fresh = _hook("specs/demo.yaml")
    assert fresh.exit_code == 0, fresh.output
    assert fresh.stdout == "specs/demo.yaml: ok, build/review-demo up to date\n"

    spec = project / "specs" / "demo.yaml"
    spec.write_text(spec.read_text().replace("max_model_len: 16248", "max_model_len: 8192"))
    stale = _hook("specs/demo.yaml")
    assert stale.exit_code == 1
    assert "-max-model-len: 16248\n+max-model-len: 8192\n" in stale.stderr.replace('"', "")
    assert stale.stderr.endswith(
        "build/review-demo is out of date with specs/demo.yaml (the spec changed); fix: "
        "vllmgen render specs/demo.yaml -o build && git add build/review-demo\n")
    assert _hook("README.md").exit_code == 0  # an unrelated file checks nothing


def test_hook_names_a_hand_edited_build_file(project):
    CliRunner().invoke(cli, ["render", "specs/demo.yaml"])
    runbook = project / "build" / "review-demo" / "README.md"
    runbook.write_text(runbook.read_text() + "edited by hand\n")
    result = _hook("build/review-demo/README.md")
    assert result.exit_code == 1
    assert "(build/review-demo/README.md changed)" in result.stderr


def test_hook_reports_an_invalid_spec_with_positions(project):
    (project / "specs" / "broken.yaml").write_text("version: 1\nname: b\nnodes: 3\n")
    result = _hook("specs/broken.yaml")
    assert result.exit_code == 3
    assert "specs/broken.yaml:3:8: nodes: expected a valid list, got 3" in result.stderr


def _git(repo: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=False)


@pytest.mark.slow
def test_real_pre_commit_blocks_a_stale_build_and_passes_a_fresh_one(tmp_path: Path):
    """pre-commit installs this checkout's hook from a `repo:` entry, as another repository would."""
    pre_commit = shutil.which("pre-commit") or str(Path(sys.executable).parent / "pre-commit")
    assert Path(pre_commit).exists(), "pre-commit (PyPI) is a test dependency"
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "PRE_COMMIT_HOME": str(tmp_path / "cache"),
           "HOME": str(tmp_path)}
    # the hook's repository: this working tree as it is now (committed or not), as one commit
    hooks = tmp_path / "vllmgen"
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (hooks / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, hooks / name)
    _git(hooks, "init", "-q", env=env)
    _git(hooks, "add", "-A", env=env)
    _git(hooks, "commit", "-q", "-m", "vllmgen", env=env)
    rev = _git(hooks, "rev-parse", "HEAD", env=env).stdout.strip()

    repo = tmp_path / "deployments"
    (repo / "specs").mkdir(parents=True)
    shutil.copy(SPEC, repo / "specs" / "demo.yaml")
    (repo / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hooks}\n    rev: {rev}\n    hooks:\n      - id: vllmgen\n", encoding="utf-8")
    _git(repo, "init", "-q", env=env)
    installed = subprocess.run([pre_commit, "install"], cwd=repo, env=env, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    vllmgen = [sys.executable, "-m", "vllmgen"]
    subprocess.run([*vllmgen, "render", "specs/demo.yaml"], cwd=repo, check=True, capture_output=True)
    _git(repo, "add", "-A", env=env)
    fresh = _git(repo, "commit", "-m", "a fresh build", env=env)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr

    spec = repo / "specs" / "demo.yaml"
    spec.write_text(spec.read_text().replace("max_model_len: 16248", "max_model_len: 8192"))
    _git(repo, "add", "specs/demo.yaml", env=env)
    stale = _git(repo, "commit", "-m", "spec changed, build/ forgotten", env=env)
    assert stale.returncode != 0
    assert ("fix: vllmgen render specs/demo.yaml -o build && git add build/review-demo") in stale.stdout + stale.stderr
    assert _git(repo, "log", "--oneline", env=env).stdout.count("\n") == 1  # the stale commit did not land


def test_the_printed_fix_is_shell_quoted_and_runs_as_printed(project):
    """A spec file named like a command substitution: the fix line, pasted into a shell, renders that
    spec and runs nothing else."""
    hostile = project / "specs" / "$(touch pwned) it's `id`.yaml"
    shutil.move(project / "specs" / "demo.yaml", hostile)
    stale = _hook(str(hostile.relative_to(project)))
    assert stale.exit_code == 1
    fix = stale.stderr.strip().splitlines()[-1].split("; fix: ", 1)[1]
    assert fix == ("vllmgen render 'specs/$(touch pwned) it'\"'\"'s `id`.yaml' -o build && git add build/review-demo")
    bindir = project / "bin"  # `vllmgen` is this interpreter's; `git add` outside a repository only fails
    bindir.mkdir()
    (bindir / "vllmgen").write_text(f'#!/bin/sh\nexec {sys.executable} -m vllmgen "$@"\n')
    (bindir / "vllmgen").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    subprocess.run(["sh", "-c", fix], cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert not (project / "pwned").exists()
    assert _hook(str(hostile.relative_to(project))).exit_code == 0  # the render it ran brought build/ up to date
