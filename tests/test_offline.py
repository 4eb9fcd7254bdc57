"""``offline: true``: the variables reach every serving container and process, and only under it."""

from pathlib import Path

import pytest

from vllmgen.render.compile import compile_file, plan_file
from vllmgen.spec.rules.offline import OFFLINE_ENV, floating

ROOT = Path(__file__).resolve().parents[1]


def test_every_node_of_the_airgapped_example_gets_the_offline_environment():
    _, plan = plan_file(ROOT / "specs" / "airgapped.yaml")
    assert plan.offline
    for node in plan.nodes:
        env = dict(node.container.env)
        assert {name: env.get(name) for name in OFFLINE_ENV} == OFFLINE_ENV, node.name


def test_without_offline_no_node_gets_them():
    for spec in sorted((ROOT / "specs").glob("*.yaml")):
        if spec.name == "airgapped.yaml":
            continue
        _, plan = plan_file(spec)
        assert not plan.offline
        for node in plan.nodes:
            assert not set(OFFLINE_ENV) & set(dict(node.container.env)), (spec.name, node.name)


def test_process_runtime_exports_them_in_run_sh(tmp_path):
    text = (ROOT / "specs" / "process-two-node-mp.yaml").read_text()
    spec = tmp_path / "proc.yaml"
    spec.write_text(text.replace("version: 1\n", "version: 1\noffline: true\n", 1))
    compiled = compile_file(spec)
    scripts = [a.content for a in compiled.artifacts  # every vLLM node's; the gateway (nginx) fetches nothing
               if a.path.endswith("/run.sh") and ".gateway/" not in a.path]
    assert scripts
    for script in scripts:
        for name, value in OFFLINE_ENV.items():
            assert f"{name}={value}" in script


@pytest.mark.parametrize("reference, moves", [
    ("vllm/vllm-openai:v0.32.0", False),
    ("vllm/vllm-openai", True),
    ("vllm/vllm-openai:latest", True),
    ("vllm/vllm-openai:nightly", True),
    ("python:slim", True),
    ("python:3.12-slim", False),
    ("registry.local:5000/vllm/vllm-openai", True),
    ("registry.local:5000/vllm/vllm-openai:v0.32.0", False),
    ("vllm/vllm-openai@sha256:" + "a" * 64, False),
])
def test_floating_tags(reference, moves):
    assert floating(reference) is moves
