"""runtime.kind: process and nodes[].gpu_ids: the rendered files, the rules, the translation.

The scripts pass bash -n and shellcheck, the unit passes the real `systemd-analyze verify`, and
the command run.sh execs is word for word the one `apply --dry-run` prints (both come from
vllmgen.targets.process.process.launch)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from inprocess import run_vllmgen

from vllmgen.cli.commands import cli
from vllmgen.render.compile import compile_file
from vllmgen.render.artifacts import render

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "process-two-node-mp.yaml"
GPU_SPECS = sorted((ROOT / "tests" / "fixtures" / "gpu" / "specs").glob("*.yaml"))


def _files(spec: Path) -> dict[str, str]:
    compiled = compile_file(spec)
    return {a.path: a.content for a in render(compiled.plan)}


@pytest.mark.parametrize("spec", [SPEC, *GPU_SPECS], ids=lambda p: p.stem)
def test_process_spec_renders_scripts_and_units_not_docker(spec: Path) -> None:
    files = _files(spec)
    assert not {"Dockerfile", "daemon.json"} & set(files)
    assert not [p for p in files if p.endswith("compose.yaml") and p.startswith("nodes/")]
    plan = compile_file(spec).plan
    for node in plan.nodes:
        for name in ("run.sh", "start.sh", "stop.sh", f"vllmgen-{plan.name}-{node.name}.service"):
            assert f"nodes/{node.name}/{name}" in files


@pytest.mark.parametrize("spec", [SPEC, *GPU_SPECS], ids=lambda p: p.stem)
def test_process_scripts_pass_bash_and_shellcheck(spec: Path, tmp_path: Path) -> None:
    for path, text in _files(spec).items():
        if path.endswith(".sh"):
            script = tmp_path / path.replace("/", "_")
            script.write_text(text)
            assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, path
            check = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
            assert check.returncode == 0, path + "\n" + check.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("spec", [SPEC, *GPU_SPECS], ids=lambda p: p.stem)
def test_units_pass_systemd_analyze_verify(spec: Path, tmp_path: Path) -> None:
    """The real verifier: ExecStart's program (/bin/bash) exists here, as on the hosts."""
    for path, text in _files(spec).items():
        if path.endswith(".service"):
            unit = tmp_path / Path(path).name
            unit.write_text(text)
            result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
            home = "/home/ops" if "\nUser=ops\n" in text else "%h"  # a system unit's %h is root's home
            assert f"ExecStart=/bin/bash {home}/.vllmgen/deployments/" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("spec", [SPEC, *GPU_SPECS], ids=lambda p: p.stem)
def test_units_are_sandboxed_exposure_at_most_5(spec: Path, tmp_path: Path) -> None:
    """systemd's own score of the rendered unit (`security --offline=true`): at most 5.0 (the seed's: 9.6)."""
    for path, text in _files(spec).items():
        if path.endswith(".service"):
            unit = tmp_path / Path(path).name
            unit.write_text(text)
            result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                                    capture_output=True, text=True)
            score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
            assert score, result.stdout + result.stderr
            assert float(score.group(1)) <= 5.0, result.stdout
            for setting in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=read-only", "PrivateTmp=yes",
                            "UMask=0077", "CapabilityBoundingSet=\n"):
                assert setting in text, setting


def test_the_sandbox_score_can_fail(tmp_path: Path) -> None:
    """The check above can fail: the seed's unit (no sandbox, root) scores 9.6."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    unit = tmp_path / "bare.service"
    unit.write_text("[Service]\nExecStart=/bin/bash /srv/run.sh\n")
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True, text=True)
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert score and float(score.group(1)) > 5.0, result.stdout


def test_system_unit_runs_as_the_spec_user_and_root_needs_an_opt_in(tmp_path: Path) -> None:
    unit = _files(SPEC)["nodes/gpu-a/vllmgen-proc-mp-gpu-a.service"]
    assert "\nUser=ops\nEnvironment=HOME=/home/ops\n" in unit and "WantedBy=multi-user.target" in unit
    assert "ReadWritePaths=/home/ops/.vllmgen/deployments/proc-mp -/home/ops/.cache\n" in unit
    user_unit = next(t for p, t in _files(GPU_SPECS[0]).items() if p.endswith(".service"))
    assert "\nUser=" not in user_unit and "WantedBy=default.target" in user_unit
    root = SPEC.read_text().replace("user: ops", "user: root")
    spec = tmp_path / "root.yaml"
    spec.write_text(root)
    out = run_vllmgen("validate", spec)
    assert out.returncode == 3 and "runtime.user: a system unit running vLLM" in out.stdout + out.stderr
    spec.write_text(root.replace("user: root", "user: root\n  allow_root: true"))
    assert run_vllmgen("validate", spec).returncode == 0
    spec.write_text(SPEC.read_text().replace("user: ops", "user: ops\n  allow_root: true"))
    out = run_vllmgen("validate", spec)
    assert out.returncode == 3 and "runtime.allow_root: only used with runtime.user: root" in out.stdout + out.stderr


def test_a_bad_unit_is_refused_by_the_same_verifier(tmp_path: Path) -> None:
    """The check above can fail: a relative ExecStart is refused."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    text = next(t for p, t in _files(SPEC).items() if p.endswith(".service"))
    unit = tmp_path / "bad.service"
    unit.write_text(text.replace("ExecStart=/bin/bash", "ExecStart=bash-nowhere"))
    assert subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True).returncode != 0


