"""A private dockerd for tests: own socket, state and config file, optionally in a network namespace.

Started and stopped through dockerd-ctl.sh (which `vllmgen apply --docker-restart` can call too,
so the runner restarts this daemon exactly as it would restart a real one after daemon.json
changed). Removal takes down what the daemon ran, then its state; nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CTL = Path(__file__).with_name("dockerd-ctl.sh")


def missing_tools() -> list[str]:
    return [tool for tool in ("dockerd", "nsenter", "ip", "curl") if not shutil.which(tool)]


@dataclass
class Dockerd:
    dir: Path
    netns: str | None = None  # /var/run/netns/NAME
    storage_driver: str = ""

    @property
    def socket(self) -> Path:
        return self.dir / "docker.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    @property
    def config(self) -> Path:
        return self.dir / "daemon.json"

    @property
    def restart_command(self) -> str:
        return f"{CTL} {self.dir} restart"

    def ctl(self, action: str) -> None:
        out = subprocess.run([str(CTL), str(self.dir), action], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"dockerd-ctl {action} failed: {out.stderr.strip()}")

    def client(self):  # noqa: ANN201 - docker.DockerClient
        import docker

        return docker.DockerClient(base_url=self.endpoint, timeout=600)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.dir / "dockerd.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @classmethod
    def start(cls, *, netns: str | None = None, config: dict | None = None, prefix: str = "vgd-") -> Dockerd:
        """overlay2 where the kernel and filesystem allow it (10x faster builds and container starts),
        else vfs, which works everywhere; VLLMGEN_TEST_STORAGE_DRIVER picks one."""
        # short paths: containerd's sockets live under exec-root and unix socket paths are limited
        daemon = cls(Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")), netns)
        daemon.config.write_text(json.dumps(config or {}, indent=2) + "\n")
        if netns:
            (daemon.dir / "netns").write_text(netns)
        chosen = os.environ.get("VLLMGEN_TEST_STORAGE_DRIVER")
        for driver in [chosen] if chosen else ["overlay2", "vfs"]:
            (daemon.dir / "storage-driver").write_text(driver)
            try:
                daemon.ctl("start")
                daemon.storage_driver = driver
                return daemon
            except RuntimeError:
                if driver == "vfs" or chosen:
                    daemon.remove()
                    raise
        raise AssertionError("unreachable")

    def remove_containers(self) -> None:
        """Every container of this daemon, running or not (the daemon is private: each is a test's)."""
        client = self.client()
        try:
            for container in client.containers.list(all=True):
                container.remove(force=True)
        finally:
            client.close()

    def remove(self) -> None:
        """Stop the daemon (it stops its containers), then delete its state."""
        try:
            self.remove_containers()
        except Exception:  # noqa: BLE001 - best effort; stopping the daemon stops them too
            pass
        self.ctl("stop")
        _unmount_below(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


def _unmount_below(root: Path) -> None:
    """Mounts a killed daemon may leave under its own folder (never anything else)."""
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def shm_psm_files() -> set[str]:
    """`/dev/shm/psm_*` (torch) and `sem.mp-*` (multiprocessing): left behind by vLLM in `--ipc host`
    containers that were stopped; tests remove the ones that appeared while they ran."""
    try:
        return {name for name in os.listdir("/dev/shm") if name.startswith(("psm_", "sem.mp-"))}
    except OSError:
        return set()


def shm_files_in_use() -> set[str]:
    """The /dev/shm names some living process still has open or mapped: another test session's vLLM (the slow
    tier runs on two workers) or anyone else's. Only a file no process holds is left behind."""
    held: set[str] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            held.update(line.split("/dev/shm/", 1)[1].split()[0]
                        for line in (entry / "maps").read_text().splitlines() if "/dev/shm/" in line)
            for fd in (entry / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("/dev/shm/"):
                    held.add(target.removeprefix("/dev/shm/").split()[0])
        except OSError:  # the process ended, or is not ours to read
            continue
    return held
