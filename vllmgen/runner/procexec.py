"""ProcessExecutor: the Executor protocol for ``runtime.kind: process`` on this host.

A node's "container" is a ``vllm serve`` process started from ``process.launch`` (the same
translation start.sh uses): detached, in its own session and process group, its output in
``<deployment folder>/run/<node>.log``, and its identity in ``run/<node>.json`` (PID, the process's
start time from /proc, the plan's labels). Every later look-up goes by that record: a PID whose
start time differs is another process, and nothing is ever found or stopped by name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vllmgen.plan import LABEL_PREFIX
from vllmgen.process import RUN_DIR, launch, resolve
from vllmgen.runner import host as hosts
from vllmgen.runner.executor import (
    ClusterView,
    ContainerState,
    EngineError,
    EngineInfo,
    ExecResult,
    HttpResult,
    RunRequest,
)
from vllmgen.runner.httpcheck import http_request
from vllmgen.runner.watch import FileFollow

STOP_GRACE_S = 30.0  # SIGTERM lets vLLM stop its engine and workers; then SIGKILL to the group


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot); None if the process is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(") ", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def started_at(ticks: str | None) -> datetime | None:
    """A /proc start time (clock ticks since boot) as a time of day: now, less the time since boot
    (/proc/uptime, the same clock, 10 ms), plus the ticks."""
    try:
        boot = time.time() - float(Path("/proc/uptime").read_text().split()[0])
        return datetime.fromtimestamp(boot + int(ticks or "") / os.sysconf("SC_CLK_TCK"), timezone.utc)
    except (OSError, IndexError, ValueError):
        return None


class ProcessExecutor:
    concurrent = False  # processes on one host: started one after another

    def __init__(self, node: str, deploy_dir: Path, vllm: str, host: hosts.Host | None = None) -> None:
        self.node = node
        self.endpoint: str | None = None
        self.host = host or hosts.for_endpoint(None)
        self.deploy_dir = deploy_dir
        self.vllm = vllm
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # --- the records ----------------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        return self.deploy_dir / RUN_DIR

    def _records(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.run_dir.glob("*.json")) if self.run_dir.is_dir() else []:
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and "pid" in record:
                out.append(record)
        return out

    def _record(self, name: str) -> dict[str, Any] | None:
        return next((r for r in self._records() if r.get("name") == name), None)

    def _state(self, record: dict[str, Any]) -> ContainerState:
        pid = int(record["pid"])
        child = self._children.get(pid)
        code = child.poll() if child is not None else None
        alive = code is None and start_time(pid) == record.get("start")
        return ContainerState(name=record["name"], status="running" if alive else "exited",
                              exit_code=None if alive else code, labels=dict(record.get("labels", {})),
                              image=record.get("argv0", ""))

    # --- Executor -------------------------------------------------------------------------------

    def ping(self) -> EngineInfo:
        if not os.access(self.vllm, os.X_OK):
            raise EngineError(f"the vllm executable {self.vllm} is not on this host (or not executable)")
        return EngineInfo(version=f"process runtime, {self.vllm}", api_version="-")

    def gpu_count(self) -> int | None:
        try:
            out = self.host.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], timeout=60)
        except (hosts.NoHostAccess, OSError):
            return None
        if out.rc != 0:
            return None
        return len([line for line in out.stdout.splitlines() if line.strip()])

    def prepare_deploy_dir(self, local: Path, files: tuple[str, ...], remote: str) -> str:
        """Copy the files the process reads (serve-config.yaml) into this node's deployment folder."""
        self.deploy_dir.mkdir(parents=True, exist_ok=True)
        for name in files:
            target = self.deploy_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if (local / name).resolve() != target.resolve():
                target.write_bytes((local / name).read_bytes())
        return str(self.deploy_dir)

    def inspect(self, name: str) -> ContainerState | None:
        record = self._record(name)
        return None if record is None else self._state(record)

    def run(self, request: RunRequest) -> None:
        container = request.container
        plan = launch(container)
        home = os.path.expanduser("~")
        deploy_dir = request.deploy_dir or str(self.deploy_dir)
        argv = [resolve(word, home, deploy_dir) for word in plan.argv]
        env = dict(os.environ)
        env.update({name: resolve(value, home, deploy_dir) for name, value in plan.env})
        env.update({secret.name: request.secrets[secret.name] for secret in plan.secrets})
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = self.run_dir / f"{self._node_of(request)}.log"
        if log.exists():
            log.replace(log.with_suffix(".log.1"))
        with open(log, "ab") as out:
            try:
                child = subprocess.Popen(argv, cwd=deploy_dir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                raise EngineError(f"cannot start {argv[0]}: {exc}") from exc
        self._children[child.pid] = child
        record = {"name": container.name, "pid": child.pid, "start": start_time(child.pid), "log": str(log),
                  "argv0": argv[0], "labels": request.labels}
        path = self.run_dir / f"{self._node_of(request)}.json"
        path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        (self.run_dir / f"{self._node_of(request)}.pid").write_text(f"{child.pid} {record['start']}\n")

    @staticmethod
    def _node_of(request: RunRequest) -> str:
        return dict(request.container.labels).get(f"{LABEL_PREFIX}.node", request.container.name)

    def remove(self, name: str, stop_timeout: int = 10) -> None:
        record = self._record(name)
        if record is None:
            return
        pid, start = int(record["pid"]), record.get("start")
        ours = start_time(pid) == start
        if ours:
            _signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + max(stop_timeout, STOP_GRACE_S)
            while start_time(pid) == start and time.monotonic() < deadline:
                self._reap(pid)
                time.sleep(0.2)
            if start_time(pid) == start:
                _signal(pid, signal.SIGKILL)
            # what is left of its group (engine and worker processes): only a group it led
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._reap(pid)
        node = record.get("labels", {}).get(f"{LABEL_PREFIX}.node", name)
        for suffix in (".json", ".pid"):
            (self.run_dir / f"{node}{suffix}").unlink(missing_ok=True)

    def _reap(self, pid: int) -> None:
        child = self._children.get(pid)
        if child is not None:
            child.poll()

    def logs(self, name: str, tail: int | None = 30, timestamps: bool = False) -> str:
        """The process's output (its own log lines carry vLLM's time stamps); ``tail`` None or 0: all."""
        record = self._record(name)
        if record is None:
            return ""
        try:
            lines = Path(record["log"]).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-tail:]) if tail else "\n".join(lines)

    def follow(self, name: str) -> FileFollow | None:
        """The process's log file from its start, and its end (the child polled, its start time compared)."""
        record = self._record(name)
        if record is None:
            return None
        return FileFollow(Path(record["log"]), lambda: self._state(record).running,
                          lambda: self._state(record).exit_code)

    def started_at(self, name: str) -> datetime | None:
        """The recorded process's start: its start time in clock ticks after boot, on the wall clock."""
        record = self._record(name)
        return started_at(record.get("start")) if record is not None else None

    def exec(self, name: str, argv: tuple[str, ...], *, detach: bool = False,
             env: Mapping[str, str] | None = None) -> ExecResult:
        raise EngineError("the process runtime has no exec (no container)")

    def list_containers(self, deployment: str) -> list[ContainerState]:
        return [self._state(r) for r in self._records()
                if r.get("labels", {}).get(f"{LABEL_PREFIX}.deployment") == deployment]

    def cluster_view(self, name: str) -> ClusterView | None:
        return None

    def serving(self, name: str) -> bool:
        state = self.inspect(name)
        return bool(state and state.running)

    def image_labels(self, tag: str) -> dict[str, str] | None:
        return None

    def image_id(self, tag: str) -> str | None:
        return None

    def build_image(self, context: Path, tag: str, dockerfile: str, labels: dict[str, str],
                    on_line: Callable[[str], None]) -> None:
        raise EngineError("the process runtime builds no image")

    def read_daemon_json(self) -> str | None:
        return None

    def write_daemon_json(self, text: str, backup: str | None) -> None:
        raise EngineError("the process runtime has no daemon.json")

    def validate_daemon_json(self, text: str) -> tuple[bool | None, str]:
        return None, ""

    def restore_daemon_json(self, original: str | None) -> None:
        return None

    def restart_daemon(self) -> None:
        raise EngineError("the process runtime has no Docker to restart")

    def http(self, method: str, url: str, headers: Mapping[str, str] | None = None, body: Any = None,
             timeout: float = 10) -> HttpResult:
        return http_request(method, url, headers, body, timeout)

    def close(self) -> None:
        return None


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
