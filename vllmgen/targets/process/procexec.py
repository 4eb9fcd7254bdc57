"""ProcessExecutor: the Executor protocol for ``runtime.kind: process`` on this host.

A node's "container" is its ``run.sh`` (copied into ``~/.vllmgen/deployments/<name>/nodes/<node>/``),
started as start.sh and the systemd unit start it: detached, in its own session and process group,
with a minimal environment (``process.KEPT_ENV`` and the secrets' sources, never the runner's own).
run.sh takes the node's lock, writes ``run/<node>.json`` and execs vLLM, so a server started by
start.sh, by systemd or here is one record format, read here (``read_record``) and by stop.sh.

A record is acted on only when it is one run.sh writes (a PID > 1, its start time); a process only
when it is proven ours (``is_ours``: start time, our user, our marker in its environment), through a
pidfd so that a PID reused between the check and the signal is never hit. Nothing is found or
stopped by name, no group is signalled as a whole: each member of the server's session is proven first.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from vllmgen.plan import label_names
from vllmgen.plan.plan import NodePlan, Plan
from vllmgen.runner import host as hosts
from vllmgen.runner.executor import (
    ContainerState,
    EngineError,
    EngineInfo,
    ExecResult,
    RunRequest,
)
from vllmgen.runner.watch import FileFollow
from vllmgen.targets.process.commands import ProcessShell
from vllmgen.targets.process.process import DEPLOYMENTS, KEPT_ENV, LOCK_BUSY, MARKER_ENV, RUN_DIR, RUN_LABELS_ENV, launch, marker

STOP_GRACE_S = 30.0  # SIGTERM lets vLLM stop its engine and workers; then SIGKILL to the session
MEMBERS_GRACE_S = 10.0  # the leader died: its session's members get this long after SIGTERM
START_WAIT_S = 60.0  # run.sh reads secrets, takes the lock and writes the record well within this
MAX_RECORD_BYTES = 65536


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (which may hold spaces and ')'): state, ppid, pgrp, ..."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(") ", 1)[1].split()


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot); None if the process is gone or a zombie."""
    fields = _stat_fields(pid)
    return None if fields is None or fields[0] == "Z" else fields[19]


class Mark(NamedTuple):
    """What proves a process ours: our marker in its environment, or our node's lock held open. nginx
    (the gateway) writes its process title over its environment, but keeps run.sh's locked fd."""

    marker: str
    lock: str  # run/<node>.lock, absolute


def _holds(pid: int, lock: str) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == lock:
                return True
        except OSError:
            continue
    return False


def is_ours(pid: int, start: str | None, mark: Mark) -> bool:
    """``pid`` is alive, started at ``start`` (any time when None), runs as us and carries our marker
    (or holds our node's lock, which only run.sh's exec chain has)."""
    if pid <= 1:
        return False
    now = start_time(pid)
    if now is None or (start is not None and now != start):
        return False
    try:
        if os.stat(f"/proc/{pid}").st_uid != os.geteuid():
            return False
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{MARKER_ENV}={mark.marker}".encode() in environ.split(b"\0") or _holds(pid, mark.lock)


