"""The runner's step plan through the dry-run executor: fast, no Docker.

Golden call logs live in tests/runner/golden/<spec>.<scope>.txt; regenerate them with
VLLMGEN_UPDATE_GOLDEN=1 after an intended change, and review the diff.
"""

from __future__ import annotations

import io
import json
import os
import shlex
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from vllmgen.cli.commands import cli, main
from vllmgen.render.compile import compile_file
from vllmgen.errors import RunnerError
from vllmgen.targets.docker import daemon_json
from vllmgen.runner import identity, status, targets
from vllmgen.runner.dryrun import FreshHost, Printing, Recorder
from vllmgen.runner.executor import (
    IMAGE_HASH_LABEL,
    ClusterView,
    ContainerState,
    dockerfile_for,
    image_hash,
)
from vllmgen.runner.host import LocalHost, SshHost, UnreachableHost, for_endpoint
from vllmgen.runner.progress import Progress, WaitTimeout, wait_for
from vllmgen.runner.secrets import resolve
from vllmgen.runner.down import down
from vllmgen.runner.steps import Apply, Options, plan_steps
from vllmgen.render.write import check

ROOT = Path(__file__).resolve().parents[2]
# the Kubernetes target runs no step: apply prints kubectl commands (tests/kubernetes/test_kubernetes_runner.py)
SPECS = [s for s in sorted((ROOT / "specs").glob("*.yaml")) if "kind: kubernetes" not in s.read_text()]
GOLDEN = Path(__file__).parent / "golden"
SECRETS = {"HF_TOKEN": "hf_test_token_value_123", "QWEN_API_KEY": "sk-test-key-value-456", "PROC_API_KEY": "proc-key-1",
           "VLLMGEN_FINGERPRINT_KEY": "test-fingerprint-key"}
SECRET_FILES = {"/etc/vllmgen/api-key": "file-key-value-789\n"}


def _compiled(spec: Path):
    compiled = compile_file(spec)
    return compiled, ROOT / "build" / compiled.plan.name


def _apply(spec: Path, names=None, *, containers=None, images=None, cluster=None, options=None, host=None,
           stream=None):
    compiled, deploy_dir = _compiled(spec)
    plan = compiled.plan
    recorder = Recorder(stream=stream or io.StringIO())
    names = names or [n.name for n in plan.nodes]
    # a daemon.json path that exists nowhere: the dry run reads the local file, and this machine's must not matter
    executors = targets.executors(plan, names, remote=True, dry_run=recorder,
                                  daemon_json_path="/nonexistent/vllmgen-test/daemon.json")
    for executor in executors.values():
        assert isinstance(executor, Printing)
        executor.engine.containers = dict(containers or {})
        executor.engine.images = dict(images or {})
        if cluster is not None:
            executor.engine.cluster = cluster
        if host is not None:
            executor.engine.host = executor.host = host  # its daemon.json read (the engine) and printed
    progress_stream = io.StringIO()
    runner = Apply(plan, executors, deploy_dir, http=targets.http_client(plan, recorder),
                   options=options or Options(confirm=lambda q: True),
                   progress=Progress(progress_stream), drift=check(compiled.artifacts, deploy_dir), environ=SECRETS,
                   secret_files=SECRET_FILES)
    return runner, recorder, progress_stream


def _applied(plan, node, status: str = "running", exit_code=None) -> ContainerState:  # noqa: ANN001
    """The node's container as apply leaves it: the plan's labels, the image built in the dry run and the
    fingerprint of SECRETS (identity.run_labels)."""
    labels = dict(node.container.labels)
    values = resolve(plan.secrets, environ=SECRETS, files=SECRET_FILES)
    labels |= identity.run_labels(labels["io.vllmgen.config-hash"], f"sha256:(the ID of {plan.image.tag})",
                                  identity.secrets_fingerprint(values, SECRETS))
    return ContainerState(node.container.name, status, exit_code, labels)


def _log(recorder: Recorder) -> str:
    return "".join(f"{c.node} {c.op} {c.detail}".rstrip() + "\n" for c in recorder.calls)


