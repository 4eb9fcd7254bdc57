"""`vllmgen plan` against a real dockerd 20.10, and `apply` doing exactly what it planned.

After apply an unchanged spec plans nothing (exit 0); a changed serve option plans the replacement of
the node's container, saying the definition changed (exit 1), and apply without a terminal and
without --yes refuses (exit 2), touching nothing; a renamed node plans a create and an orphan removal.
Each time, the plan apply prints and its outcomes are compared with what `plan` said.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .support import Cluster, apply_args, single_spec, write_spec

pytestmark = pytest.mark.slow

KEY = {"VG_TEST_API_KEY": "plan-key-not-secret-333"}


def _plan(cluster: Cluster, spec: Path, expect: int) -> dict:
    result = cluster.vllmgen("plan", str(spec), "--all", "--build-dir", str(spec.parent / "build"), "--base-image",
                             apply_args(spec)[5], "--no-gpus", "--output", "json",
                             "--daemon-json", str(cluster.daemons[0].config), env=KEY)
    assert result.returncode == expect, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


def _apply(cluster: Cluster, spec: Path, *extra: str) -> dict:
    daemon = cluster.daemons[0]
    result = cluster.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", "60", daemon=daemon),
                             "--output", "json", *extra, env=KEY)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


def _did(report: dict) -> dict[str, str]:
    """What apply did to containers: container step -> result, orphans removed."""
    return {o["detail"].split(":")[0]: o["result"] for o in report["outcomes"]
            if o["step"] in ("head", "workers", "orphans")}


def _said(plan: dict) -> dict[str, str]:
    words = {"create": "created", "replace": "replaced", "unchanged": "unchanged"}
    said = {n["container"]: words[n["action"]] for n in plan["nodes"]}
    return said | {o["container"]: "removed" for o in plan["orphans"]}


def test_plan_then_apply_does_what_it_said(one_host: Cluster, tmp_path: Path, python_prefix: str,
                                           fake_vllm: str) -> None:
    daemon = one_host.daemons[0]
    client = daemon.client()
    data = single_spec(daemon.endpoint, python_prefix, fake_vllm, tmp_path, name="vg-plan", port=18010)
    spec = write_spec(tmp_path, data)

    first = _plan(one_host, spec, 1)
    assert [n["action"] for n in first["nodes"]] == ["create"] and first["nodes"][0]["image"] == "build"
    assert first["nodes"][0]["daemon_keys"], "the test daemon lacks the spec's daemon.json keys"
    applied = _apply(one_host, spec)
    assert applied["plan"] == first and _did(applied) == _said(first) == {"vg-plan-solo": "created"}

    unchanged = _plan(one_host, spec, 0)
    assert not unchanged["pending"] and unchanged["nodes"][0]["why"] == "running, config-hash matches"
    started = client.containers.get("vg-plan-solo").id

    data["serve"]["max_model_len"] = 2048
    spec = write_spec(tmp_path, data)
    changed = _plan(one_host, spec, 1)
    node = changed["nodes"][0]
    assert (node["action"], node["image"], node["daemon_keys"]) == ("replace", "unchanged", [])
    assert node["why"].startswith("its definition changed (config-hash ") and node["running"]
    refused = one_host.vllmgen(*[a for a in apply_args(spec, "--all", "--no-gpus", daemon=daemon) if a != "--yes"],
                               env=KEY)
    assert refused.returncode == 2, refused.stderr
    assert "rerun with --yes" in refused.stderr and client.containers.get("vg-plan-solo").id == started
    applied = _apply(one_host, spec)
    assert applied["plan"] == changed and _did(applied) == _said(changed) == {"vg-plan-solo": "replaced"}
    assert client.containers.get("vg-plan-solo").id != started

    data["nodes"][0]["name"] = "solo2"  # the node renamed: its old container is an orphan
    spec = write_spec(tmp_path, data)
    renamed = _plan(one_host, spec, 1)
    # the node's server and its gateway (a keyed spec's front door, on that node) are both orphans
    assert sorted((o["container"], o["node"]) for o in renamed["orphans"]) == [
        ("vg-plan-gateway", "solo"), ("vg-plan-solo", "solo")]
    applied = _apply(one_host, spec)
    assert applied["plan"] == renamed
    gateway = one_host.daemons[0].client().containers.get("vg-plan-gateway")  # the front door still stands
    assert gateway.status == "running" and gateway.labels["io.vllmgen.node"] == "solo2", gateway.labels
    assert _did(applied) == _said(renamed)
    assert {k: v for k, v in _did(applied).items() if "gateway" not in k} == {"vg-plan-solo2": "created",
                                                                              "vg-plan-solo": "removed"}
    assert _plan(one_host, spec, 0)["orphans"] == []
    assert one_host.vllmgen("down", str(spec), "--all").returncode == 0
