"""The process runtime's tamper cases of issue 17, each inside a PID namespace of its own
(`unshare -pf --mount-proc`, as root) so that a bug cannot signal anything of this machine: the
rendered start.sh/stop.sh and the ProcessExecutor against records naming PID 1, -1, 0, a string, a
null start, a foreign live process, symlinks planted in run/, a leader that died leaving its session (an engine core titled over its environment, as vLLM's, and a
worker in a group of its own), an API server that gives up on a failed engine and leaves it,
a server that exits at once, and two starts at once. pidns_scenario.py plays each case and asserts
that bystanders and PID 1 are never signalled, nothing is left behind and nothing is reported
running that is not. A stand-in vllm (fake_vllm.py) serves; a few seconds a case."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vllmgen.render.compile import compile_file
from vllmgen.render.artifacts import render

ROOT = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).with_name("fake_vllm.py")
SCENARIO = Path(__file__).with_name("pidns_scenario.py")

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="needs root and unshare (a PID namespace per case)")


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _render(work: Path, **env: str) -> None:
    env = {"FAKE_VLLM_RECORD": str(work / "record.json"), **env}
    spec = work / "spec.yaml"
    spec.write_text(f"""version: 1
name: fake-proc
model: {{source: tiny, host_path: {work}, served_name: tiny}}
secrets: {{api_key: {{env: FAKE_KEY}}}}
runtime: {{kind: process, vllm: {FAKE}, env: {json.dumps(env)}}}
caches: {{keep: false}}
monitoring: {{enabled: false}}
nodes: [{{name: n0, address: 127.0.0.1, gpus: 1}}]
serve: {{host: 127.0.0.1, port: {_port()}}}
""")
    for artifact in render(compile_file(spec).plan):
        path = work / "build" / "fake-proc" / artifact.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(artifact.content)
        if artifact.executable:
            path.chmod(0o755)
    deploy = work / "home" / ".vllmgen" / "deployments" / "fake-proc"
    shutil.copytree(work / "build" / "fake-proc", deploy)  # where apply's executor runs run.sh from


CASE_ENV = {"exits_at_once": {"FAKE_VLLM_EXIT": "2"}, "engine_left": {"FAKE_VLLM_FATAL": "exit"}}


@pytest.mark.parametrize("case", ["pid1", "bad_values", "foreign", "symlinks", "leader_died", "engine_left",
                                  "exits_at_once", "race"])
def test_tamper_case_in_its_own_pid_namespace(case: str, tmp_path: Path) -> None:
    _render(tmp_path, **CASE_ENV.get(case, {}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FAKE_VLLM": str(FAKE), "HOME": str(tmp_path / "home")}
    result = subprocess.run(["unshare", "-pf", "--mount-proc", sys.executable, str(SCENARIO), case, str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stdout[-3000:] + result.stderr[-5000:]
