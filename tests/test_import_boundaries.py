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
from vllmgen.cli import main
from vllmgen.compile import compile_file
from vllmgen.write import check, write

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
    assert "vllmgen.compile" in modules and "vllmgen.write" in modules  # the pipeline did run
    imported = [m for m in modules for name in FORBIDDEN if m == name or m.startswith(name + ".")]
    assert imported == []
