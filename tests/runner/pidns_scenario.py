"""One tamper case of the process runtime, run as PID 1 of a PID namespace of its own
(`unshare -pf --mount-proc python pidns_scenario.py CASE WORKDIR`, by test_process_integrity.py).

It starts bystanders (a child of its own, one in its own session, one carrying our marker in a group of
its own), plays the case against the rendered start.sh/stop.sh (WORKDIR/build/...) and the
ProcessExecutor, and asserts: no bystander is signalled, PID 1 (this process: a SIGTERM handler
notes any signal) is never signalled, no server is left behind, nothing is reported running that is
not. A bug here can only hurt this namespace. Exit 0: the case held; otherwise the assertion's text.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from vllmgen.render.compile import compile_file
from vllmgen.runner.executor import EngineError, RunRequest
from vllmgen.targets.process.procexec import ProcessExecutor, start_time

DEPLOYMENT, NODE, NAME = "fake-proc", "n0", "fake-proc-n0"
MARK = f"VLLMGEN_NODE={DEPLOYMENT}/{NODE}"
signalled: list[int] = []


def note(signum: int, _frame: object) -> None:
    signalled.append(signum)


for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
    signal.signal(sig, note)  # PID 1 ignores signals it has no handler for: these make an attempt visible

work = Path(sys.argv[2])
home = work / "home"
build = work / "build" / DEPLOYMENT
deploy = home / ".vllmgen" / "deployments" / DEPLOYMENT
run_dir = deploy / "run"
record = run_dir / f"{NODE}.json"
os.environ["HOME"] = str(home)  # the executor's ~ too: nothing is written to this machine's home
env = {"PATH": os.environ["PATH"], "HOME": str(home), "FAKE_KEY": "key-123", "AWS_SECRET_ACCESS_KEY": "unrelated"}


def sh(script: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(build / "nodes" / NODE / script)], capture_output=True, text=True, env=env,
                          timeout=timeout)


def executor() -> ProcessExecutor:
    return ProcessExecutor(NODE, deploy, os.environ["FAKE_VLLM"])


def request() -> RunRequest:
    container = compile_file(work / "spec.yaml").plan.node(NODE).container
    return RunRequest(container, str(deploy), {"VLLM_API_KEY": "key-123"})


def marked() -> list[int]:
    """Live processes of this namespace carrying our marker (zombies are gone already)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and start_time(int(entry)) is not None:
            try:
                if MARK.encode() in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    out.append(int(entry))
            except OSError:
                pass
    return out


def pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def leaders() -> list[int]:
    """Servers: marked processes leading their own session (run.sh under setsid, then vLLM); not the
    stand-in's worker, which leads a process group of its own inside the server's session."""
    out = []
    for pid in marked():
        try:
            if os.getsid(pid) == pid:
                out.append(pid)
        except ProcessLookupError:
            pass
    return out


def titled(leader: int, title: bytes) -> int | None:
    """The stand-in's process of that title (its engine core, its worker) in the leader's session, marker or not."""
    for entry in os.listdir("/proc"):
        try:
            if (entry.isdigit() and start_time(int(entry)) is not None and os.getsid(int(entry)) == leader
                    and Path(f"/proc/{entry}/cmdline").read_bytes().startswith(title + b"\0")):
                return int(entry)
        except OSError:
            pass
    return None


def engine(leader: int) -> int | None:
    """The stand-in's engine core in the leader's group, up and titled (not a passing helper of a python3 shim)."""
    pid = titled(leader, b"VLLM::EngineCore")
    return pid if pid is not None and pgid(pid) == leader else None


def session(leader: int) -> list[int]:
    """Live processes of the session the leader made, whatever their title, group or environment."""
    out = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and start_time(int(entry)) is not None and os.getsid(int(entry)) == leader:
                out.append(int(entry))
        except OSError:
            pass
    return out


def wait_for(what, seconds: float = 20.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.05)
    return bool(what())


def write_record(pid: object, start: object, **extra: object) -> None:
    """A record in run.sh's own layout (the field order stop.sh reads), with the values given."""
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fields = {"pid": pid, "start": start, "deployment": DEPLOYMENT, "node": NODE, "name": NAME,
              "labels": {"io.vllmgen.deployment": DEPLOYMENT, "io.vllmgen.node": NODE}, **extra}
    record.write_text(json.dumps(fields) + "\n")


