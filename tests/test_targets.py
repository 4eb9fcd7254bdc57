"""The runtime seam: the registry, the spec's union and the engines agree, and what only Docker does is
asked of a Docker engine alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from vllmgen.plan.plan import Plan
from vllmgen.render.compile import compile_file
from vllmgen.runner import host as hosts
from vllmgen.runner import targets
from vllmgen.runner.executor import EngineError
from vllmgen.spec.model import Spec
from vllmgen.spec.runtime import members
from vllmgen.targets import registry
from vllmgen.targets.docker.engine import DockerEngine, docker_engine
from vllmgen.targets.docker.sdk import DockerSdkExecutor
from vllmgen.targets.process.procexec import ProcessExecutor

ROOT = Path(__file__).resolve().parent.parent


def test_every_kind_the_spec_accepts_has_one_target_with_that_model() -> None:
    union = members(Spec.model_fields["runtime"].annotation)
    assert set(union) == set(registry.TARGETS)
    for kind, target in registry.TARGETS.items():
        assert target.kind == kind and union[kind] is target.runtime
        assert target.runtime.model_fields["kind"].annotation.__args__ == (kind,)  # Literal[kind]


def test_a_runtime_without_kind_is_docker() -> None:
    spec = Spec.model_validate({"version": 1, "name": "x", "model": {"source": "a/b"},
                                "nodes": [{"name": "a", "address": "127.0.0.1", "gpus": 1}], "runtime": {}})
    assert spec.runtime.kind == "docker" and spec.runtime.in_containers


@pytest.mark.parametrize(("spec", "engine"), [("seed-single-node.yaml", DockerSdkExecutor),
                                              ("process-two-node-mp.yaml", ProcessExecutor)])
def test_the_runner_builds_the_engine_the_registry_names(spec: str, engine: type) -> None:
    plan = compile_file(ROOT / "specs" / spec).plan
    made = targets.executors(plan, [plan.head.name], remote=False)
    try:
        assert type(made[plan.head.name]) is engine
    finally:
        targets.close(made)


def test_a_target_without_an_engine_is_refused_in_words(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = compile_file(ROOT / "specs" / "seed-single-node.yaml").plan
    docker = registry.TARGETS["docker"]
    monkeypatch.setitem(registry.TARGETS, "docker", registry.Target("docker", docker.runtime, docker.artifacts,
                                                                     None, docker=True))
    with pytest.raises(ValueError, match="not run from here"):
        targets.executors(plan, [plan.head.name], remote=False)


def test_the_process_engine_is_no_docker_engine_and_docker_only_steps_say_so(tmp_path: Path) -> None:
    process = ProcessExecutor("n0", tmp_path, "vllm")
    assert not isinstance(process, DockerEngine)
    assert isinstance(DockerSdkExecutor("n0", None), DockerEngine)
    with pytest.raises(EngineError, match="needs a Docker engine"):
        docker_engine(process).image_id("x")


class _Host(hosts.LocalHost):
    def __init__(self, rc: int, out: str) -> None:
        super().__init__()
        self.answer = hosts.Completed(rc, out, "")

    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 120) -> hosts.Completed:
        assert argv == list(hosts.GPU_QUERY)
        return self.answer


def test_one_gpu_count_for_every_host() -> None:
    assert _Host(0, "0\n1\n\n2\n").gpu_count() == 3
    assert _Host(9, "NVIDIA-SMI has failed").gpu_count() is None  # no driver: not known
    assert hosts.UnreachableHost("tcp://192.0.2.1:2376").gpu_count() is None


def fake_manual(command: str, plan: Plan, artifacts: list | None, build_dir: Path, *,
                dry_run: bool = False) -> registry.Answer:
    return registry.Answer(f"kubectl {command} -k {build_dir}/{plan.name}: nothing was done\n", 4)


def test_a_target_vllmgen_does_not_run_prints_what_to_run_and_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """How Kubernetes plugs in: engine None and a manual named by import path; apply/status/down/bench print
    its answer and exit with its code."""
    from click.testing import CliRunner

    from vllmgen.cli.commands import cli

    docker = registry.TARGETS["docker"]
    monkeypatch.setitem(registry.TARGETS, "docker", registry.Target(
        "docker", docker.runtime, docker.artifacts, None, docker=False,
        manual="test_targets:fake_manual"))
    spec = str(ROOT / "specs" / "seed-single-node.yaml")
    for argv in (["apply", spec, "--node", "gpu-1"], ["status", spec, "--all"], ["down", spec, "--all"],
                 ["bench", spec], ["doctor", spec]):
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 4, (argv, result.output)
        assert f"kubectl {argv[0]} -k build/qwen3-next-single" in result.output and "nothing was done" in result.output


def test_bench_on_a_process_spec_runs_beside_the_process_not_in_a_container() -> None:
    """bench takes the head's engine from the registry: a process spec's dry run prints no docker."""
    from click.testing import CliRunner

    from vllmgen.cli.commands import cli

    result = CliRunner().invoke(cli, ["bench", str(ROOT / "specs" / "process-two-node-mp.yaml"), "--dry-run"],
                                env={"PROC_API_KEY": "k" * 12})
    assert result.exit_code == 0, result.output
    assert "docker exec" not in result.output and "\nvllm bench serve " in result.output
    assert "beside process proc-mp-gpu-a on node gpu-a" in result.output
