"""daemon.json over real OpenSSH: from the control host, on a node reached as `ssh://root@ADDR`.

The node's daemon.json is a symlink to a 0600 file owned by another user. A merged file that node's
dockerd refuses is put back (through the link, mode and owner kept) and Docker answers again; a good
one is written through the link, mode and owner kept. The file operations are the script SshHost
runs on the node; the restart is the test daemon's dockerd-ctl.sh run over ssh.
(Named to run before test_ssh_hosts.py: it restarts the first node's dockerd.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .support import SshCluster, apply_args, single_spec, write_spec

pytestmark = pytest.mark.slow

API_KEY = {"VG_TEST_API_KEY": "test-key-not-secret-123"}
ORIGINAL = json.dumps({"labels": ["vllmgen-test=kept"]}, indent=4) + "\n"


@pytest.fixture()
def linked(ssh_hosts: SshCluster, tmp_path: Path):  # noqa: ANN201
    daemon = ssh_hosts.daemons[0]
    before = daemon.config.read_text()
    real = tmp_path / "etc-docker" / "daemon.json"
    real.parent.mkdir()
    real.write_text(ORIGINAL)
    real.chmod(0o600)
    os.chown(real, 4321, 4322)
    daemon.config.unlink()
    daemon.config.symlink_to(real)
    daemon.ctl("restart")
    yield real
    daemon.config.unlink()
    daemon.config.write_text(before)
    daemon.ctl("restart")
    for backup in daemon.dir.glob("daemon.json.vllmgen-backup-*"):
        backup.unlink()


def _kept(ssh_hosts: SshCluster, real: Path) -> None:
    daemon = ssh_hosts.daemons[0]
    assert daemon.config.is_symlink() and daemon.config.resolve() == real.resolve()
    info = real.stat()
    assert (info.st_mode & 0o777, info.st_uid, info.st_gid) == (0o600, 4321, 4322)


def test_daemon_json_over_ssh_rolls_back_and_merges_through_the_link(
        ssh_hosts: SshCluster, linked: Path, tmp_path: Path, python_prefix: str, fake_vllm: str) -> None:
    daemon, server = ssh_hosts.daemons[0], ssh_hosts.servers[0]
    data = single_spec(server.endpoint, python_prefix, fake_vllm, tmp_path, name="vg-sshdj", port=18100)
    data["nodes"][0]["address"] = server.address
    over_ssh = ("--all", "--no-gpus", "--timeout", "60", "--yes", "--daemon-json", str(daemon.config),
                "--docker-restart", daemon.restart_command)

    data["docker"]["daemon"]["bogus-key"] = True
    bad = write_spec(tmp_path / "bad", data)
    result = ssh_hosts.vllmgen(*apply_args(bad, *over_ssh), env=API_KEY)
    assert result.returncode == 4, result.stderr
    assert "node solo, step daemon-json: Docker did not come back with the merged" in result.stderr
    assert "bogus-key" in result.stderr and "restarted Docker, which answers again" in result.stderr
    assert linked.read_text() == ORIGINAL
    _kept(ssh_hosts, linked)
    assert "vllmgen-test=kept" in daemon.client().info()["Labels"]

    del data["docker"]["daemon"]["bogus-key"]
    good = write_spec(tmp_path / "good", data)
    result = ssh_hosts.vllmgen(*apply_args(good, *over_ssh), env=API_KEY)
    assert result.returncode == 0, result.stderr
    assert "solo: daemon-json: merged (+ log-driver, + log-opts, + registry-mirrors)" in result.stderr
    _kept(ssh_hosts, linked)
    merged = json.loads(linked.read_text())
    assert merged["labels"] == ["vllmgen-test=kept"] and merged["registry-mirrors"] == ["https://mirror.vllmgen.invalid"]
    assert daemon.client().info()["RegistryConfig"]["Mirrors"] == ["https://mirror.vllmgen.invalid/"]
    assert ssh_hosts.vllmgen("down", str(good), "--all").returncode == 0
