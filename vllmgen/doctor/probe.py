"""Gatherers: the only doctor code that touches the host. Everything else is pure and tested on fixtures.

`Probe` is the interface; `LiveProbe` asks this host, `RecordedProbe` replays a fixture folder
(tests, and `python -m vllmgen.doctor --replay DIR`). The docker SDK is imported lazily so the rest
works where it is not installed (GPU hosts often have no Docker at all).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vllmgen.doctor import gpu, network, storage
from vllmgen.doctor.docker import SDK_MISSING


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int  # 127: the program is not installed
    stdout: str
    stderr: str


@dataclass(frozen=True)
class DiskSpace:
    total: int
    free: int  # available to unprivileged users (f_bavail), what a container can use


class Probe(Protocol):
    def nvidia_smi_query(self) -> CommandResult: ...
    def nvidia_smi(self) -> CommandResult: ...
    def interfaces(self) -> dict[str, list[str]]: ...
    def infiniband_devices(self) -> list[str] | None: ...
    def disk_space(self, path: str) -> DiskSpace | None: ...
    def port_error(self, host: str, port: int) -> str | None: ...
    def hostname_addresses(self) -> tuple[str, list[str]] | None: ...
    def list_dir(self, path: str) -> list[str] | None: ...
    def read_json(self, path: str) -> dict[str, Any] | None: ...
    def docker_info(self) -> tuple[dict[str, Any] | None, str | None]: ...
    def docker_gpu_smoke(self, image: str | None) -> tuple[int | None, str]: ...
    def read_text(self, path: str) -> str | None: ...
    def image(self, reference: str) -> tuple[str, dict[str, str]] | None: ...


class ImageUnknown(Exception):
    """The engine could not say whether an image is there (its own error, a timeout)."""


def run_command(argv: Sequence[str], timeout: float = 30) -> CommandResult:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return CommandResult(tuple(argv), 127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return CommandResult(tuple(argv), 124, "", f"{argv[0]}: no answer in {timeout:g} s")
    return CommandResult(tuple(argv), done.returncode, done.stdout, done.stderr)


# --- interface addresses without `ip`: getifaddrs(3) through ctypes -------------------------------


class _Sockaddr(ctypes.Structure):
    _fields_ = [("sa_family", ctypes.c_ushort), ("sa_data", ctypes.c_ubyte * 14)]


class _Sockaddr6(ctypes.Structure):
    _fields_ = [
        ("sin6_family", ctypes.c_ushort),
        ("sin6_port", ctypes.c_ushort),
        ("sin6_flowinfo", ctypes.c_uint32),
        ("sin6_addr", ctypes.c_ubyte * 16),
        ("sin6_scope_id", ctypes.c_uint32),
    ]


class _Ifaddrs(ctypes.Structure):
    pass


_Ifaddrs._fields_ = [
    ("ifa_next", ctypes.POINTER(_Ifaddrs)),
    ("ifa_name", ctypes.c_char_p),
    ("ifa_flags", ctypes.c_uint),
    ("ifa_addr", ctypes.POINTER(_Sockaddr)),
    ("ifa_netmask", ctypes.POINTER(_Sockaddr)),
    ("ifa_ifu", ctypes.POINTER(_Sockaddr)),
    ("ifa_data", ctypes.c_void_p),
]


def _raw_addr(sa: Any) -> bytes | None:
    family = sa.contents.sa_family
    if family == socket.AF_INET:
        return bytes(sa.contents.sa_data[2:6])
    if family == socket.AF_INET6:
        return bytes(ctypes.cast(sa, ctypes.POINTER(_Sockaddr6)).contents.sin6_addr)
    return None


def getifaddrs() -> dict[str, list[str]]:
    """{'eth0': ['192.0.2.5/24', 'fe80::.../64'], 'lo': [...]}, secondary addresses included."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    head = ctypes.POINTER(_Ifaddrs)()
    if libc.getifaddrs(ctypes.byref(head)) != 0:
        raise OSError(ctypes.get_errno(), "getifaddrs failed")
    out: dict[str, list[str]] = {}
    try:
        node = head
        while node:
            entry = node.contents
            name = (entry.ifa_name or b"").decode()
            out.setdefault(name, [])
            if entry.ifa_addr and entry.ifa_netmask:
                family = entry.ifa_addr.contents.sa_family
                addr, mask = _raw_addr(entry.ifa_addr), _raw_addr(entry.ifa_netmask)
                if addr is not None and mask is not None:
                    prefix = sum(bin(b).count("1") for b in mask)
                    out[name].append(f"{socket.inet_ntop(family, addr)}/{prefix}")
            node = entry.ifa_next
    finally:
        libc.freeifaddrs(head)
    return out


