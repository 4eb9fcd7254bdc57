"""Honest idempotence, through the dry-run executor: the config-hash apply sets covers the image actually
run and a keyed fingerprint of the secret values; `--node` never replaces one node of a group alone;
status shows and down removes orphans (this deployment's containers of nodes no longer in the spec).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import replace
from pathlib import Path

import pytest

from vllmgen.errors import RunnerError
from vllmgen.runner import identity, status, targets
from vllmgen.runner.dryrun import Recorder
from vllmgen.runner.executor import ContainerState
from vllmgen.runner.progress import Progress
from vllmgen.runner.down import down

from .test_steps_dryrun import ROOT, SECRETS, _applied, _apply, _compiled

RAY = ROOT / "specs" / "seed-two-node-ray.yaml"
MP = ROOT / "specs" / "seed-two-node-mp.yaml"
CN = ROOT / "specs" / "china-mirror.yaml"  # api_key: {env: QWEN_API_KEY}


def _results(report) -> dict[tuple[str, str], tuple[str, str]]:  # noqa: ANN001
    return {(o.step, o.node): (o.result, o.detail) for o in report.outcomes}


def test_a_rebuilt_image_replaces_the_container() -> None:
    compiled, _ = _compiled(CN)
    node = compiled.plan.head
    old = _applied(compiled.plan, node)
    labels = dict(old.labels) | identity.run_labels(dict(node.container.labels)[identity.HASH_LABEL],
                                                    "sha256:0123456789abcdef", old.labels[identity.SECRETS_LABEL])
    runner, _, _ = _apply(CN, containers={node.container.name: replace(old, labels=labels)})
    result, why = _results(runner.run())[("head", node.name)]
    assert result == "replaced" and "the image was rebuilt (0123456789ab -> (the ID of" in why


def test_a_rotated_secret_replaces_the_container_and_no_label_holds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled, _ = _compiled(CN)
    node = compiled.plan.head
    containers = {node.container.name: _applied(compiled.plan, node)}
    monkeypatch.setitem(SECRETS, "QWEN_API_KEY", "sk-rotated-key-value-000")
    runner, recorder, progress = _apply(CN, containers=containers)
    report = runner.run()
    assert _results(report)[("head", node.name)] == (
        "replaced", f"{node.container.name}: a secret's value changed (its fingerprint differs)")
    started = recorder.stream.getvalue() + progress.getvalue()
    assert "sk-rotated-key-value-000" not in started
    fingerprint = identity.secrets_fingerprint({"HF_TOKEN": SECRETS["HF_TOKEN"], "VLLM_API_KEY": SECRETS["QWEN_API_KEY"]},
                                               SECRETS)
    assert f"io.vllmgen.secrets={fingerprint}" in started
    # keyed: not a plain digest of the values, and another key gives another fingerprint
    plain = hashlib.sha256(SECRETS["QWEN_API_KEY"].encode()).hexdigest()
    assert fingerprint not in plain
    other = identity.secrets_fingerprint({"VLLM_API_KEY": "x"}, {identity.KEY_ENV: "key-one-0123456789"})
    assert other != identity.secrets_fingerprint({"VLLM_API_KEY": "x"}, {identity.KEY_ENV: "key-two-0123456789"})


def test_the_fingerprint_key_is_made_once_on_the_control_machine(tmp_path: Path) -> None:
    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    first = identity.secrets_fingerprint({"VLLM_API_KEY": "abc"}, environ)
    key = tmp_path / "vllmgen" / "fingerprint-key"
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_text().strip()) == 64
    assert identity.secrets_fingerprint({"VLLM_API_KEY": "abc"}, environ) == first
    assert identity.secrets_fingerprint({}, environ) == "none"


def test_a_container_started_by_start_sh_is_replaced_once_with_a_reason() -> None:
    compiled, _ = _compiled(CN)
    node = compiled.plan.head
    by_script = ContainerState(node.container.name, "running", None, dict(node.container.labels))
    runner, _, _ = _apply(CN, containers={node.container.name: by_script})
    result, why = _results(runner.run())[("head", node.name)]
    assert result == "replaced" and "started outside apply (start.sh or compose)" in why


@pytest.mark.parametrize("spec", [RAY, MP], ids=["ray", "mp"])
def test_node_scope_refuses_to_replace_one_node_of_a_group(spec: Path) -> None:
    compiled, _ = _compiled(spec)
    plan = compiled.plan
    worker = plan.workers[0]
    stale = replace(_applied(plan, worker), status="exited", exit_code=1)
    runner, recorder, _ = _apply(spec, [worker.name], containers={worker.container.name: stale})
    with pytest.raises(RunnerError) as caught:
        runner.run()
    message = str(caught.value)
    assert message.startswith(f"node {worker.name}, step workers: {worker.container.name} would be replaced"
                              " (it is exited (exit code 1))")
    assert f"2-node {plan.backend} group ({plan.head.name} not in scope)" in message
    assert "`vllmgen apply SPEC --all`" in message and "`vllmgen down SPEC --node NAME` on every node" in message
    assert not [c for c in recorder.calls if c.op in ("run", "remove")]


def test_node_scope_still_starts_a_missing_container() -> None:
    compiled, _ = _compiled(MP)
    worker = compiled.plan.workers[0]
    runner, recorder, _ = _apply(MP, [worker.name])
    assert _results(runner.run())[("workers", worker.name)][0] == "created"


def _orphaned(plan, executors) -> None:  # noqa: ANN001
    """On the head's engine: ours, plus a container of a node the spec no longer has."""
    labels = {"io.vllmgen.deployment": plan.name, "io.vllmgen.node": "worker-9", "io.vllmgen.role": "worker"}
    executors[plan.head.name].engine.images = {plan.image.tag: {}}
    executors[plan.head.name].engine.containers = {
        plan.head.container.name: _applied(plan, plan.head),
        f"{plan.name}-worker-9": ContainerState(f"{plan.name}-worker-9", "running", None, labels),
        "someone-else": ContainerState("someone-else", "running", None, {"io.vllmgen.deployment": "other"}),
    }


