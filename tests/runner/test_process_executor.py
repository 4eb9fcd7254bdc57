"""The process runtime's apply/status/down on this host, with a stand-in `vllm` (fake_vllm.py): a
real detached process, its own session and group, its log and PID record in the deployment folder,
/health and the verify requests over loopback, and down stopping it (and its child) by the recorded
PID. tests/runner/test_process_cpu.py does the same with a real vLLM (slow)."""

from __future__ import annotations

import json
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from inprocess import run_vllmgen

ROOT = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).with_name("fake_vllm.py")


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _spec(tmp_path: Path, port: int, **env: str) -> Path:
    """vLLM gets only the plan's env (and a few basics): the stand-in's settings go there."""
    spec = tmp_path / "spec.yaml"
    env = {"FAKE_VLLM_RECORD": str(tmp_path / "record.json"), **env}
    spec.write_text(f"""version: 1
name: fake-proc
model: {{source: tiny, host_path: {tmp_path}, served_name: tiny}}
secrets: {{api_key: {{env: FAKE_KEY}}}}
runtime: {{kind: process, vllm: {FAKE}, env: {json.dumps(env)}}}
caches: {{keep: false}}
monitoring: {{enabled: false}}
nodes: [{{name: n0, address: 127.0.0.1, gpus: 1, gpu_ids: [3]}}]
serve: {{host: 127.0.0.1, port: {port}}}
gateway: {{port: {_port()}}}
""")
    return spec


def _vllmgen(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "HOME": str(tmp_path / "home"), "FAKE_VLLM_RECORD": str(tmp_path / "record.json"),
               "FAKE_KEY": "secret-value-123", **env}
    return run_vllmgen(*args, env=environ, cwd=tmp_path)  # in-process: the stand-in vLLM is the real process here


def _group(sid: int) -> list[str]:
    """The live processes of the session ``sid`` leads: the server, its engine core, the core's worker."""
    out = subprocess.run(["ps", "-eo", "pid,sid,stat"], capture_output=True, text=True).stdout.splitlines()[1:]
    return [line for line in out if line.split()[1] == str(sid) and not line.split()[2].startswith("Z")]


