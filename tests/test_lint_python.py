"""ruff (pyflakes, pycodestyle, import order, tidy imports) and mypy over the project, with the
configuration in pyproject.toml. Both are pinned in the test extra, so `pip install -e '.[test]'`
brings them; a machine without them skips (and says so)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from conftest import ROOT


def _run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[test]')")
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, check=False)


def test_ruff_finds_nothing():
    result = _run("ruff", "check", "--no-cache", "vllmgen", "tests", "bench", "tools")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing():
    # its cache (.mypy_cache, ignored by git) makes a rerun take about a second; a cold run ~10 s of CPU
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
