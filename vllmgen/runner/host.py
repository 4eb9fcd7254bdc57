"""Access to a node's host beside its Docker engine: files, $HOME, restarting Docker, nvidia-smi.

The Docker API reaches containers and images, not the host's files. daemon.json, the user's
home (for ``~/`` mounts), the deployment folder that containers mount, and the daemon restart
go through a subprocess: directly for the local host, through ``ssh`` for an ``ssh://`` node.
A ``tcp://`` endpoint gives no such access; steps that need it say so.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from vllmgen.spec import endpoints
from vllmgen.spec.endpoints import Endpoint
from vllmgen.targets.docker import daemon_json
from vllmgen.runner import ssh

DEFAULT_RESTART = ("systemctl", "restart", "docker")
PUT_SCRIPT = 'set -e; mkdir -p -- "$1"; tar -x -o -f - -C "$1"'  # the deployment files arrive as a tar on stdin
# sh -c REPLACE_SCRIPT vllmgen PATH BACKUP < TEXT, on an ssh host: as daemon_json.write_atomic does
# locally, through a symlink to its target, the new file first a copy (`cp -p`: mode and owner)
REPLACE_SCRIPT = (
    'set -e; t="$(readlink -f -- "$1" 2>/dev/null)" || t=""; [ -n "$t" ] || t="$1"; '
    'if [ -n "$2" ]; then cp -p -- "$1" "$2"; fi; mkdir -p -- "$(dirname -- "$t")"; '
    'n="$t.vllmgen-new"; rm -f -- "$n"; if [ -e "$t" ]; then cp -p -- "$t" "$n"; fi; '
    'cat > "$n"; mv -f -- "$n" "$t"'
)


@dataclass(frozen=True)
class Completed:
    rc: int
    stdout: str
    stderr: str


class HostError(Exception):
    """A command on the node's host failed to run: ssh could not connect, or it ran out of time."""


class NoHostAccess(HostError):
    """This node's host cannot be reached beside its Docker endpoint (a tcp:// endpoint)."""


class Host(Protocol):
    description: str
    daemon_json_path: str
    restart_command: tuple[str, ...]

    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 120) -> Completed: ...

    def home(self) -> str: ...

    def read_text(self, path: str) -> str | None: ...

    def replace_text(self, path: str, text: str, backup: str | None) -> None: ...

    def remove(self, path: str) -> None: ...

    def put_files(self, directory: str, files: dict[str, bytes]) -> None: ...


@dataclass
class LocalHost:
    """The machine vllmgen runs on."""

    daemon_json_path: str = daemon_json.DEFAULT_PATH
    restart_command: tuple[str, ...] = DEFAULT_RESTART
    description: str = "this host"

    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 120) -> Completed:
        if not shutil.which(argv[0]):
            return Completed(127, "", f"{argv[0]}: command not found")
        try:
            out = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise HostError(f"`{shlex.join(argv)}` did not finish within {timeout:g}s on this host") from exc
        return Completed(out.returncode, out.stdout, out.stderr)

    def home(self) -> str:
        return str(Path.home())

    def read_text(self, path: str) -> str | None:
        try:
            return Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise HostError(f"cannot read {path} on this host: {exc}") from exc

    def replace_text(self, path: str, text: str, backup: str | None) -> None:
        try:
            if backup:
                shutil.copy2(path, backup)
            daemon_json.write_atomic(Path(path), text)
        except OSError as exc:  # the file is as it was: write_atomic renames only a complete file
            raise HostError(f"cannot write {path} on this host ({exc.strerror or exc}); it was left as it was:"
                            " run vllmgen as a user who may write it, or merge the file by hand") from exc

    def remove(self, path: str) -> None:
        try:
            Path(path).unlink(missing_ok=True)
        except OSError as exc:
            raise HostError(f"cannot remove {path} on this host: {exc}") from exc

    def put_files(self, directory: str, files: dict[str, bytes]) -> None:
        raise AssertionError("the local host uses the deployment folder in place")


