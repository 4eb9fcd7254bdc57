"""The real-parser tier: command lines checked by a real vLLM's own argument parser.

The vLLM venv comes from tools/setup_vllm_cpu.sh (cached under $VLLMGEN_CACHE, default
~/.cache/vllmgen). VLLMGEN_VLLM_PYTHON names another python for the default version.
A missing venv fails the tier: CI must not pass by skipping it. VLLMGEN_ALLOW_SKIP=1
turns that into a skip, for a developer machine without the venv.
"""

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# With no __init__.py in tests/, pytest imports this file as the module `conftest`
# too, and test modules there do `from conftest import ROOT, ...`: whichever conftest
# was imported last answers. So this one also offers every name of tests/conftest.py.
_spec = importlib.util.spec_from_file_location(
    "_tests_conftest", ROOT / "tests" / "conftest.py"
)
_parent = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_parent)
globals().update({k: v for k, v in vars(_parent).items() if not k.startswith("_")})
DEFAULT_VERSION = "0.32.0"
PARSE_CHECK = ROOT / "tools" / "vllm_parse_check.py"


def _venv_python(version: str) -> Path | None:
    if version == DEFAULT_VERSION and os.environ.get("VLLMGEN_VLLM_PYTHON"):
        return Path(os.environ["VLLMGEN_VLLM_PYTHON"])
    cache = Path(os.environ.get("VLLMGEN_CACHE") or Path.home() / ".cache" / "vllmgen")
    venv = cache / f"vllm-cpu-{version}"
    # setup_vllm_cpu.sh writes the marker last; without it the venv is half made
    return venv / "bin" / "python" if (venv / ".vllmgen-complete").exists() else None


@pytest.fixture(scope="session")
def vllm_python_for():
    """vllm_python_for("0.17.1") -> that version's venv python, or fail/skip."""

    def find(version: str = DEFAULT_VERSION) -> Path:
        python = _venv_python(version)
        if python is not None and python.exists():
            return python
        message = (
            f"no vLLM {version} venv for the real-parser tier: run "
            f"`tools/setup_vllm_cpu.sh {version}` (a few minutes, cached) or set "
            f"VLLMGEN_VLLM_PYTHON; VLLMGEN_ALLOW_SKIP=1 skips this tier instead"
        )
        if os.environ.get("VLLMGEN_ALLOW_SKIP") == "1":
            pytest.skip(message)
        pytest.fail(message, pytrace=False)

    return find


@pytest.fixture(scope="session")
def vllm_python(vllm_python_for) -> Path:
    return vllm_python_for(DEFAULT_VERSION)


@pytest.fixture(scope="session")
def parse_check(vllm_python):
    """parse_check(items, python=None) -> {id: result}, one vLLM process for all items
    (importing vLLM costs ~10 s, so batch them). Items and results are those of
    tools/vllm_parse_check.py."""

    def run(items: list[dict], python: Path | None = None) -> dict[str, dict]:
        proc = subprocess.run(
            [str(python or vllm_python), str(PARSE_CHECK)],
            input=json.dumps(items),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,  # the stderr tail is the useful message
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        results = json.loads(proc.stdout)
        assert [r["id"] for r in results] == [i["id"] for i in items]
        return {r["id"]: r for r in results}

    return run
