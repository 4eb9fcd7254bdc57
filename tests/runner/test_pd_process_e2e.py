"""Prefill/decode disaggregation in the process runtime, end to end on this machine: `vllmgen apply` starts a
stand-in decode and prefill (tests/runner/fake_pd_vllm.py: vLLM's P/D protocol and NIXL metric names, no GPU),
then the REAL vllm-router 0.1.17 in P/D mode and Debian's nginx as the gateway; apply's kv-transfer step reads
the decode's counters and log. A decode that "recomputes" (answers without reading the prefill's blocks) fails
apply with exit 4. status lists each instance, the router and the counters; down leaves nothing. Everything
runs inside its own PID namespace (down signals PIDs) and on loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .support import ROOT

pytestmark = pytest.mark.slow

ROUTER = Path.home() / ".cache" / "vllmgen" / "vllm-router-0.1.17" / "bin" / "vllm-router"
KEY = "pd-e2e-key-0123456789abcdef"
SCENARIO = """
set -u
vg() { "$PY" -m vllmgen "$@"; }
vg render "$SPEC" -o "$BUILD" >/dev/null || exit 9
vg apply "$SPEC" --all --build-dir "$BUILD" --timeout 60 > "$OUT/apply.txt" 2>&1; echo $? > "$OUT/apply.rc"
vg status "$SPEC" --all --output json > "$OUT/status.json" 2>&1; echo $? > "$OUT/status.rc"
vg down "$SPEC" --all > "$OUT/down.txt" 2>&1; echo $? > "$OUT/down.rc"
ps -eo pid,cmd | grep -E 'fake_pd_vllm|vllm-router|vllm::router|nginx' | grep -v grep > "$OUT/left.txt"
exit 0
"""


def _spec(tmp: Path, *, recompute: bool, base: int) -> Path:
    vllm = tmp / "vllm"
    vllm.write_text(f'#!/bin/sh\nshift\nexec {sys.executable} {ROOT / "tests" / "runner" / "fake_pd_vllm.py"} "$@"\n')
    vllm.chmod(0o755)
    env = '{FAKE_PD_RECOMPUTE: "1"}' if recompute else "{}"
    spec = tmp / "pd.yaml"
    spec.write_text(f"""version: 1
name: pd-e2e
model: {{source: tiny, host_path: {tmp}, served_name: tiny}}
secrets: {{api_key: {{env: PD_E2E_KEY}}}}
runtime: {{kind: process, vllm: {vllm}, env: {env}}}
caches: {{keep: false}}
monitoring: {{enabled: false}}
nodes: [{{name: h0, address: 127.0.0.1, gpus: 1, gpu_ids: [0]}}]
router: {{node: h0, port: {base}, executable: {ROUTER}}}
gateway: {{port: {base + 1}, nginx: /usr/sbin/nginx}}
serve: {{gpu_memory_utilization: 0.3}}
disaggregation:
  prefill: {{instances: [{{node: h0, gpu_ids: [0], port: {base + 2}, side_channel_port: {base + 4}}}]}}
  decode: {{instances: [{{node: h0, gpu_ids: [0], port: {base + 3}, side_channel_port: {base + 5}}}]}}
""")
    return spec


def _run(tmp: Path, *, recompute: bool, base: int) -> Path:
    out = tmp / "out"
    out.mkdir()
    env = {**os.environ, "HOME": str(tmp / "home"), "PYTHONPATH": str(ROOT), "PD_E2E_KEY": KEY, "OUT": str(out),
           "PY": sys.executable, "SPEC": str(_spec(tmp, recompute=recompute, base=base)), "BUILD": str(tmp / "build"),
           "VLLMGEN_FINGERPRINT_KEY": "vllmgen-tests-fingerprint-key"}
    env.pop("XDG_RUNTIME_DIR", None)
    done = subprocess.run(["unshare", "-pf", "--mount-proc", "bash", "-c", SCENARIO], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


needs = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None or not ROUTER.exists()
                           or not Path("/usr/sbin/nginx").exists(),
                           reason="needs root, unshare, Debian's nginx and the cached vllm-router venv")


@needs
def test_apply_proves_the_kv_cache_moved_then_status_and_down(tmp_path: Path) -> None:
    out = _run(tmp_path, recompute=False, base=18600)
    apply = (out / "apply.txt").read_text()
    assert (out / "apply.rc").read_text().strip() == "0", apply[-3000:]
    assert "router: created (http://127.0.0.1:18600 in front of 2 server(s)" in apply
    assert "without the API key at http://127.0.0.1:18601: 18 of 18 paths refused" in apply
    assert "kv-transfer: ok (http://127.0.0.1:18601/v1/completions answered; decode-0: 1 NIXL transfer(s)" in apply
    status = json.loads((out / "status.json").read_text())
    assert (out / "status.rc").read_text().strip() == "0"
    assert [s["node"] for s in status["servers"]] == ["decode-0", "prefill-0"]
    assert status["router"]["status"] == "running" and status["kv_transfer"]["decode-0"]["transfers"] >= 1
    assert (out / "down.rc").read_text().strip() == "0"
    assert "removed 4 container(s): pd-e2e-gateway, pd-e2e-router, pd-e2e-prefill-0, pd-e2e-decode-0" in \
        (out / "down.txt").read_text()
    assert (out / "left.txt").read_text() == ""
    run_dir = tmp_path / "home" / ".vllmgen" / "deployments" / "pd-e2e" / "run"
    assert KEY not in "".join(p.read_text(errors="replace") for p in run_dir.glob("*.log"))


@needs
def test_a_decode_that_recomputes_the_prompt_fails_apply(tmp_path: Path) -> None:
    out = _run(tmp_path, recompute=True, base=18620)
    apply = (out / "apply.txt").read_text()
    assert (out / "apply.rc").read_text().strip() == "4", apply[-3000:]
    assert "step kv-transfer: the completion was answered, but no decode instance read its KV cache" in apply
    assert "the decode recomputed the prompt" in apply
    assert (out / "left.txt").read_text() == ""