def test_run_sh_sets_the_node_env_and_reads_secrets_at_start() -> None:
    files = _files(SPEC)
    head, worker = files["nodes/gpu-a/run.sh"], files["nodes/gpu-b/run.sh"]
    assert "export CUDA_VISIBLE_DEVICES=2,3" in head
    assert "export VLLM_HOST_IP=192.0.2.21" in head and "export VLLM_HOST_IP=192.0.2.22" in worker
    assert "export NCCL_SOCKET_IFNAME=eth1" in head and "export GLOO_SOCKET_IFNAME=eth1" in head
    assert "export NCCL_DEBUG=INFO" in head
    assert ': "${PROC_API_KEY:?' in head and 'VLLM_API_KEY="${PROC_API_KEY}"\n' in head
    assert "export VLLM_API_KEY\n" in head and "export VLLMGEN_NODE=" in head
    # the gateway and Prometheus run on gpu-a, and the process runtime checks from there: loopback only
    assert head.rstrip().endswith("--config \"${deploy_dir}\"/serve-config.yaml --node-rank 0 --host 127.0.0.1")
    assert worker.rstrip().endswith("--node-rank 1 --headless")
    assert "exec /opt/vllm-env/bin/vllm serve /data/models/qwen3-8b" in head
    assert "exec /home/ops/venvs/vllm/bin/vllm serve" in worker  # the node's own vllm over runtime.python_env
    config = yaml.safe_load(files["serve-config.yaml"].split("\n", 0)[0])
    assert config["nnodes"] == 2 and config["master-addr"] == "192.0.2.21"
    for path, text in files.items():
        assert "--api-key" not in text, path


def test_dry_run_prints_what_run_sh_execs() -> None:
    output = ""
    for node in ("gpu-a", "gpu-b"):
        result = CliRunner().invoke(cli, ["apply", str(SPEC), "--node", node, "--dry-run"],
                                    env={"PROC_API_KEY": "k" * 12})
        assert result.exit_code == 0, result.output
        output += result.output
    printed = [line for line in output.splitlines() if line.startswith("setsid env ") and " serve " in line]
    assert len(printed) == 2
    deploy_dir = str((ROOT / "build" / "proc-mp").resolve())
    for node, line in zip(("gpu-a", "gpu-b"), printed, strict=True):
        words = shlex.split(line.replace('"${HOME}"', "$HOME"))[2:]
        env = {w.split("=", 1)[0]: w.split("=", 1)[1] for w in words if "=" in w and not w.startswith("-")
               and w == words[words.index(w)] and w[0].isupper()}
        argv = words[len(env):]
        script = (ROOT / "build" / "proc-mp" / "nodes" / node / "run.sh").read_text()
        exec_line = [l for l in script.splitlines() if l.startswith("exec ")][-1]  # vLLM's (after the lock's, the log's)
        assert shlex.split(exec_line.replace('"${deploy_dir}"', deploy_dir))[1:] == argv
        exports = dict(l.removeprefix("export ").split("=", 1) for l in script.splitlines()
                       if l.startswith("export ") and "=" in l and not l.startswith("export VLLM_API_KEY"))
        assert {k: shlex.split(v.replace('"${HOME}"', "$HOME"))[0] for k, v in exports.items()} == env
    assert "k" * 12 not in output
    assert "docker" not in "\n".join(printed)


def _invalid(tmp_path: Path, text: str) -> str:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    result = run_vllmgen("validate", spec)
    assert result.returncode == 3, result.stdout + result.stderr
    return result.stdout + result.stderr