def members(sid: int, mark: Mark) -> list[int]:
    """Our marked processes in session ``sid`` (the recorded PID leads it: run.sh ran under setsid), in
    whatever process group of it: a child that made a group of its own is still the server's."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or entry == "1":
            continue
        fields = _stat_fields(int(entry))
        if fields is not None and fields[3] == str(sid) and is_ours(int(entry), None, mark):
            out.append(int(entry))
    return out


def signal_proven(pid: int, start: str | None, mark: Mark, sig: signal.Signals) -> bool:
    """Signal ``pid`` only if it is ours; through a pidfd, so the process checked is the one signalled."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if not is_ours(pid, start, mark):
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Record:
    """run/<node>.json as run.sh writes it: the server's PID (its session's and process group's too) and start time."""

    node: str
    name: str
    pid: int
    start: str
    labels: Mapping[str, str]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key appears twice")
    return dict(pairs)


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def read_record(path: Path, deployment: str) -> Record | str:
    """The record in ``path``, or why it is not one run.sh wrote (then nothing is signalled for it)."""
    node = path.name.removesuffix(".json")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        return "it is a symbolic link" if exc.errno == errno.ELOOP else f"unreadable ({exc.strerror})"
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return "not a regular file"
        data = handle.read(MAX_RECORD_BYTES + 1)
    try:
        record = json.loads(data, object_pairs_hook=_no_duplicates)
    except ValueError as exc:
        return f"not JSON ({exc})"
    if not isinstance(record, dict):
        return "not a JSON object"
    pid, start = record.get("pid"), record.get("start")
    if type(pid) is not int or pid <= 1:
        return f"pid {pid!r} is not a process number > 1"
    if not isinstance(start, str) or not start.isdigit() or not start.isascii():
        return f"start {start!r} is not a start time"
    if record.get("deployment") != deployment or record.get("node") != node:
        return f"it names {record.get('deployment')!r}/{record.get('node')!r}, not {deployment}/{node}"
    labels, run_labels = record.get("labels"), record.get("run_labels", {})
    if not isinstance(record.get("name"), str) or not _string_map(labels) or not _string_map(run_labels):
        return "name or labels malformed"
    return Record(node, record["name"], pid, start, {**(labels or {}), **run_labels})


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` whole through a temporary file beside it: a symlink there is replaced, never followed."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


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
        self.commands = ProcessShell()  # what the dry run prints for each verb
        self.deploy_dir = deploy_dir  # ~/.vllmgen/deployments/<name>: its name is the deployment's
        self.vllm = vllm
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # --- the records ----------------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        return self.deploy_dir / RUN_DIR

    @property
    def deployment(self) -> str:
        return self.deploy_dir.name

    def _mark(self, node: str) -> Mark:
        return Mark(marker(self.deployment, node), str(self.run_dir / f"{node}.lock"))

    def _own_run_dir(self) -> None:
        """run/ is ours, 0700 and not a symbolic link: no one else can put a link or a record there."""
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = os.lstat(self.run_dir)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise EngineError(f"{self.run_dir} is not a folder of our own: refusing to use it")
        os.chmod(self.run_dir, 0o700)

    def _entries(self) -> list[tuple[Path, Record | str]]:
        if not self.run_dir.is_dir():
            return []
        return [(path, read_record(path, self.deployment))
                for path in sorted(self.run_dir.glob("*.json")) if not path.name.startswith(".")]

    def _state(self, path: Path, record: Record | str) -> ContainerState:
        node = path.name.removesuffix(".json")
        if isinstance(record, str):
            labels = {label_names.DEPLOYMENT: self.deployment, label_names.NODE: node}
            return ContainerState(name=f"{self.deployment}-{node}", status=f"untrusted record ({record})",
                                  exit_code=None, labels=labels, image=self.vllm)
        alive = is_ours(record.pid, record.start, self._mark(node))
        child = self._children.get(record.pid)
        code = child.poll() if child is not None else None  # after the check: an exit meanwhile is seen
        alive = alive and code is None
        return ContainerState(name=record.name, status="running" if alive else "exited",
                              exit_code=None if alive else code, labels=dict(record.labels), image=self.vllm)

    def _find(self, name: str) -> tuple[Path, Record | str] | None:
        return next(((path, record) for path, record in self._entries()
                     if self._state(path, record).name == name), None)

    # --- Executor -------------------------------------------------------------------------------

    def ping(self) -> EngineInfo:
        if not os.access(self.vllm, os.X_OK):
            raise EngineError(f"the vllm executable {self.vllm} is not on this host (or not executable)")
        return EngineInfo(version=f"process runtime, {self.vllm}", api_version="-")


    def prepare_deploy_dir(self, local: Path, files: tuple[str, ...], remote: str) -> str:
        """Copy what the process reads (serve-config.yaml) and this node's scripts (run.sh, which starts
        it) into the deployment folder, each written whole and never through a symlink."""
        self.deploy_dir.mkdir(parents=True, exist_ok=True)
        # its server's scripts, its gateway's, its router's
        node_dirs = [f"nodes/{self.node}", f"nodes/{self.node}.gateway", f"nodes/{self.node}.router"]
        names = [*files, *(f"{node_dir}/{p.name}" for node_dir in node_dirs
                           for p in sorted((local / node_dir).glob("*")) if p.is_file())]
        for name in names:
            source, target = local / name, self.deploy_dir / name
            if source.resolve() == target.resolve():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_new(target, source.read_bytes(), 0o755 if os.access(source, os.X_OK) else 0o644)
        return str(self.deploy_dir)

    def inspect(self, name: str) -> ContainerState | None:
        found = self._find(name)
        return None if found is None else self._state(*found)

    def run(self, request: RunRequest) -> None:
        node = self._node_of(request)
        run_sh = self.deploy_dir / "nodes" / node / "run.sh"
        if not run_sh.is_file():
            raise EngineError(f"{run_sh} is missing: `vllmgen render` the spec, then apply again")
        self._own_run_dir()
        env = {name: os.environ[name] for name in KEPT_ENV if name in os.environ}
        env["HOME"] = self._home()  # run.sh finds run/ from $HOME: the same folder as ours
        for secret in launch(request.container).secrets:
            if not secret.from_file:  # run.sh reads a file itself; an environment secret from its source
                env[secret.from_env or secret.name] = request.secrets[secret.name]
        env[RUN_LABELS_ENV] = json.dumps(request.labels, sort_keys=True)
        try:
            child = subprocess.Popen(["/bin/bash", str(run_sh)], cwd=self.deploy_dir, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        except OSError as exc:
            raise EngineError(f"cannot start {run_sh}: {exc}") from exc
        self._children[child.pid] = child
        early = self._early_output(child)
        record = self._await_record(child, self.run_dir / f"{node}.json")
        if record is None:
            code = child.poll()
            if code == LOCK_BUSY:
                raise EngineError(f"another server of node {node} is running (started by start.sh or systemd?): "
                                  f"{early.strip()}")
            raise EngineError(f"{run_sh} exited with {code} before starting vLLM: {early.strip()}")

    def _early_output(self, child: subprocess.Popen[bytes]) -> str:
        """What run.sh says before its output goes to run/<node>.log: a missing secret, a held lock."""
        assert child.stdout is not None
        out = b""
        deadline = time.monotonic() + START_WAIT_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([child.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(child.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
        child.stdout.close()
        return out.decode(errors="replace")

    def _await_record(self, child: subprocess.Popen[bytes], path: Path) -> Record | None:
        deadline = time.monotonic() + START_WAIT_S
        while time.monotonic() < deadline:
            if path.exists() or path.is_symlink():
                record = read_record(path, self.deployment)
                if isinstance(record, Record) and record.pid == child.pid:
                    return record
            if child.poll() is not None:
                record = read_record(path, self.deployment)  # it may have written it and exec'd a quick exit
                return record if isinstance(record, Record) and record.pid == child.pid else None
            time.sleep(0.05)
        return None

    def _home(self) -> str:
        home, tail = str(self.deploy_dir.parent), f"/{DEPLOYMENTS}"
        if not home.endswith(tail):
            raise EngineError(f"{self.deploy_dir} is not a folder under ~/{DEPLOYMENTS}/, where run.sh records servers")
        return home.removesuffix(tail)

    @staticmethod
    def _node_of(request: RunRequest) -> str:
        return _stem(dict(request.container.labels), request.container.name)

    def remove(self, name: str, stop_timeout: int = 10) -> None:
        """Stop the recorded server and what is left of its group (each member proven ours), then drop the
        record. An untrusted record is dropped without signalling anything; a dead one at once."""
        found = self._find(name)
        if found is None:
            return
        path, record = found
        if isinstance(record, Record):
            self._stop(record, self._mark(record.node), max(stop_timeout, STOP_GRACE_S))
            if read_record(path, self.deployment) != record:
                return  # a new server wrote its record meanwhile: it is not the one we stopped
        path.unlink(missing_ok=True)

    def _stop(self, record: Record, mark: Mark, grace: float) -> None:
        pid, start = record.pid, record.start
        if signal_proven(pid, start, mark, signal.SIGTERM):
            self._wait(lambda: is_ours(pid, start, mark), grace, pid)
        else:  # the leader died (or never was ours): the rest of its session, if any, gets the SIGTERM
            group = members(pid, mark)
            if not group:
                return
            for member in group:
                signal_proven(member, None, mark, signal.SIGTERM)
            self._wait(lambda: bool(members(pid, mark)), MEMBERS_GRACE_S, pid)
        signal_proven(pid, start, mark, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (group := members(pid, mark)) and time.monotonic() < deadline:
            for member in group:
                signal_proven(member, None, mark, signal.SIGKILL)
            time.sleep(0.1)
        self._reap(pid)

    def _wait(self, running: Callable[[], bool], seconds: float, pid: int) -> None:
        deadline = time.monotonic() + seconds
        while running() and time.monotonic() < deadline:
            self._reap(pid)
            time.sleep(0.1)

    def _reap(self, pid: int) -> None:
        child = self._children.get(pid)
        if child is not None:
            child.poll()

    def logs(self, name: str, tail: int | None = 30, timestamps: bool = False) -> str:
        """The process's output, run/<node>.log (its own lines carry vLLM's time stamps); ``tail`` None or 0: all."""
        found = self._find(name)
        if found is None:
            return ""
        try:
            fd = os.open(self.run_dir / f"{found[0].name.removesuffix('.json')}.log", os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as handle:
                lines = handle.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-tail:]) if tail else "\n".join(lines)

    def follow(self, name: str) -> FileFollow | None:
        """The process's log file from its start, and its end (the child polled, its record proven)."""
        found = self._find(name)
        if found is None:
            return None
        path, record = found
        return FileFollow(self.run_dir / f"{path.name.removesuffix('.json')}.log",
                          lambda: self._state(path, record).running, lambda: self._state(path, record).exit_code)

    def started_at(self, name: str) -> datetime | None:
        """The recorded process's start: its start time in clock ticks after boot, on the wall clock."""
        found = self._find(name)
        return started_at(found[1].start) if found is not None and isinstance(found[1], Record) else None

    def exec(self, name: str, argv: tuple[str, ...], *, detach: bool = False,
             env: Mapping[str, str] | None = None) -> ExecResult:
        """Run ``argv`` on this host beside the process (there is no container to enter), ``vllm`` being the
        node's own executable (``vllm bench serve`` from its environment); ``env`` only in the child's."""
        if self._find(name) is None:
            raise EngineError(f"no process {name} of this deployment on this host")
        if detach:
            raise EngineError("the process runtime runs commands beside a process in the foreground only")
        words = [self.vllm if argv[0] == "vllm" else argv[0], *argv[1:]]
        try:
            done = subprocess.run(words, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, check=False)
        except OSError as exc:
            raise EngineError(f"{words[0]}: {exc.strerror or exc}") from exc
        return ExecResult(done.returncode, done.stdout + done.stderr)

    def list_containers(self, deployment: str) -> list[ContainerState]:
        if deployment != self.deployment:
            return []
        return [self._state(path, record) for path, record in self._entries()]

    def serving(self, name: str) -> bool:
        state = self.inspect(name)
        return bool(state and state.running)

    def close(self) -> None:
        return None


def _stem(labels: Mapping[str, str], name: str) -> str:
    """run/<stem>.json: the node's name; ``<node>.gateway`` / ``<node>.router`` for the gateway / router on that node (node names are DNS
    labels, without dots: no clash with a node's own record). Its scripts are in nodes/<stem>/."""
    node = labels.get(label_names.NODE, name)
    role = labels.get(label_names.ROLE)
    return f"{node}.{role}" if role in ("gateway", "router") else node


def engine_for(plan: Plan, node: NodePlan, endpoint: str | None, host: hosts.Host, *,
               timeout: float = 0) -> ProcessExecutor:
    """The process target's engine for one node (the registry names it): processes on this host, their
    records under ~/.vllmgen/deployments/<name>. ``endpoint`` and ``timeout`` are the Docker target's."""
    return ProcessExecutor(node.name, Path.home() / DEPLOYMENTS / plan.name, node.vllm or "vllm", host)