def _loaded_images(spec: Path) -> dict[str, dict[str, str]]:
    """An offline spec's images as `vllmgen bundle load` leaves them (apply never builds them); none otherwise."""
    compiled, deploy_dir = _compiled(spec)
    plan = compiled.plan
    if not plan.offline:
        return {}
    images = {plan.image.tag: {IMAGE_HASH_LABEL: image_hash(dockerfile_for(deploy_dir, None))}}
    if plan.router:
        images[plan.router.image] = {IMAGE_HASH_LABEL: image_hash((deploy_dir / "router" / "Dockerfile").read_text())}
    return images


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_call_log_matches_golden(spec: Path) -> None:
    runner, recorder, _ = _apply(spec, images=_loaded_images(spec))
    report = runner.run()
    log = _log(recorder)
    golden = GOLDEN / f"{spec.stem}.all.txt"
    if os.environ.get("VLLMGEN_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(log)
    assert log == golden.read_text(), f"call log changed; VLLMGEN_UPDATE_GOLDEN=1 to accept ({golden})"
    assert report.changed, "a first apply changes something"


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_step_order(spec: Path) -> None:
    compiled, _ = _compiled(spec)
    plan = compiled.plan
    names = [step.name for step in plan_steps(plan, tuple(n.name for n in plan.nodes))]
    expected = ["preflight", "daemon-json", "image", "head"] if plan.runtime == "docker" else ["preflight", "head"]
    if plan.workers:
        expected.append("workers")
    if plan.backend == "ray":
        expected += ["cluster", "serve"]
    elif plan.backend == "mp":
        expected.append("cluster")
    expected.append("verify")
    if plan.backend == "replicas" or "data-parallel-hybrid-lb" in plan.serve_config:
        expected.append("servers")  # every other API server's /health
    if plan.router:
        expected.append("router")  # started once they are healthy, verified through it
    if plan.endpoint.api_key:
        expected.append("gateway")  # with a key, always, once everything behind it answers
    if plan.router and plan.router.disaggregated:
        expected.append("kv-transfer")  # last: a completion through the front door moved the KV cache
    assert names == expected


@pytest.mark.parametrize(("spec", "own", "foreign"), [("process-two-node-mp", "setsid env ", "docker"),
                                                    ("seed-two-node-mp", "docker run ", "setsid")])
def test_a_dry_run_prints_its_targets_own_commands(spec: str, own: str, foreign: str) -> None:
    """One fresh host in memory under every target's dry run; what is printed is the target engine's words."""
    out = io.StringIO()
    runner, _, _ = _apply(ROOT / "specs" / f"{spec}.yaml", stream=out)
    runner.run()
    assert all(type(executor.engine) is FreshHost for executor in runner.executors.values())
    assert own in out.getvalue() and foreign not in out.getvalue()


def test_worker_scope_stops_after_its_container() -> None:
    spec = ROOT / "specs" / "seed-two-node-ray.yaml"
    runner, recorder, _ = _apply(spec, ["worker-1"])
    runner.run()
    assert [s.name for s in runner.steps] == ["preflight", "daemon-json", "image", "workers"]
    assert {c.node for c in recorder.calls} == {"worker-1"}
    assert [c.op for c in recorder.calls if c.op in ("run", "exec-detached", "http")] == ["run"]


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_dry_run_docker_run_is_the_start_script(spec: Path) -> None:
    """The printed `docker run` and build/<name>/nodes/*/start.sh run the same words."""
    if "kind: process" in spec.read_text():
        pytest.skip("a process spec runs no docker (tests/test_process_runtime.py)")
    out = io.StringIO()
    runner, _, _ = _apply(spec, stream=out, images=_loaded_images(spec))
    runner.run()
    deploy_dir = str((ROOT / "build" / runner.plan.name).resolve())
    printed = [shlex.split(line.replace('"${HOME}"', "$HOME")) for line in out.getvalue().splitlines()
               if line.startswith("docker run ") or line.startswith("docker --host")]
    printed = [words for words in printed if "run" in words[:4]]
    for node in runner.plan.nodes:
        script = (ROOT / "build" / runner.plan.name / "nodes" / node.name / "start.sh").read_text()
        block = script[script.index("docker run \\"):].replace("\\\n", " ")
        words = shlex.split(block.replace('"${HOME}"', "$HOME").replace('"${deploy_dir}"', deploy_dir))
        words = [w for w in words if w]
        mine = next(p for p in printed if f"{node.container.name}" in p)
        if node.docker_host:  # an ssh:// node mounts the copy apply puts under its $HOME
            remote = f"~/.vllmgen/deployments/{runner.plan.name}"
            mine = [w.replace(remote, deploy_dir) for w in mine]
        if mine[1] == "--host":
            del mine[1:3]
        assert _without_identity(mine) == _without_identity(words)
        extra = sorted(w for w in mine if w.startswith("io.vllmgen.") and w not in words)
        assert [w.split("=")[0] for w in extra] == [identity.HASH_LABEL, identity.IMAGE_LABEL, identity.SECRETS_LABEL]


def _without_identity(words: list[str]) -> list[str]:
    """The words less the labels only apply knows (image ID, secrets fingerprint, the config-hash over them)."""
    out: list[str] = []
    for word in words:
        if word.startswith((identity.HASH_LABEL, identity.IMAGE_LABEL, identity.SECRETS_LABEL)):
            out.pop()  # its --label
            continue
        out.append(word)
    return out


def test_second_apply_changes_nothing() -> None:
    spec = ROOT / "specs" / "seed-two-node-ray.yaml"
    compiled, deploy_dir = _compiled(spec)
    plan = compiled.plan
    containers = {n.container.name: _applied(plan, n) for n in plan.nodes}
    images = {plan.image.tag: {IMAGE_HASH_LABEL: image_hash(dockerfile_for(deploy_dir, None))}}
    runner, recorder, progress = _apply(spec, containers=containers, images=images)
    # the head already serves: the serving probe answers yes
    for executor in runner.executors.values():
        executor.engine.served = {plan.head.container.name}
    report = runner.run()
    assert report.changed == []
    assert "nothing changed" in progress.getvalue()
    assert not [c for c in recorder.calls if c.op in ("run", "remove", "build", "exec-detached", "write-daemon-json")]


def test_changed_hash_replaces_the_whole_group() -> None:
    spec = ROOT / "specs" / "seed-two-node-mp.yaml"
    compiled, _ = _compiled(spec)
    plan = compiled.plan
    containers = {n.container.name: _applied(plan, n) for n in plan.nodes}
    stale = dict(plan.head.container.labels) | {"io.vllmgen.config-hash": "0000"}
    containers[plan.head.container.name] = ContainerState(plan.head.container.name, "running", None, stale)
    runner, recorder, _ = _apply(spec, containers=containers)
    report = runner.run()
    results = {(o.step, o.node): o.result for o in report.outcomes}
    assert results[("head", plan.head.name)] == "replaced"
    assert all(results[("workers", w.name)] == "replaced" for w in plan.workers)
    removes = [c.detail for c in recorder.calls if c.op == "remove"]
    assert removes == [n.container.name for n in plan.nodes]


def test_exited_container_is_replaced_and_single_node_group_alone() -> None:
    spec = ROOT / "specs" / "seed-single-node.yaml"
    compiled, _ = _compiled(spec)
    node = compiled.plan.head
    containers = {node.container.name: _applied(compiled.plan, node, "exited", 1)}
    runner, _, progress = _apply(spec, containers=containers)
    runner.run()
    assert "it is exited (exit code 1)" in progress.getvalue()


def test_foreign_container_with_our_name_is_never_touched() -> None:
    spec = ROOT / "specs" / "seed-single-node.yaml"
    compiled, _ = _compiled(spec)
    name = compiled.plan.head.container.name
    runner, recorder, _ = _apply(spec, containers={name: ContainerState(name, "running", None, {})})
    with pytest.raises(RunnerError, match=f"a container named {name} exists and is not this deployment"):
        runner.run()
    assert not [c for c in recorder.calls if c.op in ("run", "remove")]


def test_worker_that_never_joins_is_named() -> None:
    spec = ROOT / "specs" / "seed-two-node-ray.yaml"
    runner, _, _ = _apply(spec, cluster=ClusterView(8, ("192.0.2.1",)),
                          options=Options(confirm=lambda q: True, timeout=0))
    with pytest.raises(RunnerError) as caught:
        runner.run()
    message = str(caught.value)
    assert message.startswith(
        "node worker-1, step cluster: worker-1 (192.0.2.2) did not join the Ray cluster at 192.0.2.1")
    assert "what to do: check that 192.0.2.2 is the address of worker-1" in message


def test_secrets_never_printed_and_missing_ones_listed() -> None:
    spec = ROOT / "specs" / "china-mirror.yaml"
    out = io.StringIO()
    runner, recorder, progress = _apply(spec, stream=out)
    runner.run()
    text = out.getvalue() + progress.getvalue() + _log(recorder) + repr(runner.secrets)
    for value in SECRETS.values():
        assert value not in text
    assert "printf 'Authorization: Bearer %s\\n' \"${QWEN_API_KEY}\" | curl -H @- " in out.getvalue()
    # with an API key, verify also proves an unauthenticated call is refused
    assert any(c.op == "http" and c.detail == "GET /v1/models (no key)" for c in recorder.calls)
    with pytest.raises(RunnerError, match="HF_TOKEN: environment variable HF_TOKEN is empty or not set; "
                                          "VLLM_API_KEY: environment variable QWEN_API_KEY"):
        resolve(runner.plan.secrets, environ={})


def test_secret_from_file(tmp_path: Path) -> None:
    from vllmgen.plan.plan import SecretEnv

    (tmp_path / "key").write_text("s3cret\n")
    values = resolve((SecretEnv("VLLM_API_KEY", from_file="~/key"),), environ={}, home=str(tmp_path))
    assert values["VLLM_API_KEY"] == "s3cret" and "s3cret" not in repr(values)


def test_stale_build_dir_stops_before_anything_runs() -> None:
    spec = ROOT / "specs" / "seed-single-node.yaml"
    runner, recorder, _ = _apply(spec)
    runner.drift = ["Dockerfile differs"]
    with pytest.raises(RunnerError, match="out of date with the spec"):
        runner.run()
    assert recorder.calls == []


# --- daemon.json --------------------------------------------------------------------------------


def test_merge_keeps_foreign_keys_and_unions_lists() -> None:
    current = json.dumps({"debug": True, "registry-mirrors": ["https://mine.example"], "log-opts": {"max-file": "9"}})
    wanted = {"registry-mirrors": ["https://docker.m.daocloud.io"], "log-opts": {"max-size": "100m"},
              "log-driver": "json-file"}
    merge = daemon_json.merge(current, wanted)
    assert merge.merged == {
        "debug": True,
        "registry-mirrors": ["https://mine.example", "https://docker.m.daocloud.io"],
        "log-opts": {"max-file": "9", "max-size": "100m"},
        "log-driver": "json-file",
    }
    assert merge.changes == ("+ log-driver", "~ log-opts", "~ registry-mirrors")
    assert not daemon_json.merge(merge.text, wanted).changed


def test_merge_refuses_a_broken_file() -> None:
    with pytest.raises(daemon_json.DaemonJsonError, match="not valid JSON"):
        daemon_json.merge("{oops", {"a": 1})
    with pytest.raises(daemon_json.DaemonJsonError, match="not an object"):
        daemon_json.merge("[1]", {"a": 1})


def test_daemon_json_step_backs_up_writes_and_restarts(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text('{"debug": true}\n')
    host = LocalHost(daemon_json_path=str(path), restart_command=("true",))
    spec = ROOT / "specs" / "china-mirror.yaml"
    runner, recorder, _ = _apply(spec, host=host)
    runner.run()
    ops = [c.op for c in recorder.calls]
    # read and merged by the plan apply computes first; then checked, written, Docker restarted
    assert ops.index("read-daemon-json") < ops.index("validate-daemon-json")
    at = ops.index("validate-daemon-json")
    assert ops[at:at + 4] == ["validate-daemon-json", "write-daemon-json", "restart-daemon", "ping"]
    assert path.read_text() == '{"debug": true}\n'  # dry run: printed, not written


def test_daemon_json_needs_consent(tmp_path: Path) -> None:
    host = LocalHost(daemon_json_path=str(tmp_path / "daemon.json"))
    spec = ROOT / "specs" / "china-mirror.yaml"
    runner, recorder, _ = _apply(spec, host=host, options=Options(confirm=lambda q: False))
    with pytest.raises(RunnerError, match="rerun with --yes"):
        runner.run()
    assert "write-daemon-json" not in [c.op for c in recorder.calls]


def test_write_atomic_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text("{}")
    path.chmod(0o600)
    daemon_json.write_atomic(path, '{"a": 1}\n')
    assert path.read_text() == '{"a": 1}\n' and (path.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["daemon.json"]


# --- hosts, endpoints, scope ------------------------------------------------------------------------


def test_hosts_by_endpoint() -> None:
    assert isinstance(for_endpoint(None), LocalHost)
    assert isinstance(for_endpoint("unix:///run/x.sock"), LocalHost)
    ssh = for_endpoint("ssh://ops@gpu-2:2222")
    assert isinstance(ssh, SshHost) and ssh.ssh_argv(["cat", "/a b"]) == [
        "ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
        "-o", "ServerAliveCountMax=3", "-o", "StrictHostKeyChecking=yes", "-p", "2222", "-l", "ops",
        "--", "gpu-2", "cat '/a b'"]
    assert isinstance(for_endpoint("tcp://gpu-2:2376"), UnreachableHost)


def test_ssh_node_gets_its_files_copied_and_commands_through_ssh() -> None:
    spec = ROOT / "specs" / "seed-two-node-ray.yaml"
    compiled, deploy_dir = _compiled(spec)
    plan = compiled.plan
    plan = replace(plan, nodes=tuple(replace(n, docker_host=f"ssh://root@{n.address}") for n in plan.nodes))
    out = io.StringIO()
    recorder = Recorder(stream=out)
    executors = targets.executors(plan, [n.name for n in plan.nodes], remote=True, dry_run=recorder)
    for executor in executors.values():
        executor.host.home = lambda: "/root"  # what `ssh host 'printf %s "$HOME"'` answers
    Apply(plan, executors, deploy_dir, http=targets.http_client(plan, recorder), options=Options(confirm=lambda q: True),
          progress=Progress(io.StringIO()),
          environ=SECRETS, secret_files=SECRET_FILES).run()
    text = out.getvalue()
    assert "docker --host ssh://root@192.0.2.1 run" in text
    assert "StrictHostKeyChecking=yes -l root -- 192.0.2.1 'sh -c '" in text
    assert "# --- node head (ssh://root@192.0.2.1)" in text
    assert "/root/.vllmgen/deployments/qwen3-next-tp16-ray/serve-config.yaml:/etc/vllmgen/serve-config.yaml:ro" in text


def test_cli_scope_and_dry_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    runner = CliRunner()
    spec = str(ROOT / "specs" / "seed-single-node.yaml")
    both = runner.invoke(cli, ["apply", spec, "--node", "gpu-1", "--all"])
    assert both.exit_code == 2 and "not both" in both.output
    unknown = runner.invoke(cli, ["apply", spec, "--node", "nope"])
    assert unknown.exit_code == 2 and "its nodes are gpu-1" in unknown.output
    result = runner.invoke(cli, ["apply", spec, "--node", "gpu-1", "--dry-run", "--build-dir", str(ROOT / "build")],
                           env={"HF_TOKEN": "hf_test"})
    assert result.exit_code == 0, result.output
    assert "docker run --detach --name qwen3-next-single-gpu-1" in result.output
    assert "curl -sS -X GET http://192.0.2.1:8000/health" in result.output
    nogpu = runner.invoke(cli, ["apply", spec, "--node", "gpu-1", "--dry-run", "--no-gpus", "--build-dir",
                                str(ROOT / "build"), "--base-image", "local/base:1"], env={"HF_TOKEN": "hf_test"})
    assert nogpu.exit_code == 0 and "--gpus" not in nogpu.output and "--label io.vllmgen.gpus=none" in nogpu.output
    assert "sed '0,/^FROM /s|^FROM .*|FROM local/base:1|'" in nogpu.output
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    argv = ["vllmgen", "apply", spec, "--node", "gpu-1", "--dry-run", "--build-dir", str(tmp_path)]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 4 and "is out of date with the spec" in capsys.readouterr().err


def test_down_workers_first_and_only_ours() -> None:
    spec = ROOT / "specs" / "seed-two-node-ray.yaml"
    compiled, _ = _compiled(spec)
    plan = compiled.plan
    recorder = Recorder(stream=io.StringIO())
    executors = targets.executors(plan, [n.name for n in plan.nodes], remote=True, dry_run=recorder)
    for node in plan.nodes:
        executors[node.name].engine.containers = {
            node.container.name: ContainerState(node.container.name, "running", None, dict(node.container.labels)),
            "someone-else": ContainerState("someone-else", "running", None, {"io.vllmgen.deployment": "other"}),
        }
    removed = down(plan, executors, Progress(io.StringIO()))
    assert removed == [plan.workers[0].container.name, plan.head.container.name]


def test_status_table_and_json() -> None:
    spec = ROOT / "specs" / "seed-two-node-ray.yaml"
    compiled, _ = _compiled(spec)
    plan = compiled.plan
    recorder = Recorder(stream=io.StringIO())
    executors = targets.executors(plan, [n.name for n in plan.nodes], remote=True, dry_run=recorder)
    executors["head"].engine.containers = {plan.head.container.name: ContainerState(
        plan.head.container.name, "running", None, dict(plan.head.container.labels))}
    report = status.collect(plan, executors, targets.http_client(plan, recorder))
    text = status.table(report)
    assert "qwen3-next-tp16-ray-head  running  current" in text
    assert "worker-1  worker  -" in text and "absent" in text
    assert "ray cluster: 2 of 2 nodes (head, worker-1), 16 of 16 GPUs" in text
    assert json.loads(status.as_json(report))["endpoint"]["health"] == 200


def test_wait_for_reports_progress_and_times_out() -> None:
    now = [0.0]
    out = io.StringIO()
    polls = iter([(None, "0 of 2"), (None, "1 of 2"), ("done", "2 of 2")])
    value = wait_for(Progress(out, clock=lambda: now[0]), "nodes", lambda: next(polls), timeout=100, interval=6,
                     report_every=5, sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    assert value == "done"
    assert "still waiting for nodes, 6s: 1 of 2" in out.getvalue() and "nodes: ok after 12s (2 of 2)" in out.getvalue()
    with pytest.raises(WaitTimeout, match="after 5s: never"):
        now[0] = 0.0
        wait_for(Progress(io.StringIO()), "x", lambda: (None, "never"), timeout=5, interval=1,
                 sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])


def test_create_request_matches_the_generated_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """What DockerSdkExecutor sends the engine to create the seed's Ray worker (no daemon needed): the docker
    CLI's create body for start.sh's words (the zero values it sends are left out here)."""
    from vllmgen.runner.executor import RunRequest
    from vllmgen.targets.docker.sdk import DockerSdkExecutor

    spec = ROOT / "specs" / "seed-two-node-ray.yaml"
    compiled, deploy_dir = _compiled(spec)
    worker = compiled.plan.node("worker-1")
    host = LocalHost()
    monkeypatch.setattr(host, "home", lambda: "/home/ops")
    executor = DockerSdkExecutor("worker-1", "unix:///nonexistent.sock", host)
    name, body = executor._create_request(RunRequest(worker.container, str(deploy_dir), {"HF_TOKEN": "hf_x"}))
    assert name == "qwen3-next-tp16-ray-worker-1"
    config = {key: body[key] for key in ("Image", "Entrypoint", "Cmd", "Labels", "AttachStdout")}
    config["Env"] = sorted(body["Env"])  # start.sh's order; the order has no meaning
    assert config == {
        "Image": "vllmgen/qwen3-next-tp16-ray:v0.32.0",
        "Entrypoint": ["ray"],
        "Cmd": ["start", "--block", "--address=192.0.2.1:6379", "--node-ip-address=192.0.2.2", "--num-gpus=8",
                "--disable-usage-stats"],
        "Labels": dict(worker.container.labels),
        "Env": sorted(["GLOO_SOCKET_IFNAME=eth0", "NCCL_DEBUG=INFO", "NCCL_IB_HCA=mlx5_0", "NCCL_SOCKET_IFNAME=eth0",
                       "VLLM_HOST_IP=192.0.2.2", "HF_TOKEN=hf_x", "VLLM_ENGINE_READY_TIMEOUT_S=900",
                       "CUDA_CACHE_MAXSIZE=4294967296", "CUDA_CACHE_PATH=/var/cache/vllmgen/cuda",
                       "FLASHINFER_WORKSPACE_BASE=/var/cache/vllmgen/flashinfer",
                       "TORCHINDUCTOR_CACHE_DIR=/var/cache/vllmgen/inductor",
                       "TRITON_CACHE_DIR=/var/cache/vllmgen/triton", "VLLM_CACHE_ROOT=/var/cache/vllmgen/vllm"]),
        "AttachStdout": False,  # --detach
    }
    host_config = body["HostConfig"]
    assert {key: host_config[key] for key in ("Binds", "NetworkMode", "ShmSize", "Devices", "CapAdd", "Ulimits",
                                              "DeviceRequests")} == {
        "Binds": ["/home/ops/.cache/huggingface:/root/.cache/huggingface",
                  "/mnt/data/models/Qwen/Qwen3-Next-80B-A3B-Thinking:/models/qwen3-next:ro",
                  "/home/ops/.cache/vllmgen-engine/qwen3-next-tp16-ray:/var/cache/vllmgen"],
        "NetworkMode": "host",
        "ShmSize": 10995116277,  # 10.24g, as the CLI's units.RAMInBytes reads it
        "Devices": [{"PathOnHost": "/dev/infiniband", "PathInContainer": "/dev/infiniband", "CgroupPermissions": "rwm"}],
        "CapAdd": ["CAP_IPC_LOCK"],  # as the docker CLI sends --cap-add IPC_LOCK
        "Ulimits": [{"Name": "memlock", "Hard": -1, "Soft": -1}],
        "DeviceRequests": [{"Driver": "", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]], "Options": {}}],
    }
    _, without = executor._create_request(RunRequest(worker.container, str(deploy_dir), {"HF_TOKEN": "x"}, gpus=False))
    assert without["HostConfig"]["DeviceRequests"] is None and without["Labels"]["io.vllmgen.gpus"] == "none"


def test_offline_apply_refuses_to_build_a_missing_image_and_changes_nothing() -> None:
    spec = ROOT / "specs" / "airgapped.yaml"
    runner, recorder, _ = _apply(spec)
    with pytest.raises(RunnerError, match=r"node gpu-a, step image: vllmgen/qwen3-airgapped:v0.32.0 is not on the "
                                          r"node, and offline: true forbids building or pulling it"):
        runner.run()
    assert not [c for c in recorder.calls if c.op in ("build", "run", "daemon-json-write", "restart")]


def test_offline_dry_run_shows_the_refused_build() -> None:
    spec = ROOT / "specs" / "airgapped.yaml"
    runner, _, _ = _apply(spec, options=Options(confirm=lambda q: True, dry_run=True))
    text = runner.preview().text()
    assert "offline: true: apply refuses to build or pull it" in text


def test_offline_plan_shows_the_refused_build_without_failing() -> None:
    runner, _, _ = _apply(ROOT / "specs" / "airgapped.yaml")
    changes = runner.preview()
    assert changes.pending and "vllmgen/qwen3-airgapped:v0.32.0 is not on the node; offline: true" in changes.text()
