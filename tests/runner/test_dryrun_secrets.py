"""`apply --dry-run` shows secrets by name and needs none of their values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_needs_no_secret_values():
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "QWEN_API_KEY", "VLLM_API_KEY")}
    result = subprocess.run([sys.executable, "-m", "vllmgen", "apply", "specs/china-mirror.yaml", "--node",
                             "gz-gpu-01", "--dry-run"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "--env HF_TOKEN --env VLLM_API_KEY" in out
    assert 'Authorization: Bearer ${VLLM_API_KEY}' in out
    assert "secrets missing" not in out
