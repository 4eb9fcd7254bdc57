"""The slow tier on pytest-xdist workers (tests/conftest.py): whole files to a worker or not at all, and the
heaviest files first, so that the workers end together."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import conftest
from conftest import ROOT

# two slow tests of one module, each writing which worker ran it
MODULE = """import os, pathlib, pytest
pytestmark = pytest.mark.slow
def _record(name):
    pathlib.Path(os.environ["SEEN"], name).write_text(os.environ.get("PYTEST_XDIST_WORKER", "main"))
def test_first(): _record("first")
def test_second(): _record("second")
"""


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(ROOT / "tests" / "conftest.py", folder / "conftest.py")
    (folder / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: the slow tier\n")
    for name in ("test_a.py", "test_b.py"):
        (folder / name).write_text(MODULE.replace('"first"', f'"{name}-first"').replace('"second"', f'"{name}-second"'))
    seen = folder / "seen"
    seen.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *args],
                          cwd=folder, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "SEEN": str(seen), "PYTHONDONTWRITEBYTECODE": "1"})


def test_under_loadfile_a_modules_slow_tests_run_on_one_worker(tmp_path: Path) -> None:
    ran = _run(tmp_path, "-n", "2", "--dist", "loadfile")
    assert ran.returncode == 0 and "4 passed" in ran.stdout, ran.stdout + ran.stderr
    for module in ("test_a.py", "test_b.py"):
        workers = {(tmp_path / "seen" / f"{module}-{test}").read_text() for test in ("first", "second")}
        assert len(workers) == 1 and workers != {"main"}, workers


def test_under_another_dist_slow_tests_are_skipped_saying_why(tmp_path: Path) -> None:
    ran = _run(tmp_path, "-n", "1")
    assert ran.returncode == 0 and "4 skipped" in ran.stdout, ran.stdout + ran.stderr
    assert "under pytest-xdist the slow tier needs --dist loadfile" in ran.stdout
    assert not list((tmp_path / "seen").iterdir())


def test_the_heaviest_files_go_first_each_files_tests_together_in_order() -> None:
    """Measured slow files by their cost, then unmeasured files with a slow test (a file with one slow test is
    weighed as a slow file), then the fast files, in collection order."""
    def item(nodeid: str, slow: bool = False) -> SimpleNamespace:
        return SimpleNamespace(nodeid=nodeid, get_closest_marker=lambda name: slow and name == "slow")

    items = [item("tests/test_cheap.py::test_1"), item("tests/test_mixed.py::test_fast"),
             item("tests/runner/test_engine.py::test_1", True), item("tests/runner/test_engine.py::test_2", True),
             item("tests/runner/test_dp_e2e.py::test_1", True), item("tests/test_mixed.py::test_slow", True),
             item("tests/runner/test_dp_e2e.py::test_2", True), item("tests/test_cheap.py::test_2")]
    conftest.pytest_collection_modifyitems(SimpleNamespace(), items)  # type: ignore[arg-type]
    assert [i.nodeid for i in items] == [
        "tests/runner/test_dp_e2e.py::test_1", "tests/runner/test_dp_e2e.py::test_2",
        "tests/runner/test_engine.py::test_1", "tests/runner/test_engine.py::test_2",
        "tests/test_mixed.py::test_fast", "tests/test_mixed.py::test_slow",
        "tests/test_cheap.py::test_1", "tests/test_cheap.py::test_2"]