bystanders = [
    subprocess.Popen(["sleep", "300"]),
    subprocess.Popen(["sleep", "300"], start_new_session=True),
]
impostor = subprocess.Popen(["sleep", "300"], start_new_session=True, env={**env, "VLLMGEN_NODE": "fake-proc/n0"})


def untouched() -> None:
    for child in bystanders:
        assert child.poll() is None, f"bystander {child.args} was killed ({child.returncode})"
    assert not signalled, f"PID 1 was signalled: {signalled}"


def nothing_left() -> None:
    assert wait_for(lambda: marked() == [impostor.pid] if impostor.poll() is None else marked() == [], 15), \
        f"left behind: {marked()}"


def case_pid1() -> None:
    """A record naming PID 1 with its real start time (anyone can read it), and the old PID file."""
    write_record(1, start_time(1))
    (run_dir / f"{NODE}.pid").write_text(f"1 {start_time(1)}\n")
    stopped = sh("stop.sh")
    assert stopped.returncode == 1 and "nothing was signalled" in stopped.stderr, stopped
    state = executor().inspect(NAME)
    assert state is not None and not state.running and "untrusted record" in state.status, state
    executor().remove(NAME)
    assert not record.exists()


def case_bad_values() -> None:
    """pid -1, 0, a string, a float, a bool; start null, a word: never signalled, never running, down is quick."""
    start = start_time(os.getpid())
    for pid, when in ((-1, None), (-1, start), (0, start), ("123", start), (2.0, start), (True, start),
                      (bystanders[0].pid, None), (bystanders[0].pid, "x1")):
        write_record(pid, when)
        stopped = sh("stop.sh")
        assert stopped.returncode == 1 and "nothing was signalled" in stopped.stderr, (pid, when, stopped)
        listed = executor().list_containers(DEPLOYMENT)
        assert [s.running for s in listed] == [False], (pid, when, listed)
        began = time.monotonic()
        executor().remove(listed[0].name)
        assert time.monotonic() - began < 2, "down spent its grace on a record that names no process"
        assert not record.exists()
        untouched()


def case_foreign() -> None:
    """A live process's real PID and start time: not ours (no marker), so never signalled."""
    for victim in (bystanders[0], bystanders[1]):
        write_record(victim.pid, start_time(victim.pid))
        stopped = sh("stop.sh")
        assert stopped.returncode == 0 and "is not running" in stopped.stdout, stopped
        write_record(victim.pid, start_time(victim.pid))
        state = executor().inspect(NAME)
        assert state is not None and not state.running, state
        began = time.monotonic()
        executor().remove(NAME)
        assert time.monotonic() - began < 2
        untouched()


def case_symlinks() -> None:
    """Links planted in run/ are replaced or refused, never written through; a linked run/ is refused."""
    victim = work / "victim"
    victim.write_text("precious\n")
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    record.symlink_to(victim)
    state = executor().inspect(NAME)
    assert state is not None and "symbolic link" in state.status and not state.running, state
    assert sh("stop.sh").returncode == 1
    started = sh("start.sh")
    assert started.returncode == 0, started
    assert victim.read_text() == "precious\n" and not record.is_symlink()
    assert sh("stop.sh").returncode == 0
    (run_dir / f"{NODE}.log").unlink()
    (run_dir / f"{NODE}.log").symlink_to(victim)
    started = sh("start.sh")
    assert started.returncode == 1 and "symbolic link" in started.stderr, started
    try:
        executor().run(request())
        raise AssertionError("run through a linked log")
    except EngineError as exc:
        assert "symbolic link" in str(exc), exc
    assert victim.read_text() == "precious\n"
    (run_dir / f"{NODE}.log").unlink()
    other = work / "elsewhere"
    other.mkdir(mode=0o700)
    os.rename(run_dir, work / "old-run")
    run_dir.symlink_to(other)
    started = sh("start.sh")
    assert started.returncode == 1 and "not a folder of our own" in started.stderr, started
    run_dir.unlink()
    untouched()


