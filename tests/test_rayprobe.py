"""serve.sh and `vllmgen apply` wait for the Ray cluster with one probe (vllmgen/render/rayprobe.py)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from vllmgen.render.rayprobe import RAY_PROBE
from vllmgen.runner.executor import parse_cluster_view

ROOT = Path(__file__).resolve().parent.parent
SERVE = ROOT / "build" / "qwen3-next-tp16-ray" / "serve.sh"


def _gpus_in_cluster(tmp_path: Path, docker_output: str, rc: int = 0) -> str:
    fake = tmp_path / "docker"
    fake.write_text(f"#!/bin/sh\ncat <<'OUT'\n{docker_output}\nOUT\nexit {rc}\n")
    fake.chmod(0o755)
    function = re.search(r"^gpus_in_cluster\(\) \{.*?^\}", SERVE.read_text(), re.MULTILINE | re.DOTALL).group(0)
    script = f"set -euo pipefail; container=head; {function}\ngpus_in_cluster"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True,
                          env={"PATH": f"{tmp_path}:/usr/bin:/bin"}).stdout


def test_serve_sh_runs_the_runners_probe_and_reads_the_same_count(tmp_path):
    assert RAY_PROBE.replace('"', '\\"') in SERVE.read_text() or RAY_PROBE in SERVE.read_text()
    line = '{"gpus": 16, "nodes": ["192.0.2.1", "192.0.2.2"]}'
    assert _gpus_in_cluster(tmp_path, f"a ray warning\n{line}") == "16\n"
    view = parse_cluster_view(f"a ray warning\n{line}")
    assert view is not None and view.gpus == 16 and view.nodes == ("192.0.2.1", "192.0.2.2")
    assert _gpus_in_cluster(tmp_path, "", rc=1) == "0\n"  # no cluster yet: keep waiting
