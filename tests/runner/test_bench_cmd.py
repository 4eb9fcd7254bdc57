"""`vllmgen bench`'s run through an executor: inside the head container, the key in the exec's environment,
the result files read back, kept, and compared with the previous run of the same spec."""

from __future__ import annotations

import io
import json
from pathlib import Path

from click.testing import CliRunner

from vllmgen.cli.commands import cli
from vllmgen.runner import benchmark, benchrun
from vllmgen.runner.dryrun import FreshHost, Recorder, printing
from vllmgen.runner.executor import ContainerState, ExecResult
from vllmgen.runner.host import LocalHost
from vllmgen.runner.progress import Progress
from vllmgen.targets.docker.commands import DockerCli

from .test_steps_dryrun import ROOT, _compiled

FIXTURES = ROOT / "tests" / "fixtures" / "vllm-bench"
SINGLE = ROOT / "specs" / "seed-single-node.yaml"


class BenchHost(FreshHost):
    """The head as a running server whose `vllm bench serve` wrote the recorded result files."""

    def __init__(self, plan):  # noqa: ANN001
        super().__init__(plan.head.name, None, LocalHost())
        self.containers = {plan.head.container.name: ContainerState(plan.head.container.name, "running", None, {})}
        self.execs: list[tuple[tuple[str, ...], dict]] = []

    def exec(self, name, argv, *, detach=False, env=None):  # noqa: ANN001, ANN201
        super().exec(name, argv, detach=detach, env=env)
        self.execs.append((argv, dict(env or {})))
        if argv[0] == "cat":
            return ExecResult(0, (FIXTURES / Path(argv[1]).name).read_text())
        return ExecResult(0, "")


def _dry(engine: BenchHost):  # noqa: ANN202
    """The head's engine in a dry run of the Docker target: the docker exec lines printed."""
    return printing(engine, DockerCli(None, engine.host), Recorder(stream=io.StringIO()))


def test_bench_runs_in_the_head_keeps_and_compares(tmp_path: Path) -> None:
    plan = _compiled(SINGLE)[0].plan
    host = BenchHost(plan)
    head = _dry(host)
    kwargs = dict(preset=benchmark.PRESETS["smoke"], api_key="sk-bench-secret-1", results=tmp_path,
                  spec_sha256="a" * 64, progress=Progress(io.StringIO()))
    first = benchrun.run(plan, head, stamp="20261126T100000Z", **kwargs)
    assert first.where == f"inside container {plan.head.container.name} on node {plan.head.name}"
    assert [r.concurrency for r in first.rows] == [1, 2] and first.previous is None
    benches = [(argv, env) for argv, env in host.execs if argv[:3] == ("vllm", "bench", "serve")]
    assert len(benches) == 2 and all(env == {"OPENAI_API_KEY": "sk-bench-secret-1"} for _, env in benches)
    assert not any("sk-bench" in word for argv, _ in host.execs for word in argv)
    assert host.execs[-1][0][:2] == ("rm", "-rf")
    second = benchrun.run(plan, head, stamp="20261126T110000Z", **kwargs)
    assert second.previous is not None and "vs last: req/s +0%" in second.text()
    assert f"vllm bench serve ran inside container {plan.head.container.name}" in second.text()
    stored = json.loads(second.path.read_text())
    assert stored["spec_sha256"] == "a" * 64 and stored["where"] == second.where
    assert second.as_dict()["rows"][1]["completed"] == 8


def test_dry_run_names_the_key_never_its_value() -> None:
    spec = ROOT / "specs" / "china-mirror.yaml"
    result = CliRunner().invoke(cli, ["bench", str(spec), "--dry-run", "--preset", "smoke"],
                                env={"HF_TOKEN": "hf_x", "QWEN_API_KEY": "sk-never-printed-42"})
    assert result.exit_code == 0, result.output
    assert "--env OPENAI_API_KEY" in result.output and "sk-never-printed" not in result.output
    assert "vllm bench serve" in result.output and "the benchmark would run inside container" in result.output


def _tokenizer(plan) -> str:  # noqa: ANN001
    host = BenchHost(plan)
    benchrun.run(plan, host, preset=benchmark.PRESETS["smoke"], api_key=None, results=Path("/nonexistent"),
                 spec_sha256="a" * 64, progress=Progress(io.StringIO()), dry_run=True)
    words = next(argv for argv, _ in host.execs if argv[:3] == ("vllm", "bench", "serve"))
    return words[words.index("--tokenizer") + 1]


def test_a_process_benchmark_reads_the_tokenizer_where_the_server_reads_the_model(tmp_path: Path) -> None:
    """The process runtime has no /models/model: `vllm bench serve` runs beside the server, on its host, and
    takes the tokenizer from model.host_path (the head's own, when the node overrides it; ~ is the home)."""
    plan = _compiled(ROOT / "specs" / "process-two-node-mp.yaml")[0].plan
    assert plan.model_ref == "/models/model"
    assert _tokenizer(plan) == "/data/models/qwen3-8b"
    text = (ROOT / "specs" / "process-two-node-mp.yaml").read_text()
    spec = tmp_path / "home-model.yaml"
    spec.write_text(text.replace("host_path: /data/models/qwen3-8b", "host_path: ~/models/qwen3-8b"))
    assert _tokenizer(_compiled(spec)[0].plan) == f"{Path.home()}/models/qwen3-8b"


def test_a_container_benchmark_reads_the_tokenizer_inside_the_container() -> None:
    plan = _compiled(ROOT / "specs" / "seed-two-node-mp.yaml")[0].plan  # docker, model.host_path set
    assert plan.runtime == "docker" and _tokenizer(plan) == plan.model_ref == "/models/qwen3-next"  # model.path
    assert _tokenizer(_compiled(SINGLE)[0].plan) == "Qwen/Qwen3-Next-80B-A3B"  # no host_path: the repo id
