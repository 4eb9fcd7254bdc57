"""The pure pipeline in one call: spec file -> validated spec -> plan -> artifacts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vllmgen.render.fingerprint import inputs
from vllmgen.plan.plan import Plan, build_plan
from vllmgen.render.artifacts import Artifact, render
from vllmgen.spec.validate import ValidSpec, validate_file


@dataclass(frozen=True)
class Compiled:
    valid: ValidSpec
    plan: Plan
    artifacts: list[Artifact]


def plan_file(path: str | Path, *, strict: bool = False) -> tuple[ValidSpec, Plan]:
    valid = validate_file(str(path), strict=strict)
    # the header names the spec by file name only: no machine's paths in build/
    return valid, build_plan(valid.spec, Path(path).name)


def compile_file(path: str | Path, *, strict: bool = False) -> Compiled:
    valid, plan = plan_file(path, strict=strict)
    # what the output was made from, for `render --check`'s fast path (vllmgen.render.fastcheck)
    made_from = inputs(Path(path).read_bytes(), len(valid.warnings))
    return Compiled(valid, plan, render(plan, made_from))
