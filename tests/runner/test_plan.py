"""`vllmgen plan` and the plan `apply` computes first, through the dry-run executor (no Docker)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from vllmgen.cli.commands import cli
from vllmgen.errors import RunnerError
from vllmgen.runner import changes
from vllmgen.runner.executor import IMAGE_HASH_LABEL, ContainerState, dockerfile_for, image_hash
from vllmgen.runner.steps import Options

from vllmgen.runner import identity
from vllmgen.runner.secrets import resolve

from .test_steps_dryrun import ROOT, SECRET_FILES, SECRETS, _applied, _apply, _compiled

MP = ROOT / "specs" / "seed-two-node-mp.yaml"
SINGLE = ROOT / "specs" / "seed-single-node.yaml"
WRITES = ("run", "remove", "build", "exec-detached", "write-daemon-json", "restart-daemon", "put-file")


def _deployed(spec: Path):
    """Containers and image as apply leaves them, for ``spec``'s dry run."""
    compiled, deploy_dir = _compiled(spec)
    plan = compiled.plan
    containers = {n.container.name: _applied(plan, n) for n in plan.nodes}
    if plan.gateway_container is not None:  # the gateway, as apply leaves it (its image by reference)
        gateway = plan.gateway_container
        labels = dict(gateway.labels)
        values = resolve(plan.secrets, environ=SECRETS, files=SECRET_FILES)
        labels |= identity.run_labels(labels["io.vllmgen.config-hash"], gateway.image,
                                      identity.secrets_fingerprint(values, SECRETS))
        containers[gateway.name] = ContainerState(gateway.name, "running", None, labels)
    images = {plan.image.tag: {IMAGE_HASH_LABEL: image_hash(dockerfile_for(deploy_dir, None))}}
    return plan, containers, images


def test_unchanged_deployment_plans_nothing_and_reads_only() -> None:
    plan, containers, images = _deployed(MP)
    runner, recorder, _ = _apply(MP, containers=containers, images=images)
    planned = runner.preview()
    assert not planned.pending and "nothing to do" in planned.text(), planned.text()
    assert [n.action for n in planned.nodes] == ["unchanged", "unchanged"]
    assert not [c for c in recorder.calls if c.op in WRITES]


def test_changed_definition_replaces_the_group_and_says_why() -> None:
    plan, containers, images = _deployed(MP)
    head = plan.head.container.name
    containers[head] = replace(containers[head], labels={**containers[head].labels, "io.vllmgen.config-hash": "0000"})
    runner, recorder, _ = _apply(MP, containers=containers, images=images)
    planned = runner.preview()
    assert planned.pending
    by_node = {n.node: n for n in planned.nodes}
    worker = plan.workers[0].name
    assert by_node[plan.head.name].action == "replace"
    assert by_node[plan.head.name].why.startswith("its definition changed")
    assert by_node[worker].why == "another node of the group changes; the group restarts together"
    assert planned.disruptive() and not [c for c in recorder.calls if c.op in WRITES]
    report = runner.run()  # apply then does what the plan said
    done = {o.node: o.result for o in report.outcomes if o.step in ("head", "workers")}
    assert done == {plan.head.name: "replaced", worker: "replaced"}


def test_rotated_secret_and_rebuilt_image_are_named() -> None:
    plan, containers, images = _deployed(SINGLE)
    rotated = {**SECRETS, "HF_TOKEN": "hf_other_value"}
    runner, _, _ = _apply(SINGLE, containers=containers, images=images)
    runner.environ = rotated
    assert runner.preview().nodes[0].why == "a secret's value changed (its fingerprint differs)"
    runner, _, _ = _apply(SINGLE, containers=containers, images={})
    node = runner.preview().nodes[0]
    assert (node.image, node.action) == ("build", "replace")
    assert node.why == f"the image is rebuilt ({plan.image.tag} is not on the node): a new image ID"


