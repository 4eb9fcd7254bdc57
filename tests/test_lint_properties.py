"""Property: whatever free text the spec accepts, the generated files still lint clean.

Each example sets several of the spec's free-text fields (and the spec's file name, which every
header names) at once; values the validator refuses are dropped one by one, the rest rendered
together. Then the real tools read the output: shellcheck on every script and on
secrets.env.example (which users `source`), hadolint on the Dockerfile, docker-compose on every
compose file; and sourcing secrets.env.example runs nothing.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from vllmgen.render import yamlout
from vllmgen.errors import SpecError
from vllmgen.spec.load import load_text
from vllmgen.plan.plan import build_plan
from vllmgen.render.artifacts import render
from vllmgen.spec.validate import validate
from vllmgen.render.write import write

BASE: dict[str, Any] = {
    "version": 1,
    "name": "lint",
    "image": {"base": "vllm/vllm-openai:v0.32.0", "pip_index_url": "https://pypi.example/simple",
              "git_packages": ["git+https://github.com/org/repo.git@v1"]},
    "model": {"source": "org/model", "host_path": "/data/model", "served_name": "tiny"},
    "secrets": {"hf_token": {"env": "MY_HF"}, "api_key": {"file": "/run/key"}},
    "runtime": {"env": {"A": "b"}, "volumes": [{"host": "/srv/x", "container": "/x"}]},
    "cluster": {"nic": "eth0"},
    "nodes": [
        {"name": "a", "address": "10.0.0.1", "gpus": 1, "role": "head", "env": {"N": "1"}},
        {"name": "b", "address": "10.0.0.2", "gpus": 1, "role": "worker"},
    ],
    "serve": {"tensor_parallel_size": 2, "extra_args": ["--chat-template", "t.jinja"]},
}

# (path into the spec, prefix that makes the value plausible for the field's pattern)
FIELDS: list[tuple[tuple, str]] = [
    (("model", "source"), ""),
    (("model", "served_name"), ""),
    (("model", "revision"), ""),
    (("model", "host_path"), "/"),
    (("model", "hf_cache"), "~/"),
    (("model", "path"), "/"),
    (("model", "hf_endpoint"), "https://hf.example/"),
    (("image", "pip_index_url"), "https://pypi.example/"),
    (("image", "uv_index_url"), "https://uv.example/"),
    (("image", "git_packages", 0), "git+https://github.com/org/repo.git@"),
    (("runtime", "env", "A"), ""),
    (("runtime", "volumes", 0, "host"), "~/"),
    (("runtime", "volumes", 0, "container"), "/"),
    (("nodes", 0, "env", "N"), ""),
    (("nodes", 0, "model_host_path"), "/"),
    (("nodes", 0, "hf_cache"), "/"),
    (("secrets", "api_key", "file"), "~/"),
    (("serve", "extra_args", 1), ""),
    (("serve", "host"), ""),
    (("serve", "speculative_config"), ""),
]
SPEC_FILE = ("spec file name",)  # not a field: the name every generated header quotes

SHELLISH = list("~$`'\"\\!#*?[]{}()<>|&;= \t:/.,@%^-_+aZ09é") + ["$(id)", "${HOME}", "`id`", "~/", "$1", "'$x'"]
value = st.one_of(
    st.lists(st.sampled_from(SHELLISH), min_size=1, max_size=8).map("".join),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=16),
)
BACKEND = st.sampled_from(["ray", "mp"])  # ray adds serve.sh and a Ray install to the Dockerfile
assignments = st.lists(st.tuples(st.sampled_from(FIELDS + [(SPEC_FILE, "")]), value), min_size=1, max_size=6)


def _set(data: dict, path: tuple, text: str) -> dict:
    data = copy.deepcopy(data)
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = {"method": "ngram", "prompt": text} if path[-1] == "speculative_config" else text
    return data


def _plan(data: dict, spec_file: str):
    valid = validate(load_text(yamlout.dump(data), spec_file))
    return build_plan(valid.spec, spec_file)


def _accepted(chosen: list, backend: str) -> tuple[dict, str, int]:
    """The base spec with every assignment the validator accepts on its own, and the spec file name.
    An explicit example must be accepted whole: a refused one would test nothing."""
    explicit = chosen in EXAMPLES
    data, spec_file = copy.deepcopy(BASE), "lint.yaml"
    data["cluster"]["backend"] = backend
    accepted = 0
    for (path, prefix), text in chosen:
        if path == SPEC_FILE:
            candidate = text.replace("/", "_").replace("\0", "_") + ".yaml"
            spec_file = candidate if len(candidate.encode()) < 255 else spec_file
            continue
        trial = _set(data, path, prefix + text)
        try:
            _plan(trial, spec_file)
        except SpecError as exc:
            assert not explicit, exc.diagnostics
            continue
        data = trial
        accepted += 1
    return data, spec_file, accepted


# compose refuses to start, and to print its config, while a secret it passes through is unset
COMPOSE_ENV = {"HOME": "/home/op", "PATH": "/usr/bin:/bin", "MY_HF": "hf-value", "VLLM_API_KEY": "key-value",
               "GRAFANA_ADMIN_PASSWORD": "admin-value"}


def _lint(build: Path) -> list[str]:
    problems = []
    # secrets.env.example names its shell in a directive: one shellcheck run reads every file
    scripts = [*sorted(map(str, build.rglob("*.sh"))), str(build / "secrets.env.example")]
    shellcheck = subprocess.run(["shellcheck", "--severity=style", *scripts], capture_output=True, text=True)
    hadolint = subprocess.run(["hadolint", "--config", str(ROOT / ".hadolint.yaml"), str(build / "Dockerfile")],
                              capture_output=True, text=True)
    for result in (shellcheck, hadolint):
        if result.returncode:
            problems.append(result.stdout + result.stderr)
    # node a's (every per-node field is set on it) and any other compose file (monitoring/)
    for compose in [build / "nodes" / "a" / "compose.yaml", *sorted(build.glob("*/compose.yaml"))]:
        result = subprocess.run([shutil.which("docker-compose") or "docker-compose", "-f", str(compose), "config",
                                 "--quiet"], capture_output=True, text=True, cwd=compose.parent, env=COMPOSE_ENV)
        if result.returncode:
            problems.append(f"{compose}: {result.stderr}")
    sourced = subprocess.run(["bash", "-c", "set -eu; . ./secrets.env.example"], cwd=build, capture_output=True,
                             env={"PATH": "/usr/bin:/bin"})
    if sourced.returncode or sourced.stdout or sourced.stderr:
        problems.append(f"sourcing secrets.env.example: {sourced}")
    return problems


def _check(chosen, backend: str, tmp_path_factory) -> None:
    data, spec_file, accepted = _accepted(chosen, backend)
    event(f"{accepted} field value(s) accepted")
    artifacts = render(_plan(data, spec_file))
    build = tmp_path_factory.mktemp("lint") / "lint"
    write(artifacts, build)
    problems = _lint(build)
    assert not problems, (chosen, "\n".join(problems))


EXAMPLES = [  # values that made the output fail a linter (SC2088, SC2016), or broke a comment line
    [((("serve", "extra_args", 1), ""), "~/x")],
    [((("runtime", "env", "A"), ""), "$HOME/x"), ((("runtime", "volumes", 0, "container"), "/"), "$x")],
    [((("image", "git_packages", 0), "git+https://github.com/org/repo.git@"), "v$1")],
    [((("image", "pip_index_url"), "https://pypi.example/"), "`id`$x")],
    [((SPEC_FILE, ""), "x\n$(touch pwned)\n")],
    [((SPEC_FILE, ""), "a\x85b\u2028c\x01")],
    [((("secrets", "api_key", "file"), "~/"), "'$x' `id`"), ((("nodes", 0, "env", "N"), ""), "~")],
    [((("model", "path"), "/"), "a\\")],  # SC1003: a single-quoted word ending in a backslash
    [((("secrets", "api_key", "file"), "~/"), "~$")],  # SC2140: "${HOME}"/\~"\$" read as "A"B"C"
]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chosen=assignments, backend=BACKEND)
@example(chosen=EXAMPLES[0], backend="ray")
@example(chosen=EXAMPLES[1], backend="ray")
@example(chosen=EXAMPLES[2], backend="mp")
@example(chosen=EXAMPLES[3], backend="mp")
@example(chosen=EXAMPLES[4], backend="ray")
@example(chosen=EXAMPLES[5], backend="mp")
@example(chosen=EXAMPLES[6], backend="mp")
@example(chosen=EXAMPLES[7], backend="ray")
@example(chosen=EXAMPLES[8], backend="mp")
def test_accepted_free_text_lints_clean(chosen, backend, tmp_path_factory):
    _check(chosen, backend, tmp_path_factory)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chosen=assignments, backend=BACKEND)
def test_accepted_free_text_lints_clean_many(chosen, backend, tmp_path_factory):
    _check(chosen, backend, tmp_path_factory)


@pytest.mark.parametrize("word", ["null", "true", "on", "n"])  # YAML 1.2's null and bool, 1.1's bools
def test_nodes_named_like_yaml_words_give_valid_compose_files(word, tmp_path):
    data = copy.deepcopy(BASE)
    data["cluster"]["backend"] = "mp"
    data["nodes"][0]["name"] = word
    artifacts = render(_plan(data, "lint.yaml"))
    write(artifacts, tmp_path / "lint")
    compose = tmp_path / "lint" / "nodes" / word / "compose.yaml"
    assert f'\n  "{word}":\n' in compose.read_text()
    result = subprocess.run([shutil.which("docker-compose") or "docker-compose", "-f", str(compose), "config",
                             "--format", "json"], capture_output=True, text=True, cwd=compose.parent,
                            env=COMPOSE_ENV)
    assert result.returncode == 0, result.stderr
    assert word in result.stdout


def test_a_host_path_with_a_colon_is_refused_or_mounted_whole(tmp_path):
    data = _set(BASE, ("model", "host_path"), "/:")  # the slow property found it: "/::/models/model:ro"
    data["cluster"]["backend"] = "mp"
    try:
        artifacts = render(_plan(data, "lint.yaml"))
    except SpecError:
        return
    write(artifacts, tmp_path / "lint")
    assert not _lint(tmp_path / "lint")


def test_an_unclosed_variable_in_a_mount_path_is_refused():
    """docker-compose 5 loses a volume's target after an unclosed '${', even escaped as '$${' (found by CI)."""
    for path, value in ((("model", "host_path"), "/${"), (("model", "path"), "/mo${x")):
        data = _set(BASE, path, value)
        with pytest.raises(SpecError, match=r"cannot hold .*'\$\{'"):
            _plan(data, "lint.yaml")