def test_status_shows_orphans_and_down_removes_them() -> None:
    compiled, _ = _compiled(RAY)
    plan = compiled.plan
    recorder = Recorder(stream=io.StringIO())
    executors = targets.executors(plan, [n.name for n in plan.nodes], remote=True, dry_run=recorder)
    _orphaned(plan, executors)
    report = status.collect(plan, executors, targets.http_client(plan, recorder))
    assert report["orphans"] == [{"node": "worker-9", "container": f"{plan.name}-worker-9", "status": "running",
                                  "engine of": "head"}]
    assert (f"orphan: {plan.name}-worker-9 (node worker-9, no longer in the spec) on head's engine:"
            " `vllmgen down SPEC` removes it") in report["problems"]
    text = status.table(report)
    assert f"head      head    {plan.head.container.name}      running  current" in text
    assert f"head      -       {plan.name}-worker-9  running  orphan (worker-9)" in text
    removed = down(plan, executors, Progress(io.StringIO()))
    assert removed == [f"{plan.name}-worker-9", plan.head.container.name]
    assert list(executors[plan.head.name].engine.containers) == ["someone-else"]


def test_key_file_is_not_made_without_secrets(tmp_path: Path) -> None:
    assert identity.secrets_fingerprint({}, {"XDG_CONFIG_HOME": str(tmp_path)}) == "none"
    assert not os.listdir(tmp_path)


def test_status_calls_a_container_on_an_older_image_stale() -> None:
    compiled, _ = _compiled(CN)
    plan = compiled.plan
    recorder = Recorder(stream=io.StringIO())
    executors = targets.executors(plan, [plan.head.name], remote=True, dry_run=recorder)
    http = targets.http_client(plan, recorder)
    head = executors[plan.head.name]
    head.engine.containers = {plan.head.container.name: _applied(plan, plan.head)}
    head.engine.images = {plan.image.tag: {}}  # the image the container was started from
    assert status.collect(plan, executors, http)["nodes"][0]["containers"][0]["current"] is True
    head.image_id = lambda tag: "sha256:rebuilt-since"  # type: ignore[method-assign]
    report = status.collect(plan, executors, http)
    assert report["nodes"][0]["containers"][0]["current"] is False
    assert f"node {plan.head.name}: {plan.head.container.name} is not the spec's (its definition or image changed):" \
           " apply again" in report["problems"]


def test_a_short_or_unreadable_key_is_a_runner_error(tmp_path):
    from vllmgen.errors import RunnerError

    with pytest.raises(RunnerError, match="shorter than 16 bytes"):
        identity.secrets_fingerprint({"VLLM_API_KEY": "x"}, {identity.KEY_ENV: "short"})
    config = tmp_path / "config"
    (config / "vllmgen").mkdir(parents=True)
    (config / "vllmgen" / "fingerprint-key").mkdir()  # a folder where the key file should be
    with pytest.raises(RunnerError, match="cannot read or make the secrets' fingerprint key"):
        identity.secrets_fingerprint({"VLLM_API_KEY": "x"}, {"XDG_CONFIG_HOME": str(config)})
