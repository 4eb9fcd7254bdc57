"""Table and JSON rendering."""

from __future__ import annotations

import json

import pytest

from vllmgen.doctor import report
from vllmgen.doctor.checks import CheckResult, exit_code, fail, ok, skip, warn

RESULTS = [
    ok("gpu.count", "1 GPU(s), as expected"),
    fail("docker.socket_permission", "permission denied", "sudo usermod -aG docker $USER; newgrp docker"),
    warn("docker.nvidia_runtime", "no nvidia runtime", "install the toolkit"),
    skip("net.infiniband", "no HCAs declared"),
]


def test_table_rows_fixes_and_summary():
    lines = report.render_table(RESULTS).splitlines()
    assert lines[0].split() == ["STATUS", "CHECK", "DETAIL"]
    assert lines[1].split(None, 2) == ["OK", "gpu.count", "1 GPU(s), as expected"]
    assert lines[2].startswith("FAIL    docker.socket_permission  permission denied")
    assert lines[3].strip() == "fix: sudo usermod -aG docker $USER; newgrp docker"
    assert lines[5].strip() == "fix: install the toolkit"
    assert lines[-1] == "1 ok, 1 warn, 1 fail, 1 skip"


def test_table_title():
    assert report.render_table(RESULTS, title="node a").splitlines()[0] == "node a"


def test_json_document():
    doc = json.loads(report.render_json(RESULTS, node="a"))
    assert doc["node"] == "a" and doc["ok"] is False
    assert doc["summary"] == {"ok": 1, "warn": 1, "fail": 1, "skip": 1}
    assert doc["results"][1] == {
        "name": "docker.socket_permission",
        "status": "fail",
        "detail": "permission denied",
        "fix": "sudo usermod -aG docker $USER; newgrp docker",
    }


def test_exit_code_and_status_validation():
    assert exit_code(RESULTS) == 1
    assert exit_code([r for r in RESULTS if r.status != "fail"]) == 0
    with pytest.raises(ValueError):
        CheckResult("x", "bad", "detail")  # type: ignore[arg-type]
