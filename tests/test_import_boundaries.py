"""validate / render / render --check never import the docker SDK, the runner or an HTTP client.

They run in pre-commit hooks and CI on every commit: they must stay pure (no daemon, no network)
and fast, and an import of the runner's dependencies would be the first step away from both.
The pipeline runs in a fresh interpreter so that nothing this test session imported counts.
"""

import json
import subprocess
import sys

from conftest import ROOT

SPEC = ROOT / "specs" / "seed-two-node-ray.yaml"
FORBIDDEN = ("docker", "vllmgen.runner", "urllib3", "requests", "http.client", "urllib.request", "paramiko")

PIPELINE = """
import json, sys
from pathlib import Path
from vllmgen.cli.commands import main
from vllmgen.render.compile import compile_file
from vllmgen.render.write import check, write

spec, out = sys.argv[1], Path(sys.argv[2])
compiled = compile_file(spec)
write(compiled.artifacts, out / compiled.plan.name)
assert check(compiled.artifacts, out / compiled.plan.name) == []
codes = []
for argv in (["validate", spec], ["render", spec, "-o", str(out)], ["render", spec, "-o", str(out), "--check"]):
    sys.argv = ["vllmgen", *argv]
    try:
        main()
        codes.append(0)
    except SystemExit as exc:
        codes.append(exc.code)
print(json.dumps({"codes": codes, "modules": sorted(sys.modules)}))
"""


def test_pipeline_imports_no_docker_runner_or_http(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", PIPELINE, str(SPEC), str(tmp_path / "build")],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["codes"] == [0, 0, 0], result.stderr
    modules = report["modules"]
    assert "vllmgen.render.compile" in modules and "vllmgen.render.write" in modules  # the pipeline did run
    imported = [m for m in modules for name in FORBIDDEN if m == name or m.startswith(name + ".")]
    assert imported == []
    # nor the modules of the other commands (the runner's, the review tools')
    assert [m for m in ("vllmgen.cli.runner", "vllmgen.cli.review") if m in modules] == []


def test_no_model_field_takes_a_builtin_as_default_factory():
    """pydantic reads each factory's signature; a builtin's (list, dict) is parsed from text with tokenize,
    whose regexes cost every start ~5 ms: formats.empty_list / empty_dict instead."""
    from pydantic import BaseModel

    from vllmgen.spec.model import Spec

    seen, builtin = set(), []
    todo: list[type] = [Spec]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            if getattr(field.default_factory, "__module__", None) == "builtins":  # list, dict, set, ...:
                builtin.append(f"{model.__name__}.{name}")
            for kind in _types(field.annotation):
                if isinstance(kind, type) and issubclass(kind, BaseModel):
                    todo.append(kind)
    assert len(seen) > 10 and builtin == []


def _types(annotation) -> list:  # noqa: ANN001
    from typing import get_args

    found = [annotation]
    for arg in get_args(annotation):
        found += _types(arg)
    return found
