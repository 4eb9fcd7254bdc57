"""``vllmgen bench``'s run: ``vllm bench serve`` exec'd inside the serving (head) container, one run per
concurrency of the preset, its result files read back through the executor, kept and compared.

The head's image has vLLM and the model's tokenizer; the benchmark calls the server at its own
address inside the container (``127.0.0.1:PORT``). With the process runtime it runs beside the server,
on its host: the tokenizer is read from the folder the server reads the model from there (model.host_path),
not from the container path (/models/model) that only a container has. The API key goes as ``OPENAI_API_KEY`` in the
exec's environment (never argv; the dry run prints the name only).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vllmgen.plan.plan import Plan
from vllmgen.runner import benchmark
from vllmgen.runner.executor import EngineError, Executor
from vllmgen.runner.host import HostError
from vllmgen.runner.progress import Progress, fail
from vllmgen.targets import registry

STEP = "bench"


@dataclass(frozen=True)
class Run:
    where: str
    preset: benchmark.Preset
    note: str | None
    rows: list[benchmark.Row]
    previous: list[benchmark.Row] | None
    path: Path | None  # where the run was kept; None in a dry run

    def as_dict(self) -> dict[str, Any]:
        return {"where": self.where, "preset": asdict(self.preset), "note": self.note,
                "rows": [asdict(r) for r in self.rows],
                "previous": [asdict(r) for r in self.previous] if self.previous is not None else None,
                "stored": str(self.path) if self.path else None}

    def text(self) -> str:
        lines = [f"vllm bench serve ran {self.where}",
                 f"preset {self.preset.name}: random {self.preset.input_len} tokens in, {self.preset.output_len} out,"
                 f" concurrency {', '.join(map(str, self.preset.concurrencies))}"]
        if self.note:
            lines.append(f"note: {self.note}")
        lines.append(benchmark.table(self.rows, self.previous).rstrip())
        lines.append("compared with the last run of this spec" if self.previous is not None
                     else "no earlier run of this spec and preset to compare with")
        if self.path:
            lines.append(f"kept in {self.path}")
        return "\n".join(lines) + "\n"


def run(plan: Plan, executor: Executor, *, preset: benchmark.Preset, api_key: str | None, results: Path,
        spec_sha256: str, progress: Progress, dry_run: bool = False, stamp: str | None = None) -> Run:
    head = plan.head
    container = head.container.name
    target = registry.target(plan.runtime)
    where = (f"inside container {container} on node {head.name}" if target.docker
             else f"beside process {container} on node {head.name}")
    fitted, note = benchmark.fitted(preset, plan.serve_config.get("max-model-len"))
    stamp = stamp or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = f"/tmp/vllmgen-bench-{stamp}"
    env = {"OPENAI_API_KEY": api_key} if api_key else {}
    state = _engine(head.name, lambda: executor.inspect(container))
    if not dry_run and (state is None or not state.running):
        raise fail(head.name, STEP, f"{container} is not running", "apply the spec first: `vllmgen apply SPEC`")
    tokenizer = target.exec_path(plan.name, head.container, plan.model_ref)
    found: list[dict[str, Any]] = []
    for concurrency in fitted.concurrencies:
        name = f"c{concurrency}.json"
        words = benchmark.argv(fitted, concurrency, base_url=plan.direct_endpoint.url,
                               model=plan.endpoint.served_name, tokenizer=tokenizer, result_dir=folder,
                               result_file=name)
        progress.say(f"{STEP}: concurrency {concurrency}, {fitted.prompts(concurrency)} requests ({where})", head.name)
        done = _engine(head.name, lambda w=words: executor.exec(container, w, env=env))
        if done.rc not in (0, None):
            raise fail(head.name, STEP, f"vllm bench serve exited {done.rc} {where}",
                       "its output is below; `vllm bench` needs vLLM's bench extras in the image (image.vllm_extras: "
                       "[bench])", done.output[-4000:])
        read = _engine(head.name, lambda n=name: executor.exec(container, ("cat", f"{folder}/{n}")))
        if dry_run:
            continue
        try:
            found.append(json.loads(read.output))
        except ValueError as exc:
            raise fail(head.name, STEP, f"the result file {folder}/{name} is not JSON: {read.output[:200]!r}") from exc
    _engine(head.name, lambda: executor.exec(container, ("rm", "-rf", folder)))
    if dry_run:
        return Run(where, fitted, note, [], None, None)
    previous = benchmark.previous(results, plan.name, spec_sha256, fitted.name, stamp)
    path = benchmark.store(results, plan.name, spec_sha256, fitted, where, stamp, found)
    return Run(where, fitted, note, [benchmark.row(r) for r in found], previous, path)


def _engine(node: str, fn):  # noqa: ANN001, ANN202
    try:
        return fn()
    except (EngineError, HostError) as exc:
        raise fail(node, STEP, str(exc)) from exc

