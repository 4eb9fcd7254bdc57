"""daemon.json: type-checked merges, writes through symlinks keeping mode and owner (locally and by the
script ssh runs), one consent question per run, and the roll-back when Docker does not come back.

Fast: files under tmp_path and dry-run executors whose daemon "answers" as the test says. The same
paths against real dockerds are in test_engine.py (slow).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from vllmgen.render.compile import compile_file
from vllmgen.errors import RunnerError
from vllmgen.targets.docker import daemon_json, daemon_step
from vllmgen.targets.docker.commands import DockerCli
from vllmgen.runner.dryrun import DockerPrinting, DryRunHttp, FreshHost, Recorder
from vllmgen.runner.executor import ContainerState, EngineError, EngineInfo
from vllmgen.runner.host import REPLACE_SCRIPT, LocalHost
from vllmgen.runner.progress import Progress
from vllmgen.runner.steps import Apply, Options

ROOT = Path(__file__).resolve().parents[2]


# --- the merge ------------------------------------------------------------------------------------


def test_a_value_of_another_type_is_an_error_naming_the_key() -> None:
    with pytest.raises(daemon_json.DaemonJsonError) as caught:
        daemon_json.merge('{"registry-mirrors": "https://a.example"}', {"registry-mirrors": ["https://b.example"]},
                          "/etc/docker/daemon.json on gpu-1")
    assert str(caught.value).startswith(
        "/etc/docker/daemon.json on gpu-1: registry-mirrors is a JSON string there and vllmgen would write a JSON"
        ' array (["https://b.example"]); the file is left as it is')
    with pytest.raises(daemon_json.DaemonJsonError, match=r"log-opts\.max-file is a JSON number there"):
        daemon_json.merge('{"log-opts": {"max-file": 3}}', {"log-opts": {"max-file": "3"}})
    # same type, other value: the plan's wins; other keys are kept
    merge = daemon_json.merge('{"log-driver": "local", "debug": true}', {"log-driver": "json-file"})
    assert merge.merged == {"log-driver": "json-file", "debug": True} and merge.changes == ("~ log-driver",)


def test_own_check_covers_the_keys_vllmgen_writes_only() -> None:
    merged = {"registry-mirrors": ["https://m.example/v2"], "log-opts": {"max-file": 3}, "theirs": "x"}
    problem = daemon_json.own_check(merged, ["registry-mirrors", "log-opts"], "the merged F")
    assert problem is not None and problem.startswith("the merged F would not load: registry-mirrors.0: invalid mirror")
    assert "log-opts.max-file: Docker expects a string" in problem
    assert daemon_json.own_check({"log-driver": "local", "theirs": 1}, ["log-driver"], "F") is None


@pytest.mark.parametrize(("rc", "output", "expected"), [
    (0, "configuration OK\n", True),
    (1, "unable to configure the Docker daemon with file /tmp/x: the following directives don't match any"
        " configuration option: bogus\n", False),
    (125, "Status: unknown flag: --validate\nSee 'dockerd --help'., Code: 125\n", None),  # dockerd 20.10, seen here
    (127, "sh: 1: dockerd: not found\n", None),
])
def test_dockerd_validate_output(rc: int, output: str, expected: bool | None) -> None:
    assert daemon_json.validation(rc, output)[0] is expected


# --- writing ----------------------------------------------------------------------------------------


def _linked(tmp_path: Path) -> tuple[Path, Path]:
    real = tmp_path / "real" / "daemon.json"
    real.parent.mkdir()
    real.write_text('{"debug": true}\n')
    real.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(real, 4321, 4322)
    link = tmp_path / "etc" / "daemon.json"
    link.parent.mkdir()
    link.symlink_to(os.path.relpath(real, link.parent))
    return real, link


def _assert_kept(real: Path, link: Path, text: str) -> None:
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert real.read_text() == text
    info = real.stat()
    assert info.st_mode & 0o7777 == 0o600
    if os.geteuid() == 0:
        assert (info.st_uid, info.st_gid) == (4321, 4322)
    assert sorted(p.name for p in real.parent.iterdir()) == ["daemon.json"]


def test_local_write_goes_through_a_symlink_keeping_mode_and_owner(tmp_path: Path) -> None:
    real, link = _linked(tmp_path)
    backup = str(link) + ".vllmgen-backup-1"
    LocalHost().replace_text(str(link), '{"a": 1}\n', backup)
    _assert_kept(real, link, '{"a": 1}\n')
    assert Path(backup).read_text() == '{"debug": true}\n'


def test_the_ssh_write_script_goes_through_a_symlink_keeping_mode_and_owner(tmp_path: Path) -> None:
    """The script SshHost runs on the node, run here with sh: the same bytes ssh would carry."""
    real, link = _linked(tmp_path)
    backup = str(link) + ".vllmgen-backup-1"
    out = subprocess.run(["sh", "-c", REPLACE_SCRIPT, "vllmgen", str(link), backup], input='{"a": 1}\n',
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    _assert_kept(real, link, '{"a": 1}\n')
    assert Path(backup).read_text() == '{"debug": true}\n' and Path(backup).stat().st_mode & 0o777 == 0o600
    fresh = tmp_path / "new" / "daemon.json"  # no file yet: created 0644, no backup
    out = subprocess.run(["sh", "-c", "umask 022; " + REPLACE_SCRIPT, "vllmgen", str(fresh), ""], input="{}\n",
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0 and fresh.read_text() == "{}\n" and fresh.stat().st_mode & 0o777 == 0o644


# --- the step -----------------------------------------------------------------------------------------


class _Daemon(DockerPrinting):
    """A dry-run Docker engine whose daemon.json is a real file, and whose Docker answers after a restart only
    when that file has no key named ``bogus`` (as dockerd refuses an unknown key). Nodes at once, as the
    SDK executors run them."""

    concurrent = True

    def __init__(self, node: str, recorder: Recorder, path: Path):
        host = LocalHost(daemon_json_path=str(path))
        super().__init__(FreshHost(node, None, host), DockerCli(None, host), recorder)
        self.host = host  # the file is real: read, written and restored here
        self.up = True
        self.restarts = 0

    def write_daemon_json(self, text: str, backup: str | None) -> None:
        super().write_daemon_json(text, backup)
        self.host.replace_text(self.host.daemon_json_path, text, backup)

    def restore_daemon_json(self, original: str | None) -> None:
        super().restore_daemon_json(original)
        if original is None:
            self.host.remove(self.host.daemon_json_path)
        else:
            self.host.replace_text(self.host.daemon_json_path, original, None)

    def restart_daemon(self) -> None:
        super().restart_daemon()
        self.restarts += 1
        text = self.host.read_text(self.host.daemon_json_path) or "{}"
        self.up = "bogus" not in json.loads(text)

    def ping(self) -> EngineInfo:
        if not self.up:
            raise EngineError("Cannot connect to the Docker daemon at unix:///var/run/docker.sock")
        return super().ping()


def _two_nodes(tmp_path: Path, daemon: dict, files: dict[str, str | None], confirm=lambda q: True):  # noqa: ANN001, ANN202
    compiled = compile_file(ROOT / "specs" / "seed-two-node-mp.yaml")
    plan = replace(compiled.plan, daemon=daemon)
    recorder = Recorder(stream=io.StringIO())
    executors = {}
    for node in plan.nodes:
        path = tmp_path / node.name / "daemon.json"
        path.parent.mkdir()
        if files[node.name] is not None:
            path.write_text(files[node.name])
        executors[node.name] = _Daemon(node.name, recorder, path)
    progress = io.StringIO()
    apply = Apply(plan, executors, ROOT / "build" / plan.name, http=DryRunHttp(recorder, plan),
                  progress=Progress(progress),
                  options=Options(confirm=confirm, daemon_timeout=0.2))
    return apply, executors, progress


def test_one_question_lists_every_nodes_change(tmp_path: Path) -> None:
    asked: list[str] = []
    apply, executors, _ = _two_nodes(tmp_path, {"log-driver": "json-file"},
                                     {"node-0": '{"debug": true}', "node-1": None},
                                     confirm=lambda q: asked.append(q) or True)
    daemon_step.run(apply, ("node-0", "node-1"))
    assert len(asked) == 1
    assert "node-0: " + str(tmp_path / "node-0" / "daemon.json") + " (+ log-driver)" in asked[0]
    assert "node-1: " + str(tmp_path / "node-1" / "daemon.json") + " (+ log-driver)" in asked[0]
    assert [o.result for o in apply.report.outcomes] == ["merged", "merged"]
    assert json.loads((tmp_path / "node-0" / "daemon.json").read_text()) == {"debug": True, "log-driver": "json-file"}
    assert all(e.restarts == 1 for e in executors.values())


def test_a_wrong_type_on_one_node_stops_before_anything_is_written_anywhere(tmp_path: Path) -> None:
    files = {"node-0": '{"log-driver": "local"}\n', "node-1": '{"registry-mirrors": "https://a.example"}\n'}
    apply, executors, _ = _two_nodes(tmp_path, {"registry-mirrors": ["https://m.example"]}, files)
    with pytest.raises(RunnerError, match="node node-1, step daemon-json: .*registry-mirrors is a JSON string"):
        daemon_step.run(apply, ("node-0", "node-1"))
    for name, text in files.items():
        assert (tmp_path / name / "daemon.json").read_text() == text
        assert executors[name].restarts == 0


def test_no_consent_writes_nothing_and_names_every_change(tmp_path: Path) -> None:
    apply, executors, _ = _two_nodes(tmp_path, {"log-driver": "json-file"}, {"node-0": "{}", "node-1": "{}"},
                                     confirm=lambda q: False)
    with pytest.raises(RunnerError, match="(?s)not changed .*node-0: .*node-1: .*rerun with --yes"):
        daemon_step.run(apply, ("node-0", "node-1"))
    assert (tmp_path / "node-0" / "daemon.json").read_text() == "{}"


def test_docker_not_coming_back_gets_the_old_file_and_a_second_restart(tmp_path: Path) -> None:
    apply, executors, progress = _two_nodes(tmp_path, {"bogus": True}, {"node-0": '{"debug": true}\n', "node-1": None})
    with pytest.raises(RunnerError) as caught:
        daemon_step.run(apply, ("node-0", "node-1"))
    message = str(caught.value)
    assert "node node-0, step daemon-json: Docker did not come back with the merged" in message
    assert "vllmgen restored the previous file (a copy stays at" in message and "which answers again" in message
    assert "node node-1, step daemon-json" in message and "restored no file (as before)" in message
    assert (tmp_path / "node-0" / "daemon.json").read_text() == '{"debug": true}\n'  # byte for byte
    assert not (tmp_path / "node-1" / "daemon.json").exists()
    assert all(e.restarts == 2 and e.up for e in executors.values())
    assert "putting the previous" in progress.getvalue()


def test_node_scope_does_not_restart_docker_under_a_running_group_member(tmp_path: Path) -> None:
    apply, executors, _ = _two_nodes(tmp_path, {"log-driver": "json-file"}, {"node-0": "{}", "node-1": "{}"})
    worker = apply.plan.node("node-1")
    del apply.executors["node-0"]  # --node node-1
    executors["node-1"].engine.containers = {worker.container.name: ContainerState(worker.container.name, "running", None, {})}
    with pytest.raises(RunnerError, match="restarting Docker would stop qwen3-next-tp16-mp-node-1, one node of a"
                                          " 2-node group, alone; nothing was written"):
        daemon_step.run(apply, ("node-1",))
    assert (tmp_path / "node-1" / "daemon.json").read_text() == "{}" and executors["node-1"].restarts == 0
    executors["node-1"].engine.containers = {}  # nothing running there: the merge goes ahead
    daemon_step.run(apply, ("node-1",))
    assert executors["node-1"].restarts == 1


FAKE_DOCKERD = """#!/bin/sh
# stands in for dockerd >= 23: `--validate --config-file F` as Docker words it
[ "$1" = --validate ] || exit 2
if grep -q bogus "$3"; then
    echo "unable to configure the Docker daemon with file $3: the following directives don't match any configuration option: bogus" >&2
    exit 1
