"""The rendered monitoring config against a real consumer: Debian's promtool checks every scrape config in
build/. A real Prometheus scraping a real vLLM that `apply` started is tested on the gateway's deployment
(tests/runner/test_gateway_e2e.py), beside the front door, where it had a CPU vLLM of its own here."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .support import ROOT, debian_tool

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("config", sorted((ROOT / "build").glob("*/monitoring/prometheus.yml")),
                         ids=lambda p: p.parents[1].name)
def test_promtool_accepts_every_rendered_scrape_config(config: Path) -> None:
    result = subprocess.run([debian_tool("promtool", "prometheus"), "check", "config", str(config)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