class LiveProbe:
    """Asks this host."""

    def __init__(self, docker_timeout: float = 10) -> None:
        self.docker_timeout = docker_timeout

    def nvidia_smi_query(self) -> CommandResult:
        return run_command(gpu.QUERY_ARGV)

    def nvidia_smi(self) -> CommandResult:
        return run_command(["nvidia-smi"])

    def interfaces(self) -> dict[str, list[str]]:
        found = getifaddrs()
        for name in network.parse_net_dir(" ".join(_listdir("/sys/class/net") or [])):
            found.setdefault(name, [])  # an interface that is down and has no address still exists
        return found

    def infiniband_devices(self) -> list[str] | None:
        return _listdir("/sys/class/infiniband")

    def disk_space(self, path: str) -> DiskSpace | None:
        try:
            st = os.statvfs(path)
        except OSError:
            return None
        return DiskSpace(st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)

    def hostname_addresses(self) -> tuple[str, list[str]] | None:
        name = socket.gethostname()
        try:
            found = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        except OSError:
            return name, []
        return name, sorted({str(entry[4][0]) for entry in found})

    def port_error(self, host: str, port: int) -> str | None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            # Servers set SO_REUSEADDR, so a port in TIME_WAIT is free for them too.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as e:
                return str(e)
        return None

    def list_dir(self, path: str) -> list[str] | None:
        return _listdir(path)

    def read_json(self, path: str) -> dict[str, Any] | None:
        try:
            return json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return None

    def read_text(self, path: str) -> str | None:
        try:
            return Path(path).read_text(encoding="utf-8")
        except (OSError, ValueError):
            return None

    def image(self, reference: str) -> tuple[str, dict[str, str]] | None:
        """The image's ID and labels on this host's engine; None when it is not there. An engine that does
        not answer is ImageUnknown, not "missing": its fix is not a bundle load."""
        import docker.errors  # lazy: the docker SDK: optional on GPU hosts, and slow to import

        try:
            found = self._client().images.get(reference)
        except docker.errors.ImageNotFound:
            return None
        except Exception as exc:  # noqa: BLE001 - the daemon's error, a timeout, a refused socket: said as is
            raise ImageUnknown(str(exc) or type(exc).__name__) from None
        return found.id, dict(found.labels or {})

    def _client(self) -> Any:
        import docker  # lazy: the docker SDK: optional on GPU hosts, and slow to import

        return docker.from_env(timeout=self.docker_timeout)

    def docker_info(self) -> tuple[dict[str, Any] | None, str | None]:
        try:
            return self._client().info(), None
        except ImportError:
            return None, f"{SDK_MISSING} (pip install docker)"
        except Exception as e:  # the SDK raises DockerException, requests' and OS errors alike
            return None, str(e)

    def docker_gpu_smoke(self, image: str | None) -> tuple[int | None, str]:
        if not image:
            return None, "no image to run"
        try:
            # lazy: the docker SDK: optional on GPU hosts, and slow to import
            import docker

            client = self._client()
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                return None, (f"image {image} is not on this host; build or pull it (an air-gapped host: "
                              "`vllmgen bundle load`), then run doctor again")
            out = client.containers.run(
                image,
                ["nvidia-smi", "-L"],
                entrypoint=[],
                remove=True,
                network_mode="none",
                device_requests=[docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])],
            )
            return 0, out.decode(errors="replace")
        except ImportError:
            return None, f"{SDK_MISSING} (pip install docker)"
        except Exception as e:
            status = getattr(e, "exit_status", None)
            return (status if isinstance(status, int) else 125), str(e)


