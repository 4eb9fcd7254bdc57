"""The process runtime's apply/status/down on this host, with a stand-in `vllm` (fake_vllm.py): a
real detached process, its own session and group, its log and PID record in the deployment folder,
/health and the verify requests over loopback, and down stopping it (and its child) by the recorded
PID. tests/runner/test_process_cpu.py does the same with a real vLLM (slow)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).with_name("fake_vllm.py")


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _spec(tmp_path: Path, port: int) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""version: 1
name: fake-proc
model: {{source: tiny, host_path: {tmp_path}, served_name: tiny}}
secrets: {{api_key: {{env: FAKE_KEY}}}}
runtime: {{kind: process, vllm: {FAKE}}}
caches: {{keep: false}}
monitoring: {{enabled: false}}
nodes: [{{name: n0, address: 127.0.0.1, gpus: 1, gpu_ids: [3]}}]
serve: {{host: 127.0.0.1, port: {port}}}
""")
    return spec


def _vllmgen(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "HOME": str(tmp_path / "home"), "FAKE_VLLM_RECORD": str(tmp_path / "record.json"),
               "FAKE_KEY": "secret-value-123", **env}
    return subprocess.run([sys.executable, "-m", "vllmgen", *args], capture_output=True, text=True, env=environ,
                          cwd=tmp_path, timeout=120)


