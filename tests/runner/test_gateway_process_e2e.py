"""The front door in the process runtime, against a real CPU vLLM: `vllmgen apply` (run inside namespace host 0,
as that host's own runner) starts `vllm serve` and then Debian's nginx through the rendered
gateway/entrypoint.sh, both as processes; an attacker on host 1 tries every path without the key through the
public address and the server's own port: nothing but 401/404 or a refused connection. Along the way, what the
process runtime promises of itself: verify's answers, the startup report (from the process start, in apply and
status), vLLM's engine core titled and marked as this node's. `down` stops both, and nothing of them is left.
vLLM and nginx run under a private /dev/shm (unshare + tmpfs): the psm_* files vLLM makes stay there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from infra import cache

from .support import ROOT, Cluster, cpu_vllm_env_yaml, group_left, session_members, with_home
from .test_gateway_e2e import GATEWAY_PORT, KEY, PORT, _attack, _check

pytestmark = pytest.mark.slow


def _vllmgen(cluster: Cluster, home: Path, *args: str, private_shm: bool = False) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "vllmgen", *args]
    if private_shm:  # what apply starts inherits this mount namespace
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount -t tmpfs tmpfs /dev/shm && exec "$@"', "sh", *argv]
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT), "VG_DOOR_KEY": KEY,
           "VLLMGEN_FINGERPRINT_KEY": "vllmgen-tests-fingerprint-key"}
    env.pop("XDG_RUNTIME_DIR", None)
    return subprocess.run(["nsenter", f"--net={cluster.hosts.path(0)}", *argv], capture_output=True, text=True,
                          env=env, cwd=home.parent, timeout=600)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """The HOME of the test's vllmgen commands; whatever still runs with it after the test is killed."""
    folder = tmp_path / "home"
    yield folder
    for pid in with_home(folder):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None or not Path("/usr/sbin/nginx").exists(),
                    reason="needs root, unshare and Debian's nginx")
def test_process_runtime_behind_the_real_gateway(two_hosts: Cluster, tmp_path: Path, home: Path) -> None:
    venv = cache.vllm_venv()
    model = cache.tiny_model(venv / "bin" / "python")
    a = two_hosts.hosts.addresses[0]
    spec = tmp_path / "door-proc.yaml"
    spec.write_text(f"""version: 1
name: door-proc
model: {{source: tiny, host_path: {model}, served_name: tiny}}
secrets: {{api_key: {{env: VG_DOOR_KEY}}}}
runtime:
  kind: process
  python_env: {venv}
  env: {cpu_vllm_env_yaml()}
caches: {{keep: false}}
nodes: [{{name: cpu-0, address: {a}, gpus: 1}}]
serve: {{port: {PORT}, max_model_len: 256, enforce_eager: true, extra_args: [--load-format, dummy]}}
gateway: {{port: {GATEWAY_PORT}}}
""")
    cache.seed_vllm_cache(home / ".cache" / "vllm", venv / "bin" / "python", model)  # as an earlier start leaves it
    rendered = _vllmgen(two_hosts, home, "render", str(spec), "-o", str(tmp_path / "build"))
    assert rendered.returncode == 0, rendered.stderr
    build = ["--build-dir", str(tmp_path / "build")]
    run_dir = home / ".vllmgen" / "deployments" / "door-proc" / "run"
    server = {"pid": 0}
    try:
        applied = _vllmgen(two_hosts, home, "apply", str(spec), "--node", "cpu-0", "--timeout", "400", *build,
                           private_shm=True)
        assert applied.returncode == 0, applied.stderr[-4000:]
        assert f"cpu-0: gateway: created (http://{a}:{GATEWAY_PORT} in front of 127.0.0.1:{PORT}" in applied.stderr
        server = json.loads((run_dir / "cpu-0.json").read_text())
        door = json.loads((run_dir / "cpu-0.gateway.json").read_text())
        cmdline = Path(f"/proc/{server['pid']}/cmdline").read_bytes().split(b"\0")
        assert cmdline[cmdline.index(b"--host") + 1] == b"127.0.0.1"  # the gateway and Prometheus are on cpu-0
        assert b"nginx: master process" in Path(f"/proc/{door['pid']}/cmdline").read_bytes()
        assert KEY.encode() not in Path(f"/proc/{door['pid']}/environ").read_bytes()
        assert "verify: /v1/models lists tiny" in applied.stderr
        assert "verify: chat completion answered" in applied.stderr
        assert "cpu-0: startup of " in applied.stderr and "model load" in applied.stderr
        assert "log: first line -> listening" in applied.stderr
        assert re.search(r"python start +\d+\.\d s  interpreter and imports", applied.stderr)  # from the process start
        assert "since it started (vLLM listening)" in applied.stderr
        _engine_is_titled_and_marked(server["pid"])

        _check(_attack(two_hosts, f"http://{a}:{GATEWAY_PORT}", [PORT]), [PORT])

        status = _vllmgen(two_hosts, home, "status", str(spec), "--node", "cpu-0", "--output", "json")
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert report["gateway"]["health"] == 200 and report["gateway"]["without_key"] == 401
        shown = _vllmgen(two_hosts, home, "status", str(spec), "--node", "cpu-0")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "startup of " in shown.stdout and "log: first line -> listening" in shown.stdout
    finally:
        down = _vllmgen(two_hosts, home, "down", str(spec), "--node", "cpu-0")
    assert down.returncode == 0, down.stderr
    assert not (run_dir / "cpu-0.gateway.json").exists() and not (run_dir / "cpu-0.json").exists()
    deadline = time.monotonic() + 30
    while server["pid"] and group_left(server["pid"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert server["pid"] and group_left(server["pid"]) == []


def _engine_is_titled_and_marked(pid: int) -> None:
    """vLLM titles its engine core (setproctitle): run.sh's SPT_NOENV keeps the marker that proves it ours.
    Short-lived children (compile workers, lscpu) may end between the listing and the reads: skipped."""
    titles: dict[int, bytes] = {}
    environs: dict[int, list[bytes]] = {}
    for member in session_members(pid):
        try:
            titles[member] = (Path("/proc") / str(member) / "cmdline").read_bytes().split(b"\0")[0]
            environs[member] = (Path("/proc") / str(member) / "environ").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            titles.pop(member, None)
    assert b"VLLM::EngineCore" in titles.values(), titles
    for member in titles:
        assert b"VLLMGEN_NODE=door-proc/cpu-0" in environs[member], titles[member]
