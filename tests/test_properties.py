"""Hypothesis properties over the input space: free text that reaches a shell, and determinism.

Scripts are *run*, with a fake ``docker`` first on PATH that records the argv and environment
it receives, so "quoted" means: the value arrives byte-exact, whatever characters it holds.
"""

from __future__ import annotations

import copy
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vllmgen.targets.docker.dockercli import run_argv
from vllmgen.errors import SpecError
from vllmgen.render import yamlout
from vllmgen.errors import format_path
from vllmgen.spec.load import load_text
from vllmgen.plan.plan import build_plan
from vllmgen.render.artifacts import render
from vllmgen.spec.validate import validate
from vllmgen.render.write import check, write

# bash, not Python: it runs for every start.sh of every example (a Python start costs ~25 ms, bash ~2 ms);
# bash keeps every argument's and variable's bytes as they are (none can hold a NUL)
FAKE_DOCKER = r"""#!/bin/bash
if [[ ${1-} == container && ${2-} == inspect ]]; then
    exit 1
fi
printf '%s\0' "$@" > "$FAKE_DOCKER_LOG"
: > "$FAKE_DOCKER_LOG.env"
for name in HF_TOKEN VLLM_API_KEY; do
    if [[ -n ${!name+set} ]]; then
        printf '%s=%s\n' "$name" "${!name}" >> "$FAKE_DOCKER_LOG.env"
    fi
done
"""

BASE: dict[str, Any] = {
    "version": 1,
    "name": "prop",
    "image": {"base": "vllm/vllm-openai:v0.32.0"},
    "model": {"source": "org/model", "host_path": "/data/model", "served_name": "tiny"},
    "secrets": {"hf_token": {"env": "MY_HF"}, "api_key": {"file": "/run/key"}},
    "runtime": {"env": {"A": "b"}, "volumes": [{"host": "/srv/x", "container": "/x"}]},
    "cluster": {"backend": "mp", "nic": "eth0"},
    "nodes": [
        {"name": "a", "address": "192.0.2.1", "gpus": 1, "role": "head", "env": {"N": "1"}},
        {"name": "b", "address": "192.0.2.2", "gpus": 1, "role": "worker"},
    ],
    "serve": {"tensor_parallel_size": 2, "extra_args": ["--max-num-batched-tokens", "8"], "reasoning_parser": "deepseek_r1"},
}

# Every free-text field whose value reaches a script, as (path into the spec, setter).
TEXT_FIELDS = [
    ("model", "served_name"),
    ("model", "revision"),
    ("runtime", "env", "A"),
    ("nodes", 0, "env", "N"),
    ("serve", "extra_args", 1),
    ("serve", "reasoning_parser"),
    ("model", "host_path"),
    ("runtime", "volumes", 0, "host"),
    ("secrets", "api_key", "file"),
]


def _set(data: dict, path: tuple, value: Any) -> dict:
    data = copy.deepcopy(data)
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return data


def _compile(data: dict):
    # through real YAML text, so refusals carry real positions and the loader is exercised too
    valid = validate(load_text(yamlout.dump(data), "prop.yaml"))
    plan = build_plan(valid.spec, "prop.yaml")
    return plan, render(plan)


@pytest.fixture(scope="module")
def fake_docker(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fakebin")
    docker = folder / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    return folder


def _run_start(build: Path, node: str, fake_docker: Path, secret_file: Path, env_extra: dict) -> tuple[list[str], str]:
    log = build / "docker.log"
    env = {
        "PATH": f"{fake_docker}:/usr/bin:/bin",
        "HOME": "/home/op",
        "FAKE_DOCKER_LOG": str(log),
        "MY_HF": env_extra.get("MY_HF", "hf-value"),
    }
    result = subprocess.run(["bash", str(build / "nodes" / node / "start.sh")], env=env, capture_output=True)
    assert result.returncode == 0, result.stderr
    argv = [a.decode("utf-8", "surrogateescape") for a in log.read_bytes().split(b"\0")[:-1]]  # each ends in NUL
    return argv, (build / "docker.log.env").read_bytes().decode("utf-8", "surrogateescape")


def _expected_argv(plan, node_name: str, deploy_dir: Path, secret_file: str | None) -> list[str]:
    words = run_argv(plan.node(node_name).container)[1:]
    return [w if isinstance(w, str) else w.resolve("/home/op", str(deploy_dir)) for w in words]


text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(TEXT_FIELDS), value=text)
@example(field=("runtime", "env", "A"), value="'; touch /tmp/pwned #")
@example(field=("serve", "extra_args", 1), value="$(touch /tmp/pwned)")
@example(field=("nodes", 0, "env", "N"), value="`id` \\ \"q\" ${HOME} *")
@example(field=("model", "host_path"), value="/data/my model's $dir")
@example(field=("runtime", "volumes", 0, "host"), value="~/weights dir")
@example(field=("model", "served_name"), value="on")
def test_free_text_is_refused_with_a_position_or_carried_byte_exact(field, value, fake_docker, tmp_path_factory):
    data = _set(BASE, field, value)
    if field == ("secrets", "api_key", "file"):
        data = _set(data, field, value)
    try:
        plan, artifacts = _compile(data)
    except SpecError as exc:
        assert exc.diagnostics, "a refusal names at least one problem"
        for diagnostic in exc.diagnostics:
            assert diagnostic.file == "prop.yaml" and diagnostic.line >= 1 and diagnostic.message
        # the refusal points at the field that holds the text (or, for a rule, its own field)
        assert any(d.path.startswith(format_path(field[:2])) for d in exc.diagnostics), exc.diagnostics
        return
    build = tmp_path_factory.mktemp("build") / "prop"
    write(artifacts, build)
    for artifact in artifacts:
        if artifact.path.endswith(".sh"):
            subprocess.run(["bash", "-n", str(build / artifact.path)], check=True)
    if field == ("secrets", "api_key", "file"):
        return  # the file need not exist: start.sh would stop at `cat`, before docker
    secret_file = None
    for node in ("a", "b"):
        argv, _ = _run_start_with_key(build, node, fake_docker)
        assert argv == _expected_argv(plan, node, build, secret_file)
    # and the value is really there: on a command line, or in the YAML vLLM reads (PyYAML, as vLLM does)
    config = yaml.safe_load((build / "serve-config.yaml").read_text())
    carried = [arg for n in ("a", "b") for arg in _expected_argv(plan, n, build, None)]
    carried += [str(v) for v in config.values()]
    # start.sh expands a leading ~ to $HOME
    expanded = "/home/op" + value[1:] if value == "~" or value.startswith("~/") else value
    assert any(expanded in word for word in carried)