def case_leader_died() -> None:
    """The recorded leader dies and leaves its group (vLLM's engine): stop.sh and down stop the rest."""
    for stop in ("stop.sh", "executor"):
        if stop == "stop.sh":
            assert sh("start.sh").returncode == 0
        else:
            executor().run(request())
        pid = json.loads(record.read_text())["pid"]
        assert wait_for(lambda: engine(pid) is not None), marked()  # the stand-in's engine child is up
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: start_time(pid) is None)
        assert wait_for(lambda: titled(pid, b"VLLM::Worker") is not None), session(pid)
        state = executor().inspect(NAME)
        assert state is not None and not state.running, state  # the server is gone: not reported running
        if stop == "stop.sh":
            stopped = sh("stop.sh")
            assert stopped.returncode == 0 and "stopped node n0" in stopped.stdout, stopped
        else:
            executor().remove(NAME)
        assert wait_for(lambda: session(pid) == []), session(pid)  # the engine and its worker too
        assert wait_for(lambda: marked() == [impostor.pid]), marked()  # the impostor leads a group of its own
        untouched()


def case_engine_left() -> None:
    """The API server logs that its engine failed and exits, leaving its engine core (titled over its
    environment, as vLLM's is) and a worker in a group of its own: down and stop.sh stop both, each proven
    ours by the marker that run.sh keeps in their environment."""
    for stop in ("executor", "stop.sh"):
        if stop == "stop.sh":
            assert sh("start.sh").returncode == 0
        else:
            executor().run(request())
        pid = json.loads(record.read_text())["pid"]
        assert wait_for(lambda: start_time(pid) is None), session(pid)  # the API server gave up
        assert wait_for(lambda: engine(pid) is not None and titled(pid, b"VLLM::Worker") is not None), session(pid)
        core, worker = engine(pid), titled(pid, b"VLLM::Worker")
        assert pgid(worker) == worker != pid  # type: ignore[arg-type]
        for left in (core, worker):
            assert MARK.encode() in Path(f"/proc/{left}/environ").read_bytes().split(b"\0"), left
        state = executor().inspect(NAME)
        assert state is not None and not state.running, state
        if stop == "stop.sh":
            stopped = sh("stop.sh")
            assert stopped.returncode == 0 and "stopped node n0" in stopped.stdout, stopped
        else:
            executor().remove(NAME)
        assert wait_for(lambda: session(pid) == []), session(pid)
        assert not record.exists()
        untouched()


def case_exits_at_once() -> None:
    """vLLM dies at once (FAKE_VLLM_EXIT in the plan's env): recorded as exited, never as running."""
    ex = executor()
    ex.run(request())
    assert wait_for(lambda: not ex.inspect(NAME).running), ex.inspect(NAME)  # type: ignore[union-attr]
    state = ex.inspect(NAME)
    assert state is not None and state.status == "exited" and state.exit_code == 2, state
    assert executor().inspect(NAME).running is False  # type: ignore[union-attr]  # another runner: no child
    began = time.monotonic()
    ex.remove(NAME)
    assert time.monotonic() - began < 2
    sh("start.sh")
    assert wait_for(lambda: not executor().inspect(NAME).running)  # type: ignore[union-attr]
    stopped = sh("stop.sh")
    assert stopped.returncode == 0 and "is not running" in stopped.stdout, stopped
    untouched()


def case_race() -> None:
    """Two start.sh at once, and start.sh against apply's executor: one server each round."""
    for _ in range(int(os.environ.get("ROUNDS", "5"))):
        results: list[object] = []
        first = threading.Thread(target=lambda: results.append(sh("start.sh")))
        second = threading.Thread(target=lambda: results.append(sh("start.sh")))
        first.start(), second.start()
        first.join(), second.join()
        assert all(r.returncode == 0 for r in results), results  # type: ignore[attr-defined]
        said = [r.stdout for r in results if "started node n0" in r.stdout]  # type: ignore[attr-defined]
        assert len(said) == 1, results  # the other: "running already", from start.sh or from run.sh's lock
        assert wait_for(lambda: len(leaders()) == 1 + (impostor.poll() is None)), leaders()
        time.sleep(0.3)
        assert len(leaders()) == 2, leaders()  # the impostor and one server
        assert sh("stop.sh").returncode == 0
        assert wait_for(lambda: leaders() == [impostor.pid]), leaders()
    assert sh("start.sh").returncode == 0
    try:
        executor().run(request())
        raise AssertionError("apply started a second server beside start.sh's")
    except EngineError as exc:
        assert "another server of node n0 is running" in str(exc), exc
    assert len(leaders()) == 2
    executor().remove(NAME)
    untouched()


try:
    globals()[f"case_{sys.argv[1]}"]()
    nothing_left()
    untouched()
finally:
    for child in (*bystanders, impostor):
        child.kill()
print("ok")