def _all_three(sid: int) -> bool:
    deadline = time.monotonic() + 20
    while len(_group(sid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(_group(sid)) == 3


NGINX = Path("/usr/sbin/nginx")


@pytest.mark.skipif(not NGINX.exists(), reason="with an API key the gateway (Debian's nginx) starts too")
def test_apply_status_down_a_process(tmp_path: Path) -> None:
    spec = _spec(tmp_path, _port())
    assert _vllmgen(tmp_path, "render", str(spec)).returncode == 0
    applied = _vllmgen(tmp_path, "apply", str(spec), "--node", "n0", "--timeout", "60",
                       AWS_SECRET_ACCESS_KEY="unrelated-secret", VLLMGEN_FINGERPRINT_KEY="f" * 32)
    try:
        assert applied.returncode == 0, applied.stderr
        record = json.loads((tmp_path / "record.json").read_text())
        assert "verify: /v1/models lists tiny" in applied.stderr
        assert "n0: gateway: created (http://127.0.0.1:" in applied.stderr, applied.stderr  # nginx, a process too
        assert record["pgid"] == record["pid"] == record["sid"]  # detached: its own session and group
        assert record["env"]["CUDA_VISIBLE_DEVICES"] == "3"
        assert record["env"]["VLLM_API_KEY"] == "secret-value-123"  # by environment ...
        assert record["env"]["VLLMGEN_NODE"] == "fake-proc/n0"  # the marker that proves it ours
        # ... and nothing of the runner's own: not its key, not an unrelated secret, not the key's source
        assert not {"AWS_SECRET_ACCESS_KEY", "VLLMGEN_FINGERPRINT_KEY", "FAKE_KEY", "VLLMGEN_RUN_LABELS"} & set(record["env"])
        ours = {name for name in record["env"] if not name.startswith(("PYENV", "_PYENV"))}  # pyenv's python3 shim
        assert ours <= {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME", "SHLVL", "_",
                                      "PWD", "VLLMGEN_NODE", "SPT_NOENV", "VLLM_API_KEY", "FAKE_VLLM_RECORD", "CUDA_VISIBLE_DEVICES",
                                      "HF_HOME", "VLLM_ENGINE_READY_TIMEOUT_S", "VLLM_HOST_IP"}, sorted(record["env"])
        assert "secret-value-123" not in " ".join(record["argv"])  # ... never on the command line
        assert record["argv"][:3] == ["serve", str(tmp_path), "--config"]
        deploy = tmp_path / "home" / ".vllmgen" / "deployments" / "fake-proc"
        assert record["argv"][3] == str(deploy / "serve-config.yaml")
        state = json.loads((deploy / "run" / "n0.json").read_text())
        assert state["pid"] == record["pid"] and "Starting vLLM API server" in (deploy / "run" / "n0.log").read_text()
        assert state["deployment"] == "fake-proc" and state["node"] == "n0"
        assert state["run_labels"]["io.vllmgen.secrets"] != "none"  # apply's labels, through run.sh
        assert (deploy / "run").stat().st_mode & 0o777 == 0o700
        assert "secret-value-123" not in (deploy / "run" / "n0.json").read_text()
        assert _all_three(record["pid"])  # the server, its engine core and the core's worker

        status = _vllmgen(tmp_path, "status", str(spec), "--node", "n0")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "n0    head  fake-proc-n0  running  current" in status.stdout
        again = _vllmgen(tmp_path, "apply", str(spec), "--node", "n0", "--timeout", "60",
                         VLLMGEN_FINGERPRINT_KEY="f" * 32)
        assert "nothing changed" in again.stderr, again.stderr
    finally:
        down = _vllmgen(tmp_path, "down", str(spec), "--node", "n0")
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 10
    while _group(record["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group(record["pid"]) == []  # the server and its child are gone
    gateway = tmp_path / "home" / ".vllmgen" / "deployments" / "fake-proc" / "run" / "n0.gateway.json"
    assert not gateway.exists()  # down stopped nginx by its record, and removed the record
    status = _vllmgen(tmp_path, "status", str(spec), "--node", "n0")
    assert status.returncode == 1 and "no container fake-proc-n0" in status.stdout


@pytest.mark.skipif(not NGINX.exists(), reason="the gateway is Debian's nginx")
def test_the_gateway_closes_what_the_server_leaves_open(tmp_path: Path) -> None:
    """The stand-in guards /v1 only, as vLLM does: probed directly it serves /invocations without the key;
    apply's verify probes the front door, where every path refuses a client without it."""
    from vllmgen.runner import keyless
    from vllmgen.runner.http import DirectHttp

    port = _port()
    spec = _spec(tmp_path, port)
    assert _vllmgen(tmp_path, "render", str(spec)).returncode == 0
    applied = _vllmgen(tmp_path, "apply", str(spec), "--node", "n0", "--timeout", "60")
    try:
        assert applied.returncode == 0, applied.stderr
        summary = next(line for line in applied.stderr.splitlines() if "without the API key at" in line)
        assert re.search(r"without the API key at http://127\.0\.0\.1:\d+: (\d+) of \1 paths refused", summary), summary
        direct = keyless.without_key(DirectHttp(), f"http://127.0.0.1:{port}", "tiny")
        assert {"/invocations", "/tokenize"} <= {f.probe.path for f in direct.fatal}  # behind the door: open
        assert "secret-value-123" not in applied.stderr + applied.stdout
    finally:
        down = _vllmgen(tmp_path, "down", str(spec), "--node", "n0")
    assert down.returncode == 0, down.stderr


def test_a_process_that_exits_at_once_is_reported_with_its_log(tmp_path: Path) -> None:
    spec = _spec(tmp_path, _port(), FAKE_VLLM_EXIT="2")
    assert _vllmgen(tmp_path, "render", str(spec)).returncode == 0
    began = time.monotonic()
    applied = _vllmgen(tmp_path, "apply", str(spec), "--node", "n0", "--timeout", "120")
    took = time.monotonic() - began
    assert applied.returncode == 4
    assert "fake-proc-n0 exited (exit code 2)" in applied.stderr
    assert "bad flag --nope" in applied.stderr
    assert took < 30, f"the exit was not seen at once: {took:.1f}s"  # not the 120 s timeout


def test_an_engine_that_fails_and_hangs_ends_the_wait_with_the_line(tmp_path: Path) -> None:
    """A stand-in vLLM whose engine logs `EngineCore failed to start` (out of memory) and whose API server
    then hangs, alive: apply stops within seconds, exit 4, quoting the line, the root cause and a fix;
    status, while the process still runs, reports the dead engine."""
    spec = _spec(tmp_path, _port(), FAKE_VLLM_FATAL="1")  # vLLM gets the plan's env, not the runner's
    assert _vllmgen(tmp_path, "render", str(spec)).returncode == 0
    began = time.monotonic()
    applied = _vllmgen(tmp_path, "apply", str(spec), "--node", "n0", "--timeout", "120")
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
            # the fatal log line comes a moment before the server's /health turns 500: wait for both
            if (status.returncode == 1 and "while the head's API server process runs" in status.stdout
                    or time.monotonic() > deadline):
                break
            time.sleep(0.2)
        assert status.returncode == 1, status.stdout
        assert "fake-proc-n0  running" in status.stdout
        assert ("problem: node n0: the engine failed while fake-proc-n0 runs: "
                "(EngineCore pid=") in status.stdout
        assert "EngineCore encountered a fatal error." in status.stdout
        assert "/health: 500, while the head's API server process runs" in status.stdout, status.stdout
    finally:
        assert _vllmgen(tmp_path, "down", str(spec), "--node", "n0").returncode == 0


def test_a_missing_vllm_fails_preflight(tmp_path: Path) -> None:
    spec = _spec(tmp_path, _port())
    spec.write_text(spec.read_text().replace(str(FAKE), "/nonexistent/env/bin/vllm"))
    assert _vllmgen(tmp_path, "render", str(spec)).returncode == 0
    applied = _vllmgen(tmp_path, "apply", str(spec), "--node", "n0")
    assert applied.returncode == 4
    assert "the vllm executable /nonexistent/env/bin/vllm is not on this host" in applied.stderr


def test_rendered_start_and_stop_scripts(tmp_path: Path) -> None:
    """build/<name>/nodes/<node>/start.sh and stop.sh as a person runs them: detached, recorded where status
    looks (~/.vllmgen/deployments/<name>/run/), a second start.sh leaves the running one alone, status sees it,
    stop.sh stops it and its child by the record."""
    import urllib.request

    port = _port()
    spec = _spec(tmp_path, port)
    assert _vllmgen(tmp_path, "render", str(spec), "-o", str(tmp_path / "build")).returncode == 0
    node = tmp_path / "build" / "fake-proc" / "nodes" / "n0"
    env = {**os.environ, "HOME": str(tmp_path / "home"), "FAKE_KEY": "k-123"}
    started = subprocess.run(["bash", str(node / "start.sh")], capture_output=True, text=True, env=env, timeout=30)
    assert started.returncode == 0 and started.stderr == "", started.stderr
    run = tmp_path / "home" / ".vllmgen" / "deployments" / "fake-proc" / "run"
    pid = json.loads((run / "n0.json").read_text())["pid"]
    try:
        assert f"started node n0: PID {pid}" in started.stdout
        deadline = time.monotonic() + 20
        while not (tmp_path / "record.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        record = json.loads((tmp_path / "record.json").read_text())
        assert record["pid"] == pid == record["pgid"] == record["sid"]  # run.sh exec'd vllm: the recorded PID
        assert record["env"]["VLLM_API_KEY"] == "k-123" and record["env"]["CUDA_VISIBLE_DEVICES"] == "3"
        assert "FAKE_KEY" not in record["env"]
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        again = subprocess.run(["bash", str(node / "start.sh")], capture_output=True, text=True, env=env, timeout=30)
        assert again.returncode == 0 and f"node n0 is running already (PID {pid})" in again.stderr
        assert _all_three(pid)
        status = _vllmgen(tmp_path, "status", str(spec), "--node", "n0")
        assert "fake-proc-n0  running" in status.stdout, status.stdout  # started by start.sh, seen by status
    finally:
        stopped = subprocess.run(["bash", str(node / "stop.sh")], capture_output=True, text=True, env=env, timeout=60)
    assert stopped.returncode == 0 and f"stopped node n0 (PID {pid})" in stopped.stdout, stopped.stderr
    assert _group(pid) == [] and not (run / "n0.json").exists()
    assert "Starting vLLM API server" in (run / "n0.log").read_text()
    again = subprocess.run(["bash", str(node / "stop.sh")], capture_output=True, text=True, env=env, timeout=30)
    assert again.returncode == 0 and "no record" in again.stdout


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("setpriv") is None,
                    reason="needs root, unshare and setpriv")
def test_the_units_exec_start_in_its_sandbox_is_seen_and_stopped() -> None:
    """The rendered unit's ExecStart in the unit's sandbox (unit_sandbox.py: read-only system and home,
    private /tmp, no capabilities; no systemd here): run.sh still takes its lock, writes its record and logs
    in the writable deployment folder; vLLM gets the env file's key as VLLM_API_KEY and nothing else of it;
    `status` sees the server, a second start (start.sh) is refused by the lock, stop.sh stops it.
    test_process_cpu.py does the same with a real vLLM (slow)."""
    if any(Path(where).resolve().is_relative_to("/tmp") for where in (sys.prefix, __file__)):
        pytest.skip("the unit's PrivateTmp hides this checkout or its venv, which lie under /tmp")
    base = Path(tempfile.mkdtemp(prefix="vllmgen-unit-", dir="/run"))  # not under /tmp: PrivateTmp hides it
    home = base / "home"  # _vllmgen's HOME
    service = None
    try:
        spec = _spec(base, _port(), FAKE_VLLM_RECORD=str(home / ".cache" / "record.json"))
        home.mkdir()  # the output folder's parent (a CLI process made it as a side effect: its template cache)
        assert _vllmgen(base, "render", str(spec), "-o", str(home / "build")).returncode == 0
        deploy = home / ".vllmgen" / "deployments" / "fake-proc"
        shutil.copytree(home / "build" / "fake-proc", deploy)
        (home / ".cache").mkdir(parents=True, exist_ok=True)
        (home / ".config" / "vllmgen").mkdir(parents=True)
        (home / ".config" / "vllmgen" / "fake-proc.env").write_text("FAKE_KEY=unit-key-123\n")
        unit = deploy / "nodes" / "n0" / "vllmgen-fake-proc-n0.service"
        service = subprocess.Popen(["unshare", "--mount", "--propagation", "private", sys.executable,
                                    str(Path(__file__).with_name("unit_sandbox.py")), str(unit), str(home)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while not (home / ".cache" / "record.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not (home / ".cache" / "record.json").exists():
            said = service.communicate()[0] if service.poll() is not None else b"(it still runs)"
            pytest.fail(f"the unit's ExecStart wrote no record within 30 s: {said.decode(errors='replace')[-2000:]}")
        record = json.loads((home / ".cache" / "record.json").read_text())
        assert record["env"]["VLLM_API_KEY"] == "unit-key-123" and "FAKE_KEY" not in record["env"]
        status_line = Path(f"/proc/{record['pid']}/status").read_text()
        assert "CapEff:\t0000000000000000" in status_line and "NoNewPrivs:\t1" in status_line
        assert json.loads((deploy / "run" / "n0.json").read_text())["pid"] == record["pid"]
        assert record["sid"] == record["pid"] and _all_three(record["pid"])  # its own session, as systemd makes
        shown = _vllmgen(base, "status", str(spec), "--node", "n0", FAKE_KEY="unit-key-123")
        assert "fake-proc-n0  running" in shown.stdout, shown.stdout
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "FAKE_KEY": "unit-key-123"}
        again = subprocess.run(["bash", str(home / "build" / "fake-proc" / "nodes" / "n0" / "start.sh")],
                               capture_output=True, text=True, env=env, timeout=30)
        assert again.returncode == 0 and "running already" in again.stderr, again
        stopped = subprocess.run(["bash", str(home / "build" / "fake-proc" / "nodes" / "n0" / "stop.sh")],
                                 capture_output=True, text=True, env=env, timeout=60)
        assert stopped.returncode == 0 and f"stopped node n0 (PID {record['pid']})" in stopped.stdout, stopped
        assert service.wait(timeout=20) != 0
        deadline = time.monotonic() + 10  # the engine core and its worker, SIGKILLed by stop.sh, are reaped
        while _group(record["pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _group(record["pid"]) == []
    finally:
        if service is not None and service.poll() is None:
            os.killpg(service.pid, signal.SIGKILL)  # our own unshare: it leads its group
            service.wait()
        shutil.rmtree(base, ignore_errors=True)
