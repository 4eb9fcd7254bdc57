"""The runner against a real Docker engine: one namespace host with its own dockerd.

What is real: dockerd 20.10 (vfs, no registry), the generated Dockerfile built with its FROM
swapped for a local image (its `RUN uv pip install ...` runs, with a recording `uv`), the
generated container flags, daemon.json merged into the file the daemon is restarted with.
What is not: GPUs (`--gpus all` fails here, asserted below; the rest runs with --no-gpus) and
vLLM itself (a stand-in serves the OpenAI routes; tests/runner/test_bundle_real.py and the other e2e modules run the real one).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from infra.images import UV_CALLS

from .support import Cluster, apply_args, ok_stderr, ok_stdout, single_spec, write_spec

pytestmark = pytest.mark.slow

API_KEY = {"VG_TEST_API_KEY": "test-key-not-secret-123"}
GPU_ERROR = 'could not select device driver "" with capabilities: [[gpu]]'


def test_gpus_fail_here_with_the_seeds_error_and_daemon_json_is_merged(
        one_host: Cluster, tmp_path: Path, python_prefix: str, fake_vllm: str) -> None:
    daemon = one_host.daemons[0]
    spec = write_spec(tmp_path, single_spec(daemon.endpoint, python_prefix, fake_vllm, tmp_path, name="vg-gpu"))
    result = one_host.vllmgen(*apply_args(spec, "--all", "--yes", "--timeout", "60",
                                          "--daemon-json", str(daemon.config),
                                          "--docker-restart", daemon.restart_command), env=API_KEY)
    assert result.returncode == 4, result.stderr
    assert f"node solo, step head: {GPU_ERROR}" in result.stderr
    assert "nvidia-ctk runtime configure" in result.stderr and "--no-gpus" in result.stderr

    # daemon.json: the spec's keys merged in, the daemon's own kept, a backup, and dockerd runs with it
    merged = json.loads(daemon.config.read_text())
    assert merged["debug"] is False and merged["labels"] == ["vllmgen-test=kept"]
    assert merged["registry-mirrors"] == ["https://mirror.vllmgen.invalid"]
    assert merged["log-opts"] == {"max-size": "10m"}
    backups = sorted(daemon.dir.glob("daemon.json.vllmgen-backup-*"))
    assert len(backups) == 1 and json.loads(backups[0].read_text()) == {"debug": False, "labels": ["vllmgen-test=kept"]}
    info = daemon.client().info()
    assert info["RegistryConfig"]["Mirrors"] == ["https://mirror.vllmgen.invalid/"]
    assert info["LoggingDriver"] == "json-file" and "vllmgen-test=kept" in info["Labels"]
    assert "daemon-json: merged" in result.stderr

    # applied again: daemon.json is left alone, no second restart or backup
    again = one_host.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", "60",
                                         "--daemon-json", str(daemon.config), "--docker-restart", "false"), env=API_KEY)
    ok_stderr(again)
    assert "daemon-json: unchanged" in again.stderr
    assert len(list(daemon.dir.glob("daemon.json.vllmgen-backup-*"))) == 1
    ok_stderr(one_host.vllmgen("down", str(spec), "--all"))


def test_apply_status_reapply_replace_down(one_host: Cluster, tmp_path: Path, python_prefix: str,
                                           fake_vllm: str) -> None:
    daemon = one_host.daemons[0]
    client = daemon.client()
    bystander = client.containers.run("local/vllmgen-rootfs:bookworm-v2", ["sleep", "600"], name="not-ours",
                                      detach=True, network_mode="host")
    spec_dict = single_spec(daemon.endpoint, python_prefix, fake_vllm, tmp_path)
    spec = write_spec(tmp_path, spec_dict)
    apply = apply_args(spec, "--all", "--no-gpus", "--timeout", "60", daemon=daemon)

    first = ok_stderr(one_host.vllmgen(*apply, env=API_KEY))
    assert "image: built" in first and "head: created" in first
    assert "verify: /v1/models lists tiny" in first
    assert re.search(r"verify: without the API key at http://\S+: (\d+) of \1 paths refused", first)
    head = client.containers.get("vg-single-solo")
    labels = head.labels
    assert labels["io.vllmgen.deployment"] == "vg-single" and labels["io.vllmgen.gpus"] == "none"
    # the generated Dockerfile's RUN line ran, with the seed's requirement
    uv_calls = head.exec_run(["cat", UV_CALLS]).output.decode()
    assert "git+https://github.com/huggingface/transformers.git@v4.57.1" in uv_calls
    # the container runs exactly the generated command, with the secret in its environment only
    assert head.attrs["Config"]["Entrypoint"] == ["vllm"]
    assert head.attrs["Config"]["Cmd"][:4] == ["serve", "/models/tiny", "--config", "/etc/vllmgen/serve-config.yaml"]
    assert "VLLM_API_KEY=test-key-not-secret-123" in head.attrs["Config"]["Env"]
    assert "test-key-not-secret-123" not in first

    status = json.loads(ok_stdout(one_host.vllmgen("status", str(spec), "--all", "--output", "json", env=API_KEY)))
    assert status["endpoint"]["health"] == 200 and status["endpoint"]["models"] == ["tiny"]
    assert status["nodes"][0]["containers"] == [
        {"name": "vg-single-solo", "status": "running", "exit_code": 0, "current": True}]
    table = ok_stdout(one_host.vllmgen("status", str(spec), "--all"))
    assert "vg-single-solo  running  current" in table

    second = ok_stderr(one_host.vllmgen(*apply, env=API_KEY))
    assert "nothing changed" in second and "image: unchanged" in second and "head: unchanged" in second
    assert client.containers.get("vg-single-solo").id == head.id

    spec_dict["serve"]["max_model_len"] = 128  # a different serve config: a different container
    write_spec(tmp_path, spec_dict)
    third = ok_stderr(one_host.vllmgen(*apply, env=API_KEY))
    assert "head: replaced (vg-single-solo: its definition changed" in third
    assert client.containers.get("vg-single-solo").id != head.id

    down = one_host.vllmgen("down", str(spec), "--all")
    assert ok_stdout(down).strip() == "removed 2 container(s): vg-single-gateway, vg-single-solo"
    assert [c.name for c in client.containers.list(all=True)] == ["not-ours"]
    gone = one_host.vllmgen("status", str(spec), "--all")
    assert gone.returncode == 1 and "absent" in gone.stdout and "problem: node solo: no container vg-single-solo" in gone.stdout
    bystander.remove(force=True)


def test_a_container_that_exits_shows_its_log(one_host: Cluster, tmp_path: Path, python_prefix: str,
                                              fake_vllm: str) -> None:
    daemon = one_host.daemons[0]
    spec_dict = single_spec(daemon.endpoint, python_prefix, fake_vllm, tmp_path, name="vg-crash")
    spec_dict["runtime"]["env"]["FAKE_VLLM_FAIL"] = "1"
    spec = write_spec(tmp_path, spec_dict)
    began = time.monotonic()
    result = one_host.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", "120", daemon=daemon), env=API_KEY)
    took = time.monotonic() - began
    try:
        assert result.returncode == 4
        assert "node solo, step verify: vg-crash-solo exited (exit code 3)" in result.stderr
        assert "| fake vllm: simulated start-up failure (FAKE_VLLM_FAIL)" in result.stderr
        assert took < 60, f"the exit was not seen at once: {took:.1f}s"  # not the 120 s timeout
    finally:
        ok_stderr(one_host.vllmgen("down", str(spec), "--all"))


def test_an_engine_that_fails_and_hangs_ends_the_wait_with_the_line(
        one_host: Cluster, tmp_path: Path, python_prefix: str, fake_vllm: str) -> None:
    """The stand-in logs `EngineCore failed to start` (NCCL) and hangs, its container running: the log
    stream ends the wait within seconds, exit 4, the line quoted; status then reports the dead engine."""
    daemon = one_host.daemons[0]
    spec_dict = single_spec(daemon.endpoint, python_prefix, fake_vllm, tmp_path, name="vg-fatal")
    spec_dict["runtime"]["env"]["FAKE_VLLM_FATAL"] = "1"
    spec = write_spec(tmp_path, spec_dict)
    began = time.monotonic()
    result = one_host.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", "300", daemon=daemon), env=API_KEY)
    took = time.monotonic() - began
    try:
        assert result.returncode == 4, result.stderr
        assert took < 120, f"the fatal line did not end the wait: {took:.1f}s"  # the image build, not 300 s
        assert "node solo, step verify: the engine failed (NCCL): (EngineCore_DP0 pid=77) ERROR" in result.stderr
        assert "EngineCore failed to start." in result.stderr
        assert "root cause: torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp" in result.stderr
        assert "what to do: NCCL could not connect the GPUs" in result.stderr
        waited = result.stderr.split("waiting for the model to load", 1)[1]
        assert "still waiting" not in waited  # ended within seconds of the wait's start
        assert daemon.client().containers.get("vg-fatal-solo").status == "running"  # hung, not exited
        status = one_host.vllmgen("status", str(spec), "--all", env=API_KEY)
        assert status.returncode == 1, status.stdout
        assert "problem: node solo: the engine failed (NCCL) while vg-fatal-solo runs" in status.stdout
    finally:
        ok_stderr(one_host.vllmgen("down", str(spec), "--all"))


def test_missing_secret_stops_before_any_container(one_host: Cluster, tmp_path: Path, python_prefix: str,
                                                   fake_vllm: str) -> None:
    daemon = one_host.daemons[0]
    spec = write_spec(tmp_path, single_spec(daemon.endpoint, python_prefix, fake_vllm, tmp_path, name="vg-nokey"))
    result = one_host.vllmgen(*apply_args(spec, "--all", "--no-gpus"), env={"VG_TEST_API_KEY": ""})
    assert result.returncode == 4
    assert "VLLM_API_KEY: environment variable VG_TEST_API_KEY is empty or not set" in result.stderr
    assert daemon.client().containers.list(all=True, filters={"label": "io.vllmgen.deployment=vg-nokey"}) == []
