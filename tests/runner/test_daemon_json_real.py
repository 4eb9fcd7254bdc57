"""daemon.json against a real dockerd 20.10 (its own namespace, socket and config file): a merged file
the daemon rejects ends with Docker running again on the old file; a wrong-typed value stops apply with
the file and the daemon untouched; a symlinked 0600 file stays a symlink and 0600.

dockerd 20.10 has no `--validate`, so here the pre-restart check is vllmgen's own, which checks only the
keys it knows: an unknown key (which dockerd refuses at start) reaches the restart, as an invalid value
for a key vllmgen does not know would on a real host.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .support import Cluster, apply_args, single_spec, write_spec

pytestmark = pytest.mark.slow

API_KEY = {"VG_TEST_API_KEY": "test-key-not-secret-123"}


def _pid(cluster: Cluster) -> str:
    return (cluster.daemons[0].dir / "dockerd.pid").read_text().strip()


def _link_config(cluster: Cluster, tmp_path: Path, text: str) -> Path:
    """The daemon's config as a symlink to a 0600 file elsewhere; the daemon restarted onto it."""
    daemon = cluster.daemons[0]
    real = tmp_path / "etc-docker" / "daemon.json"
    real.parent.mkdir()
    real.write_text(text)
    real.chmod(0o600)
    daemon.config.unlink()
    daemon.config.symlink_to(real)
    daemon.ctl("restart")
    return real


def _apply(cluster: Cluster, spec: Path, *extra: str):  # noqa: ANN202
    daemon = cluster.daemons[0]
    return cluster.vllmgen(*apply_args(spec, "--all", "--no-gpus", "--timeout", "60", "--yes", *extra,
                                       "--daemon-json", str(daemon.config),
                                       "--docker-restart", daemon.restart_command), env=API_KEY)


def test_a_file_the_daemon_rejects_ends_with_docker_running_on_the_old_file(
        one_host: Cluster, tmp_path: Path, python_prefix: str, fake_vllm: str) -> None:
    daemon = one_host.daemons[0]
    original = json.dumps({"debug": False, "labels": ["vllmgen-test=kept"]}, indent=4) + "\n"
    real = _link_config(one_host, tmp_path, original)
    spec_dict = single_spec(daemon.endpoint, python_prefix, fake_vllm, tmp_path, name="vg-rollback")
    spec_dict["docker"]["daemon"]["bogus-key"] = True  # dockerd: "don't match any configuration option"
    spec = write_spec(tmp_path, spec_dict)

    result = _apply(one_host, spec)
    assert result.returncode == 4, result.stderr
    assert "node solo, step daemon-json: Docker did not come back with the merged" in result.stderr
    assert "the following directives don't match any configuration option: bogus-key" in result.stderr
    assert "vllmgen restored the previous file (a copy stays at" in result.stderr
    assert "restarted Docker, which answers again" in result.stderr
    # the old file, byte for byte, through the same symlink, 0600; the daemon up on it; nothing started
    assert daemon.config.is_symlink() and daemon.config.resolve() == real.resolve()
    assert real.read_text() == original and real.stat().st_mode & 0o777 == 0o600
    client = daemon.client()
    info = client.info()
    assert "vllmgen-test=kept" in info["Labels"] and info["RegistryConfig"]["Mirrors"] == []
    assert client.containers.list(all=True, filters={"label": "io.vllmgen.deployment=vg-rollback"}) == []
    backups = list(daemon.dir.glob("daemon.json.vllmgen-backup-*"))
    assert len(backups) == 1 and backups[0].read_text() == original
    backups[0].unlink()


def test_a_value_of_another_type_stops_apply_and_leaves_file_and_daemon_alone(
        one_host: Cluster, tmp_path: Path, python_prefix: str, fake_vllm: str) -> None:
    daemon = one_host.daemons[0]
    _link_config(one_host, tmp_path, json.dumps({"debug": False, "labels": ["vllmgen-test=kept"]}) + "\n")
    pid = _pid(one_host)
    wrong = '{"labels": ["vllmgen-test=kept"], "registry-mirrors": "https://a.example"}\n'
    daemon.config.resolve().write_text(wrong)  # as a person left it; Docker has not loaded it yet
    spec = write_spec(tmp_path, single_spec(daemon.endpoint, python_prefix, fake_vllm, tmp_path, name="vg-types"))

    result = _apply(one_host, spec)
    assert result.returncode == 4, result.stderr
    assert ("node solo, step daemon-json: " + f"{daemon.config} on solo: registry-mirrors is a JSON string there"
            in result.stderr)
    assert daemon.config.read_text() == wrong and _pid(one_host) == pid
    assert not list(daemon.dir.glob("daemon.json.vllmgen-backup-*"))


def test_a_symlinked_0600_file_is_merged_through_the_link(
        one_host: Cluster, tmp_path: Path, python_prefix: str, fake_vllm: str) -> None:
    daemon = one_host.daemons[0]
    real = _link_config(one_host, tmp_path, json.dumps({"debug": False, "labels": ["vllmgen-test=kept"]}) + "\n")
    os.chown(real, 4321, 4321)
    spec = write_spec(tmp_path, single_spec(daemon.endpoint, python_prefix, fake_vllm, tmp_path, name="vg-link"))

    result = _apply(one_host, spec)
    assert result.returncode == 0, result.stderr
    assert "daemon-json: wrote" in result.stderr and "this dockerd has no --validate" in result.stderr
    assert daemon.config.is_symlink() and daemon.config.resolve() == real.resolve()
    info = real.stat()
    assert (info.st_mode & 0o777, info.st_uid, info.st_gid) == (0o600, 4321, 4321)
    assert json.loads(real.read_text())["registry-mirrors"] == ["https://mirror.vllmgen.invalid"]
    assert daemon.client().info()["RegistryConfig"]["Mirrors"] == ["https://mirror.vllmgen.invalid/"]
    assert one_host.vllmgen("down", str(spec), "--all").returncode == 0
    for backup in daemon.dir.glob("daemon.json.vllmgen-backup-*"):
        backup.unlink()