def _group(pgid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,pgid,stat"], capture_output=True, text=True).stdout.splitlines()[1:]
    return [line for line in out if line.split()[1] == str(pgid) and not line.split()[2].startswith("Z")]


def test_apply_status_down_a_process(tmp_path: Path) -> None:
    spec = _spec(tmp_path, _port())
    assert _vllmgen(tmp_path, "render", str(spec)).returncode == 0
    applied = _vllmgen(tmp_path, "apply", str(spec), "--node", "n0", "--timeout", "60")
    record = json.loads((tmp_path / "record.json").read_text())
    try:
        assert applied.returncode == 0, applied.stderr
        assert "verify: /v1/models lists tiny" in applied.stderr
        assert record["pgid"] == record["pid"] == record["sid"]  # detached: its own session and group
        assert record["env"]["CUDA_VISIBLE_DEVICES"] == "3"
        assert record["env"]["VLLM_API_KEY"] == "secret-value-123"  # by environment ...
        assert "secret-value-123" not in " ".join(record["argv"])  # ... never on the command line
        assert record["argv"][:3] == ["serve", str(tmp_path), "--config"]
        deploy = tmp_path / "home" / ".vllmgen" / "deployments" / "fake-proc"
        assert record["argv"][3] == str(deploy / "serve-config.yaml")
        state = json.loads((deploy / "run" / "n0.json").read_text())
        assert state["pid"] == record["pid"] and "Starting vLLM API server" in (deploy / "run" / "n0.log").read_text()
        assert "secret-value-123" not in (deploy / "run" / "n0.json").read_text()
        assert len(_group(record["pid"])) == 2  # the server and its child

        status = _vllmgen(tmp_path, "status", str(spec), "--node", "n0")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "n0    head  fake-proc-n0  running  current" in status.stdout
        again = _vllmgen(tmp_path, "apply", str(spec), "--node", "n0", "--timeout", "60")
        assert "nothing changed" in again.stderr
    finally:
        down = _vllmgen(tmp_path, "down", str(spec), "--node", "n0")
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 10
    while _group(record["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group(record["pid"]) == []  # the server and its child are gone
    status = _vllmgen(tmp_path, "status", str(spec), "--node", "n0")
    assert status.returncode == 1 and "no container fake-proc-n0" in status.stdout


def test_a_process_that_exits_at_once_is_reported_with_its_log(tmp_path: Path) -> None:
    spec = _spec(tmp_path, _port())
    assert _vllmgen(tmp_path, "render", str(spec)).returncode == 0
    began = time.monotonic()
    applied = _vllmgen(tmp_path, "apply", str(spec), "--node", "n0", "--timeout", "120", FAKE_VLLM_EXIT="2")
    took = time.monotonic() - began
    assert applied.returncode == 4
    assert "fake-proc-n0 exited (exit code 2)" in applied.stderr
    assert "bad flag --nope" in applied.stderr
    assert took < 30, f"the exit was not seen at once: {took:.1f}s"  # not the 120 s timeout


def test_an_engine_that_fails_and_hangs_ends_the_wait_with_the_line(tmp_path: Path) -> None:
    """A stand-in vLLM whose engine logs `EngineCore failed to start` (out of memory) and whose API server
    then hangs, alive: apply stops within seconds, exit 4, quoting the line, the root cause and a fix;
    status, while the process still runs, reports the dead engine."""
    spec = _spec(tmp_path, _port())
    assert _vllmgen(tmp_path, "render", str(spec)).returncode == 0
    began = time.monotonic()
    applied = _vllmgen(tmp_path, "apply", str(spec), "--node", "n0", "--timeout", "120", FAKE_VLLM_FATAL="1")
    took = time.monotonic() - began
    try:
        assert applied.returncode == 4, applied.stderr
        assert took < 30, f"the fatal line did not end the wait: {took:.1f}s"  # not the 120 s timeout
        assert "the engine failed (out of memory)" in applied.stderr
        assert "EngineCore failed to start." in applied.stderr
        assert "root cause: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB" in applied.stderr
        assert "vllmgen doctor SPEC" in applied.stderr and "what to do:" in applied.stderr
        status = _vllmgen(tmp_path, "status", str(spec), "--node", "n0")
        assert status.returncode == 1, status.stdout
        assert "n0    head  fake-proc-n0  running" in status.stdout  # the API server lives on ...
        assert "problem: node n0: the engine failed (out of memory) while fake-proc-n0 runs" in status.stdout
    finally:
        assert _vllmgen(tmp_path, "down", str(spec), "--node", "n0").returncode == 0


def test_status_reports_an_engine_that_died_behind_a_living_server(tmp_path: Path) -> None:
    spec = _spec(tmp_path, _port())
    assert _vllmgen(tmp_path, "render", str(spec)).returncode == 0
    applied = _vllmgen(tmp_path, "apply", str(spec), "--node", "n0", "--timeout", "60")
    try:
        assert applied.returncode == 0, applied.stderr
        assert _vllmgen(tmp_path, "status", str(spec), "--node", "n0").returncode == 0
        (tmp_path / "record.json.die").write_text("")
        deadline = time.monotonic() + 20
        while True:  # the stand-in notices the file within 0.1 s; status is asked until it says so
            status = _vllmgen(tmp_path, "status", str(spec), "--node", "n0")
            if status.returncode == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status.returncode == 1, status.stdout
        assert "fake-proc-n0  running" in status.stdout
        assert ("problem: node n0: the engine failed while fake-proc-n0 runs: "
                "(EngineCore pid=") in status.stdout
        assert "EngineCore encountered a fatal error." in status.stdout
        assert "/health: 500, while the head's API server process runs" in status.stdout
    finally:
        assert _vllmgen(tmp_path, "down", str(spec), "--node", "n0").returncode == 0


def test_a_missing_vllm_fails_preflight(tmp_path: Path) -> None:
    spec = _spec(tmp_path, _port())
    spec.write_text(spec.read_text().replace(str(FAKE), "/nonexistent/env/bin/vllm"))
    assert _vllmgen(tmp_path, "render", str(spec)).returncode == 0
    applied = _vllmgen(tmp_path, "apply", str(spec), "--node", "n0")
    assert applied.returncode == 4
    assert "the vllm executable /nonexistent/env/bin/vllm is not on this host" in applied.stderr


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_recorded_pid_of_another_process_is_never_signalled(tmp_path: Path) -> None:
    from vllmgen.runner.procexec import ProcessExecutor

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        run = tmp_path / "run"
        run.mkdir()
        (run / "n0.json").write_text(json.dumps({"name": "x-n0", "pid": other.pid, "start": "1",
                                                 "labels": {"io.vllmgen.node": "n0"}, "log": "/dev/null"}))
        executor = ProcessExecutor("n0", tmp_path, "/bin/true")
        assert executor.inspect("x-n0").running is False  # start time differs: not ours
        executor.remove("x-n0")
        assert other.poll() is None  # still running: never signalled
    finally:
        other.kill()
        other.wait()


def test_rendered_start_and_stop_scripts(tmp_path: Path) -> None:
    """build/<name>/nodes/<node>/start.sh and stop.sh as a person runs them: detached with a PID file and
    a log, a second start.sh leaves the running one alone, stop.sh stops it and its child by that PID."""
    import urllib.request

    port = _port()
    spec = _spec(tmp_path, port)
    assert _vllmgen(tmp_path, "render", str(spec), "-o", str(tmp_path / "build")).returncode == 0
    node = tmp_path / "build" / "fake-proc" / "nodes" / "n0"
    env = {**os.environ, "HOME": str(tmp_path / "home"), "FAKE_VLLM_RECORD": str(tmp_path / "record.json"),
           "FAKE_KEY": "k-123"}
    started = subprocess.run(["bash", str(node / "start.sh")], capture_output=True, text=True, env=env, timeout=30)
    assert started.returncode == 0 and started.stderr == "", started.stderr
    pid_file = tmp_path / "build" / "fake-proc" / "run" / "n0.pid"
    pid = int(pid_file.read_text().split()[0])
    try:
        assert f"started node n0: PID {pid}" in started.stdout
        deadline = time.monotonic() + 20
        while not (tmp_path / "record.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        record = json.loads((tmp_path / "record.json").read_text())
        assert record["pid"] == pid == record["pgid"] == record["sid"]  # run.sh exec'd vllm: the recorded PID
        assert record["env"]["VLLM_API_KEY"] == "k-123" and record["env"]["CUDA_VISIBLE_DEVICES"] == "3"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        again = subprocess.run(["bash", str(node / "start.sh")], capture_output=True, text=True, env=env, timeout=30)
        assert again.returncode == 0 and f"node n0 is running already (PID {pid})" in again.stderr
        assert len(_group(pid)) == 2
    finally:
        stopped = subprocess.run(["bash", str(node / "stop.sh")], capture_output=True, text=True, env=env, timeout=60)
    assert stopped.returncode == 0 and f"stopped node n0 (PID {pid})" in stopped.stdout, stopped.stderr
    assert _group(pid) == [] and not pid_file.exists()
    assert "Starting vLLM API server" in (pid_file.parent / "n0.log").read_text()
    again = subprocess.run(["bash", str(node / "stop.sh")], capture_output=True, text=True, env=env, timeout=30)
    assert again.returncode == 0 and "no PID file" in again.stdout
