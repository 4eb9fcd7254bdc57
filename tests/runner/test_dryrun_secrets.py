"""`apply --dry-run` and `bench --dry-run` show secrets by name, need none of their values, read each
from where the spec keeps it, and print commands that keep the key off every argv: the printed curl
lines are run for real against a loopback server, through a curl wrapper that records its argv."""

from __future__ import annotations

import io
import os
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from inprocess import run_vllmgen
from loopback_http import recorder, serving, url

from vllmgen.plan.plan import SecretEnv
from vllmgen.render.compile import compile_file
from vllmgen.runner.dryrun import DryRunHttp, Recorder

ROOT = Path(__file__).resolve().parents[2]
SECRET_VARS = ("HF_TOKEN", "QWEN_API_KEY", "VLLM_API_KEY")


def _dry(*argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    return run_vllmgen(*argv, "--dry-run", cwd=ROOT, env=env)


def test_dry_run_needs_no_secret_values_and_passes_the_variable_the_spec_names():
    result = _dry("apply", "specs/china-mirror.yaml", "--node", "gz-gpu-01")
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "secrets missing" not in out
    # api_key: {env: QWEN_API_KEY}: docker run's bare --env VLLM_API_KEY finds the value in its environment
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("docker run "))
    assert lines[at - 1] == 'export VLLM_API_KEY="${QWEN_API_KEY}"' and "--env VLLM_API_KEY " in lines[at]
    assert "--env HF_TOKEN " in lines[at] and "export HF_TOKEN" not in out  # read from the variable of its own name
    assert "# passes HF_TOKEN (from $HF_TOKEN), VLLM_API_KEY (from $QWEN_API_KEY) by name" in out
    keyed = [line for line in out.splitlines() if "Authorization" in line]
    assert len(keyed) == 7 and all(  # the head: /v1/models, chat, text; the gateway: /health and the same three
        line.startswith("printf 'Authorization: Bearer %s\\n' \"${QWEN_API_KEY}\" | curl -H @- ") for line in keyed)
    assert "${VLLM_API_KEY}" not in out


def test_bench_dry_run_needs_no_secret_and_passes_the_key_from_the_specs_variable():
    result = _dry("bench", "specs/china-mirror.yaml")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    execs = [i for i, line in enumerate(lines) if "vllm bench serve" in line]
    assert execs and all(lines[i].startswith("docker exec --env OPENAI_API_KEY ")
                         and lines[i - 1] == 'export OPENAI_API_KEY="${QWEN_API_KEY}"' for i in execs)


@pytest.fixture
def server():
    handler = recorder()
    with serving(handler) as httpd:
        yield url(httpd), handler.seen


@pytest.fixture
def curl_spy(tmp_path):
    """A `curl` first on PATH that writes its argv to a file, then runs the real one."""
    real = subprocess.run(["bash", "-c", "command -v curl"], capture_output=True, text=True).stdout.strip()
    if not real:
        pytest.skip("no curl on this machine")
    spy = tmp_path / "bin" / "curl"
    spy.parent.mkdir()
    argv_file = tmp_path / "curl-argv"
    spy.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {argv_file}\nexec {real} "$@"\n')
    spy.chmod(0o755)
    return spy.parent, argv_file


KEY = "sk-proj-not-a-real-key-but-long-enough-0123"


@pytest.mark.parametrize("where", ["env", "file", "home file"])
def test_the_printed_curl_sends_the_key_from_the_specs_source_and_never_on_argv(where, server, curl_spy, tmp_path):
    home = tmp_path / "home"
    (home / "keys dir").mkdir(parents=True)
    (home / "keys dir" / "api key").write_text(KEY + "\n")
    secret = {"env": SecretEnv("VLLM_API_KEY", from_env="DEMO_KEY"),
              "file": SecretEnv("VLLM_API_KEY", from_file=str(home / "keys dir" / "api key")),
              "home file": SecretEnv("VLLM_API_KEY", from_file="~/keys dir/api key")}[where]
    printed = io.StringIO()
    plan = replace(compile_file(ROOT / "specs" / "china-mirror.yaml").plan, secrets=(secret,))
    http = DryRunHttp(Recorder(stream=printed), plan)
    http.request("GET", "http://192.0.2.1:8000/v1/models", {"Authorization": "Bearer <from the dry run>"})
    http.request("POST", "http://192.0.2.1:8000/v1/chat/completions", {"Authorization": "Bearer x"}, {"m": 1})
    lines = [line for line in printed.getvalue().splitlines() if line.startswith("printf")]
    assert len(lines) == 2 and KEY not in printed.getvalue()
    address, seen = server
    script = "\n".join(line.replace("http://192.0.2.1:8000", address) for line in lines)
    bindir, argv_file = curl_spy
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "HOME": str(home), "DEMO_KEY": KEY}
    done = subprocess.run(["sh", "-ec", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [headers.get("Authorization") for headers in seen] == [f"Bearer {KEY}"] * 2
    argv = argv_file.read_text()
    assert "@-" in argv and KEY not in argv


def test_a_request_without_the_key_is_printed_without_a_header():
    printed = io.StringIO()
    plan = compile_file(ROOT / "specs" / "seed-single-node.yaml").plan
    DryRunHttp(Recorder(stream=printed), plan).request("GET", "http://192.0.2.1:8000/health")
    assert re.search(r"^curl -sS -X GET http://192\.0\.2\.1:8000/health$", printed.getvalue(), re.M)