fi
echo "configuration OK"
"""


def test_dockerd_validate_runs_on_the_host_through_a_temporary_file(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from vllmgen.targets.docker.sdk import DockerSdkExecutor

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "dockerd").write_text(FAKE_DOCKERD)
    (tmp_path / "bin" / "dockerd").chmod(0o755)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    executor = DockerSdkExecutor("gpu-1", "unix:///nonexistent.sock", LocalHost())
    assert executor.validate_daemon_json('{"debug": true}\n') == (True, "configuration OK")
    valid, words = executor.validate_daemon_json('{"bogus": 1}\n')
    assert valid is False and "don't match any configuration option: bogus" in words
    assert list((tmp_path / "tmp").iterdir()) == []  # the temporary file is gone


class _Refusing(_Daemon):
    def validate_daemon_json(self, text: str) -> tuple[bool | None, str]:
        return False, "the following directives don't match any configuration option: bogus"


def test_a_merged_file_dockerd_refuses_is_never_written(tmp_path: Path) -> None:
    apply, executors, _ = _two_nodes(tmp_path, {"bogus": True}, {"node-0": "{}", "node-1": "{}"})
    apply.executors = {name: _Refusing(name, executor.recorder, Path(executor.host.daemon_json_path))
                       for name, executor in executors.items()}
    with pytest.raises(RunnerError, match="would not load: the following directives .*: bogus; nothing was written"):
        daemon_step.run(apply, ("node-0", "node-1"))
    assert all((tmp_path / name / "daemon.json").read_text() == "{}" for name in executors)
    assert all(e.restarts == 0 for e in apply.executors.values())


def test_a_local_file_that_cannot_be_written_is_a_host_error_not_a_crash(tmp_path: Path) -> None:
    from vllmgen.runner.host import HostError

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(HostError, match=r"cannot write .*not-a-dir/daemon.json on this host .*left as it was"):
        LocalHost().replace_text(str(blocker / "daemon.json"), "{}\n", None)
    with pytest.raises(HostError, match="cannot read"):
        LocalHost().read_text(str(blocker / "daemon.json"))
