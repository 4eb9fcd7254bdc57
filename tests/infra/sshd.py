"""OpenSSH servers for test hosts: one sshd per namespace host, key-only root login, pinned host keys.

The suite makes one client key, one host key per host, and a known_hosts that pins them; a
client config names both, and an ``ssh`` wrapper first on PATH hands that config to every ssh
the runner starts (ssh reads ~/.ssh/config from the passwd home, which tests must not touch).
The namespaces share one filesystem, so each sshd gives its sessions that host's own Docker
socket and home through ``SetEnv`` (DOCKER_HOST, HOME): one host's files never stand in for
another's. Each sshd is stopped by the pid in its PidFile; nothing is looked up by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def missing_tools() -> list[str]:
    return [tool for tool in (SSHD, "ssh", "ssh-keygen") if not shutil.which(tool)]


def _keygen(path: Path, comment: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)
    return Path(f"{path}.pub").read_text().strip()


@dataclass
class Sshd:
    dir: Path
    netns: str
    address: str
    docker_host: str  # what sessions get as DOCKER_HOST

    @property
    def home(self) -> Path:
        return self.dir / "home"

    @property
    def pidfile(self) -> Path:
        return self.dir / "sshd.pid"

    @property
    def endpoint(self) -> str:
        return f"ssh://root@{self.address}"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def start(self) -> None:
        if self.pid():
            return
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
        subprocess.run(["nsenter", f"--net={self.netns}", SSHD, "-f", str(self.dir / "sshd_config"),
                        "-E", str(self.dir / "sshd.log")], check=True, capture_output=True)
        deadline = time.monotonic() + 10
        while not self.pid():
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd on {self.address} did not start: {self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)  # the listener only: sessions end with their connections
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.dir / "sshd.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class SshBed:
    """The client side (key, known_hosts, config, ssh wrapper) and one sshd per node host."""

    dir: Path
    servers: list[Sshd] = field(default_factory=list)

    @property
    def bin(self) -> Path:
        return self.dir / "bin"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    def env(self, known_hosts: Path | None = None) -> dict[str, str]:
        """The environment of a control-host command: our ssh first on PATH; ``known_hosts``: another
        file of pinned keys (an empty one: every host key unknown)."""
        folder = self.bin if known_hosts is None else _client(self.dir / f"bin-{known_hosts.name}", self.key,
                                                              known_hosts)
        return {"PATH": f"{folder}:{os.environ.get('PATH', '/usr/bin:/bin')}"}

    def add(self, netns: str, address: str, docker_host: str) -> Sshd:
        index = len(self.servers)
        folder = self.dir / f"host{index}"
        (folder / "home").mkdir(parents=True)
        host_key = folder / "ssh_host_ed25519_key"
        public = _keygen(host_key, f"vllmgen-test-host-{index}")
        (folder / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        (folder / "sshd_config").write_text("\n".join([
            f"ListenAddress {address}",
            "Port 22",
            f"HostKey {host_key}",
            f"PidFile {folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {folder / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PrintMotd no",
            "MaxStartups 100:30:200",  # the runner opens several connections at once
            "MaxSessions 100",
            f"SetEnv DOCKER_HOST={docker_host} HOME={folder / 'home'}",
            "",
        ]))
        kind, blob = public.split()[:2]
        with self.known_hosts.open("a") as known:
            known.write(f"{address} {kind} {blob}\n")
        server = Sshd(folder, netns, address, docker_host)
        server.start()
        self.servers.append(server)
        return server

    def remove(self) -> None:
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _client(folder: Path, key: Path, known_hosts: Path) -> Path:
    """A folder holding an ``ssh`` that uses ``key`` and ``known_hosts`` only."""
    if (folder / "ssh").exists():
        return folder
    folder.mkdir()
    config = folder / "ssh_config"
    config.write_text("\n".join([
        "Host *",
        f"  IdentityFile {key}",
        "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {known_hosts}",
        "  GlobalKnownHostsFile /dev/null",
        "  LogLevel ERROR",
        "",
    ]))
    wrapper = folder / "ssh"
    wrapper.write_text(f'#!/bin/sh\n# the test user\'s ~/.ssh/config, without touching the real one\n'
                       f'exec /usr/bin/ssh -F {config} "$@"\n')
    wrapper.chmod(0o755)
    return folder


def make_bed() -> SshBed:
    """The client half: a key, an empty known_hosts (filled as hosts are added), and the ssh wrapper."""
    bed = SshBed(Path(tempfile.mkdtemp(prefix="vgssh-", dir="/tmp")))
    _keygen(bed.key, "vllmgen-test-client")
    bed.known_hosts.touch()
    _client(bed.bin, bed.key, bed.known_hosts)
    return bed