@dataclass
class SshHost:
    """A node reached as ``ssh://[user@]host[:port]``; commands run through the ssh client (``runner.ssh``)."""

    endpoint: Endpoint
    daemon_json_path: str = daemon_json.DEFAULT_PATH
    restart_command: tuple[str, ...] = DEFAULT_RESTART
    description: str = field(init=False)
    attempts: int = 3  # a dropped connection is tried again; a refusal is not

    def __post_init__(self) -> None:
        self.description = ssh.where(self.endpoint)

    def ssh_argv(self, remote: list[str]) -> list[str]:
        return ssh.ssh_argv(self.endpoint, shlex.join(remote))

    def run(self, argv: list[str], *, input: str | bytes | None = None, timeout: float = 120) -> Completed:
        data = input.encode() if isinstance(input, str) else input
        for attempt in range(self.attempts):
            try:
                shared = ssh.shared(self.endpoint, self.ssh_argv(argv))
            except ssh.SshRefused as exc:  # the host's one login failed: ssh's words, without trying again
                raise HostError(ssh.explain(self.endpoint, exc.stderr)) from None
            try:
                raw = subprocess.run(shared, input=data, capture_output=True, timeout=timeout, check=False)
                out = subprocess.CompletedProcess(raw.args, raw.returncode, raw.stdout.decode("utf-8", "replace"),
                                                  raw.stderr.decode("utf-8", "replace"))
            except subprocess.TimeoutExpired as exc:
                raise HostError(f"{self.description}: `{shlex.join(argv)}` did not finish within {timeout:g}s") from exc
            except FileNotFoundError as exc:
                raise HostError("no ssh client on this machine (install openssh-client)") from exc
            if out.returncode != 255:  # 255: ssh's own failure, not the command's
                return Completed(out.returncode, out.stdout, out.stderr)
            if not ssh.transient(out.stderr) or attempt == self.attempts - 1:
                why = ssh.explain(self.endpoint, out.stderr)
                if why:
                    raise HostError(why)
                return Completed(out.returncode, out.stdout, out.stderr)
            time.sleep(1 + attempt)
        raise AssertionError("unreachable")

    def _sh(self, script: str, *args: str, input: str | bytes | None = None) -> Completed:
        return self.run(["sh", "-c", script, "vllmgen", *args], input=input)

    def home(self) -> str:
        out = self._sh('printf %s "$HOME"')
        if out.rc != 0 or not out.stdout.startswith("/"):
            raise NoHostAccess(f"cannot read $HOME over {self.description}: {out.stderr.strip()}")
        return out.stdout

    def read_text(self, path: str) -> str | None:
        out = self._sh('if [ -e "$1" ]; then cat -- "$1"; else exit 3; fi', path)
        if out.rc == 3:
            return None
        if out.rc != 0:
            raise NoHostAccess(f"cannot read {path} over {self.description}: {out.stderr.strip()}")
        return out.stdout

    def replace_text(self, path: str, text: str, backup: str | None) -> None:
        out = self._sh(REPLACE_SCRIPT, path, backup or "", input=text)
        if out.rc != 0:
            raise NoHostAccess(f"cannot write {path} over {self.description}: {out.stderr.strip()}")

    def remove(self, path: str) -> None:
        out = self._sh('rm -f -- "$1"', path)
        if out.rc != 0:
            raise NoHostAccess(f"cannot remove {path} over {self.description}: {out.stderr.strip()}")

    def put_files(self, directory: str, files: dict[str, bytes]) -> None:
        """Every file in one ssh session: a tar on stdin, unpacked into ``directory``."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data in sorted(files.items()):
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        out = self._sh(PUT_SCRIPT, directory, input=buffer.getvalue())
        if out.rc != 0:
            raise NoHostAccess(f"cannot copy {', '.join(sorted(files))} to {directory} over {self.description}: "
                               f"{out.stderr.strip()}")


@dataclass
class UnreachableHost:
    """A ``tcp://`` endpoint: Docker's API only; no files, no commands on the host."""

    endpoint: str
    daemon_json_path: str = daemon_json.DEFAULT_PATH
    restart_command: tuple[str, ...] = DEFAULT_RESTART
    description: str = field(init=False)

    def __post_init__(self) -> None:
        self.description = f"the Docker endpoint {self.endpoint}"

    def _refuse(self, what: str) -> NoHostAccess:
        return NoHostAccess(
            f"{what} needs the host itself, and {self.endpoint} reaches only its Docker API;"
            " give the node an ssh:// docker_host, or run `vllmgen apply SPEC --node NAME` on that host"
        )

    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 120) -> Completed:
        raise self._refuse(f"running {argv[0]}")

    def home(self) -> str:
        raise self._refuse("a mount under ~/")

    def read_text(self, path: str) -> str | None:
        raise self._refuse(f"reading {path}")

    def replace_text(self, path: str, text: str, backup: str | None) -> None:
        raise self._refuse(f"writing {path}")

    def remove(self, path: str) -> None:
        raise self._refuse(f"removing {path}")

    def put_files(self, directory: str, files: dict[str, bytes]) -> None:
        raise self._refuse("copying the deployment folder")


def for_endpoint(endpoint: str | None, *, daemon_json_path: str = daemon_json.DEFAULT_PATH,
                 restart_command: tuple[str, ...] = DEFAULT_RESTART) -> Host:
    """The host beside a Docker endpoint: local for unix:// (or none), ssh for ssh://, none for tcp://."""
    options = {"daemon_json_path": daemon_json_path, "restart_command": restart_command}
    scheme = urlsplit(endpoint).scheme if endpoint else "unix"
    if scheme in ("unix", "npipe", ""):
        return LocalHost(**options)
    if scheme == "ssh":
        return SshHost(endpoints.parse(str(endpoint)), **options)
    return UnreachableHost(str(endpoint), **options)


def is_local(host: Host) -> bool:
    return isinstance(host, LocalHost)


def default_endpoint() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