def test_orphans_are_planned_and_removed_by_apply() -> None:
    plan, containers, images = _deployed(SINGLE)
    containers["old"] = ContainerState("old", "running", None, {"io.vllmgen.deployment": plan.name,
                                                                 "io.vllmgen.node": "gpu-9"})
    runner, recorder, _ = _apply(SINGLE, containers=containers, images=images)
    for executor in runner.executors.values():
        executor.engine.served = {plan.head.container.name}
    planned = runner.preview()
    assert planned.pending and [o.container for o in planned.orphans] == ["old"]
    assert "orphan: remove old on gpu-1's engine (node gpu-9 is no longer in the spec; running)" in planned.text()
    runner, recorder, _ = _apply(SINGLE, containers=containers, images=images)
    report = runner.run()
    assert [(o.step, o.result) for o in report.changed] == [("orphans", "removed")]
    assert [c.detail for c in recorder.calls if c.op == "remove"] == ["old"]


def test_apply_asks_before_stopping_running_containers() -> None:
    plan, containers, images = _deployed(SINGLE)
    head = plan.head.container.name
    containers[head] = replace(containers[head], labels={**containers[head].labels, "io.vllmgen.config-hash": "1"})
    asked: list[str] = []
    runner, recorder, _ = _apply(SINGLE, containers=containers, images=images, options=Options(
        confirm=lambda q: True, confirm_replace=lambda q: asked.append(q) or False))
    with pytest.raises(changes.Cancelled) as caught:
        runner.run()
    assert caught.value.exit_code == 1 and f"  {head} on gpu-1 (its definition changed" in asked[0]
    assert not [c for c in recorder.calls if c.op in WRITES]
    # a first apply (nothing running) asks nothing
    asked.clear()
    runner, _, _ = _apply(SINGLE, options=Options(confirm=lambda q: True,
                                                 confirm_replace=lambda q: asked.append(q) or False))
    runner.run()
    assert asked == []


def test_cli_plan_exit_codes_and_json(tmp_path: Path) -> None:
    spec = str(SINGLE)
    runner = CliRunner()
    env = {"HF_TOKEN": "hf_test"}
    text = runner.invoke(cli, ["plan", spec, "--node", "gpu-1", "--dry-run", "--build-dir", str(ROOT / "build")],
                         env=env)
    assert text.exit_code == 1, text.output
    assert "container    create qwen3-next-single-gpu-1 (not there)" in text.output
    assert "image        build (vllmgen/qwen3-next-single:v0.32.0 is not on the node)" in text.output
    as_json = runner.invoke(cli, ["plan", spec, "--node", "gpu-1", "--dry-run", "--build-dir", str(ROOT / "build"), "-o", "json"],
                            env=env)
    assert as_json.exit_code == 1
    data = json.loads(as_json.stdout)
    assert data["pending"] and data["nodes"][0]["action"] == "create" and data["orphans"] == []
    usage = runner.invoke(cli, ["plan", spec])
    assert usage.exit_code == 2 and "--node NAME" in usage.output
    stale = runner.invoke(cli, ["plan", spec, "--node", "gpu-1", "--dry-run", "--build-dir", str(tmp_path)], env=env)
    assert isinstance(stale.exception, RunnerError) and "out of date with the spec" in str(stale.exception)


def test_compute_returns_the_convergence_and_leaves_apply_as_it_was() -> None:
    """changes.compute reads through apply's engines and returns what apply then carries out (no
    writes into apply): a rebuilt image predicts NEW_IMAGE, and preview keeps it for the steps."""
    plan, containers, images = _deployed(MP)
    images = {plan.image.tag: {IMAGE_HASH_LABEL: "another-dockerfile"}}
    runner, recorder, _ = _apply(MP, containers=containers, images=images)
    runner._step(runner.steps[0])  # preflight: secrets resolved, engines answer
    before = (runner.daemon_merges, dict(runner.image_plan), dict(runner.image_ids), runner.changes)
    planned = changes.compute(runner)
    assert (runner.daemon_merges, runner.image_plan, runner.image_ids, runner.changes) == before
    assert {name: action for name, (action, _) in planned.images.plan.items()} == {n.name: "build" for n in plan.nodes}
    assert set(planned.images.ids.values()) == {changes.NEW_IMAGE}
    assert [n.image for n in planned.changes.nodes] == ["build", "build"]
    assert not [c for c in recorder.calls if c.op in WRITES]
    kept = runner.preview()
    assert kept == runner.changes and runner.image_ids == planned.images.ids