BASE = """version: 1
name: t
model: {source: org/m}
runtime: {kind: %(kind)s%(extra)s}
cluster: {backend: mp, nic: lo}
nodes:
  - {name: a, role: head, address: 127.0.0.1, gpus: 2%(a)s}
  - {name: b, role: worker, address: 127.0.0.1, gpus: 2%(b)s}
serve: {tensor_parallel_size: 4}
"""


def test_gpu_rules_all_at_once(tmp_path: Path) -> None:
    out = _invalid(tmp_path, BASE % {"kind": "docker", "extra": "", "a": ", gpu_ids: [0, 0, 1]",
                                     "b": ", gpu_ids: [1, 2]"})
    assert "nodes[0].gpu_ids: names 3 GPU(s) but the node has gpus: 2" in out
    assert "nodes[0].gpu_ids[1]: GPU 0 is listed twice" in out
    assert "nodes[1].gpu_ids[0]: GPU 1 of 127.0.0.1 is also used by nodes[0]" in out


def test_nodes_sharing_a_host_need_gpu_ids(tmp_path: Path) -> None:
    out = _invalid(tmp_path, BASE % {"kind": "docker", "extra": "", "a": ", gpu_ids: [0, 1]", "b": ""})
    assert "nodes[1].address: nodes nodes[0], nodes[1] share the host 127.0.0.1: each needs gpu_ids" in out


def test_process_runtime_needs_vllm_and_refuses_docker_options(tmp_path: Path) -> None:
    text = BASE % {"kind": "process", "extra": ", volumes: [{host: /a, container: /b}]",
                   "a": ", gpu_ids: [0, 1]", "b": ", gpu_ids: [2, 3]"}
    out = _invalid(tmp_path, text.replace("cluster: {backend: mp", "docker: {registry_mirrors: ['https://m.example']}\n"
                                          "cluster: {backend: ray"))
    assert "nodes[0]: runtime.kind: process needs to know where vLLM is" in out
    assert "runtime.volumes: a process sees the host's files" in out
    assert "docker: no daemon.json is written for runtime.kind: process" in out
    assert "cluster.backend: runtime.kind: process supports the mp backend only" in out


def test_python_env_only_with_the_process_runtime(tmp_path: Path) -> None:
    out = _invalid(tmp_path, BASE % {"kind": "docker", "extra": ", python_env: /opt/env",
                                     "a": ", gpu_ids: [0, 1]", "b": ", gpu_ids: [2, 3]"})
    assert "runtime.python_env: only used with runtime.kind: process" in out


def test_docker_gpu_selection_in_start_sh_compose_and_apply(tmp_path: Path) -> None:
    from vllmgen.targets.docker.dockerargs import create_request

    spec = tmp_path / "spec.yaml"
    spec.write_text(BASE % {"kind": "docker", "extra": "", "a": ", gpu_ids: [0, 1]", "b": ", gpu_ids: [2, 3]"})
    compiled = compile_file(spec)
    files = {a.path: a.content for a in render(compiled.plan)}
    assert "--gpus '\"device=2,3\"'" in files["nodes/b/start.sh"]
    compose = yaml.safe_load(files["nodes/b/compose.yaml"])
    assert compose["services"]["b"]["deploy"]["resources"]["reservations"]["devices"] == [
        {"device_ids": ["2", "3"], "capabilities": ["gpu"]}]
    node = compiled.plan.node("b")
    _, body = create_request(["docker", "run", "--detach", "--gpus", node.container.gpus, "img"], {})
    assert body["HostConfig"]["DeviceRequests"] == [
        {"Driver": "", "Count": 0, "DeviceIDs": ["2", "3"], "Capabilities": [["gpu"]], "Options": {}}]
    assert "CUDA_VISIBLE_DEVICES" not in dict(node.container.env)  # Docker selects the devices itself


def test_all_never_starts_another_hosts_process_here(tmp_path: Path) -> None:
    """--all on a process spec whose nodes are other hosts is refused before anything happens."""
    result = run_vllmgen("apply", SPEC, "--all", env={**__import__("os").environ, "PROC_API_KEY": "x"})
    assert result.returncode == 2
    assert "gpu-a (192.0.2.21), gpu-b (192.0.2.22) are not this machine; nothing was done" in result.stderr


def test_docker_host_is_refused_for_processes(tmp_path: Path) -> None:
    text = BASE % {"kind": "process", "extra": ", vllm: /opt/v/bin/vllm", "a": ", gpu_ids: [0, 1]",
                   "b": ", gpu_ids: [2, 3], docker_host: 'ssh://ops@192.0.2.9'"}
    assert "nodes[1].docker_host: no Docker endpoint is used with runtime.kind: process" in _invalid(tmp_path, text)
