"""``offline: true``: the variables reach every serving container and process, and only under it."""

from pathlib import Path

import pytest

from vllmgen.render.compile import compile_file, plan_file
from vllmgen.errors import SpecError
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


def test_a_floating_front_door_image_is_refused_offline_with_its_position(tmp_path):
    text = (ROOT / "specs" / "airgapped.yaml").read_text() + "\ngateway:\n  image: nginx:latest\n"
    spec = tmp_path / "s.yaml"
    spec.write_text(text)
    line = text.splitlines().index("  image: nginx:latest") + 1
    with pytest.raises(SpecError) as caught:
        plan_file(spec)
    assert f"s.yaml:{line}:10: gateway.image: offline: true: the tag of nginx:latest moves" in str(caught.value)


@pytest.mark.parametrize("model, field, refused", [
    ("  source: Qwen/Qwen3-8B\n", "model.source", "no model.revision is set"),
    ("  source: Qwen/Qwen3-8B\n  revision: main\n", "model.revision", "model.revision 'main' can move"),
    ("  source: Qwen/Qwen3-8B\n  revision: " + "ab" * 20 + "\n", None, None),  # a commit: the snapshot bundled
    ("  source: Qwen/Qwen3-8B\n  revision: main\n  host_path: /srv/m\n", None, None),  # a folder: no snapshot
])
def test_offline_refuses_a_model_with_neither_host_path_nor_a_pinned_revision(tmp_path, model, field, refused):
    text = (ROOT / "specs" / "airgapped.yaml").read_text()
    start = text.index("model:\n") + len("model:\n")
    end = text.index("  path: /models/qwen3-8b")
    spec = tmp_path / "s.yaml"
    spec.write_text(text[:start] + model + text[end:])
    if field is None:
        plan_file(spec)
        return
    key = "  " + field.split(".")[1] + ":"
    line = next(n for n, text_line in enumerate(spec.read_text().splitlines(), 1) if text_line.startswith(key))
    with pytest.raises(SpecError) as caught:
        plan_file(spec)
    assert f"s.yaml:{line}:" in str(caught.value) and f"{field}: offline: true, no model.host_path, and {refused}" \
        in str(caught.value)