def _run_start_with_key(build: Path, node: str, fake_docker: Path):
    # the spec reads the API key from /run/key, which this machine lacks: point a copy at a temp file
    key = build / "key"
    key.write_text("k-secret")
    script = build / "nodes" / node / "start.sh"
    text = script.read_text()
    script.write_text(text.replace("cat -- /run/key", f"cat -- {key}"))
    try:
        return _run_start(build, node, fake_docker, key, {})
    finally:
        script.write_text(text)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30))
def test_secret_values_reach_docker_by_environment_only(secret, fake_docker, tmp_path_factory):
    plan, artifacts = _compile(BASE)
    build = tmp_path_factory.mktemp("build") / "prop"
    write(artifacts, build)
    key = build / "key"
    key.write_text(secret)
    script = build / "nodes" / "a" / "start.sh"
    script.write_text(script.read_text().replace("cat -- /run/key", f"cat -- {key}"))
    argv, env = _run_start(build, "a", fake_docker, key, {"MY_HF": "hf-value:" + secret})
    assert argv.count("HF_TOKEN") == 1 and argv.count("VLLM_API_KEY") == 1  # names only
    assert not any(secret in arg for arg in argv if arg not in ("HF_TOKEN", "VLLM_API_KEY")) or secret in "".join(
        _expected_argv(plan, "a", build, None)
    )
    # $(cat) drops trailing newlines, as a person reading a key file expects
    assert f"HF_TOKEN=hf-value:{secret}\n" in env and f"VLLM_API_KEY={secret.rstrip(chr(10))}\n" in env
    for artifact in artifacts:
        assert "hf-value:" + secret not in artifact.content


specs_strategy = st.fixed_dictionaries(
    {
        "nodes": st.integers(1, 6),
        "gpus": st.sampled_from([1, 2, 4, 8]),
        "backend": st.sampled_from(["ray", "mp"]),
        "port": st.integers(1024, 65535).filter(lambda p: p not in (6379, 29500, 9090, 3000)),  # Ray, master, Prometheus, Grafana
        "served": st.text(st.characters(codec="ascii", min_codepoint=32, max_codepoint=126), min_size=1, max_size=20),
        "prefix": st.sampled_from([None, True, False]),
    }
)


def _spec_from(params: dict) -> dict:
    nodes = [
        {"name": f"n{i}", "address": f"198.51.100.{i + 1}", "gpus": params["gpus"], "role": "head" if i == 0 else "worker"}
        for i in range(params["nodes"])
    ]
    serve: dict[str, Any] = {"tensor_parallel_size": params["gpus"], "pipeline_parallel_size": params["nodes"]}
    serve["port"] = params["port"]
    if params["prefix"] is not None:
        serve["enable_prefix_caching"] = params["prefix"]
    data = {
        "version": 1,
        "name": "gen",
        "model": {"source": "org/model", "served_name": params["served"]},
        "cluster": {"backend": params["backend"], "nic": "eth0"},
        "nodes": nodes,
        "serve": serve,
    }
    return data


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=specs_strategy)
def test_render_is_deterministic_and_write_then_check_is_clean(params, tmp_path_factory):
    data = _spec_from(params)
    try:
        plan, first = _compile(data)
    except SpecError as exc:
        pytest.fail("\n".join(map(str, exc.diagnostics)))
    _, second = _compile(copy.deepcopy(data))
    assert [(a.path, a.data, a.executable) for a in first] == [(a.path, a.data, a.executable) for a in second]
    build = tmp_path_factory.mktemp("out") / plan.name
    write(first, build)
    assert check(first, build) == []
    assert len(plan.nodes) == params["nodes"]
    assert plan.nodes[0].role == "head" and all(n.role == "worker" for n in plan.nodes[1:])