def _listdir(path: str) -> list[str] | None:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return None


class RecordedProbe:
    """Replays a folder of recorded outputs. Missing files read as 'not there' (rc 127, None)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def _text(self, name: str) -> str | None:
        p = self.folder / name
        return p.read_text() if p.exists() else None

    def _json(self, name: str) -> Any:
        text = self._text(name)
        return None if text is None else json.loads(text)

    def _command(self, stem: str, argv: Sequence[str]) -> CommandResult:
        out = self._text(f"{stem}.txt")
        if out is None:
            return CommandResult(tuple(argv), 127, "", f"{argv[0]}: command not found")
        rc = self._text(f"{stem}.rc")
        return CommandResult(tuple(argv), int(rc) if rc else 0, out, self._text(f"{stem}.stderr") or "")

    def nvidia_smi_query(self) -> CommandResult:
        return self._command("nvidia_smi_query", gpu.QUERY_ARGV)

    def nvidia_smi(self) -> CommandResult:
        return self._command("nvidia_smi", ["nvidia-smi"])

    def interfaces(self) -> dict[str, list[str]]:
        return self._json("interfaces.json") or {}

    def infiniband_devices(self) -> list[str] | None:
        text = self._text("infiniband.txt")
        return None if text is None or not text.split() else sorted(text.split())

    def disk_space(self, path: str) -> DiskSpace | None:
        text = self._text("df.txt")
        rows = storage.parse_df(text) if text else []
        # The mount that holds `path` is the longest mount point that is a prefix of it.
        best = None
        for row in rows:
            mount = row.mount.rstrip("/") + "/"
            if (path.rstrip("/") + "/").startswith(mount) and (best is None or len(row.mount) > len(best.mount)):
                best = row
        return DiskSpace(best.size, best.available) if best else None

    def hostname_addresses(self) -> tuple[str, list[str]] | None:
        data = self._json("hostname.json")
        return None if data is None else (data["hostname"], list(data["addresses"]))

    def port_error(self, host: str, port: int) -> str | None:
        ports: Mapping[str, str | None] = self._json("ports.json") or {}
        return ports.get(str(port))

    def list_dir(self, path: str) -> list[str] | None:
        listing: Mapping[str, list[str]] = self._json("listing.json") or {}
        return listing.get(path)

    def read_json(self, path: str) -> dict[str, Any] | None:
        files: Mapping[str, str] = self._json("files.json") or {}
        name = files.get(path)
        return None if name is None else self._json(name)

    def read_text(self, path: str) -> str | None:
        files: Mapping[str, str] = self._json("files.json") or {}
        name = files.get(path)
        return None if name is None else self._text(name)

    def image(self, reference: str) -> tuple[str, dict[str, str]] | None:
        images: Mapping[str, Mapping[str, Any]] = self._json("images.json") or {}
        found = images.get(reference)
        return None if found is None else (str(found["id"]), dict(found.get("labels") or {}))

    def docker_info(self) -> tuple[dict[str, Any] | None, str | None]:
        info = self._json("docker_info.json")
        if info is not None:
            return info, None
        return None, self._text("docker_error.txt") or "no docker recorded"

    def docker_gpu_smoke(self, image: str | None) -> tuple[int | None, str]:
        rc = self._text("gpus_all.rc")
        if rc is None:
            return None, "not recorded"
        return int(rc), (self._text("gpus_all.stderr") or "") + (self._text("gpus_all.stdout") or "")
