"""The daemon-json step: merge the plan's keys into each node's daemon.json without ever leaving
Docker down.

1. Every node in scope is read, merged and the merged file checked first (``dockerd --validate``
   where the installed Docker has it, since 23.0; else vllmgen's own check of the keys it writes):
   a file vllmgen cannot merge (not JSON, a value of another type) or that would not load stops the
   run there, before anything is written anywhere.
2. One question lists every node's change (one prompt per run, not one per node thread).
3. Per node, in parallel: backed up, written (through a symlink, mode and owner kept), Docker
   restarted and waited for. A daemon that does not come back gets its previous file again and a
   second restart; the error tells both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from vllmgen.runner.context import StepContext
from vllmgen.runner.executor import EngineError
from vllmgen.runner.host import HostError
from vllmgen.runner.progress import WaitTimeout, fail, wait_for
from vllmgen.targets.docker import daemon_json
from vllmgen.targets.docker.engine import DockerEngine, docker_engine

STEP = "daemon-json"


@dataclass(frozen=True)
class Change:
    node: str
    path: str
    merge: daemon_json.Merge
    checked: str = ""  # how the merged file was checked


def run(context: StepContext, names: tuple[str, ...], merges: Mapping[str, Change] | None = None) -> None:
    """The step on the nodes ``names``; ``merges``: as the plan read them (else read now)."""
    if not context.plan.daemon:
        for name in names:
            context.record(STEP, name, "skipped", "the spec sets no daemon.json keys")
        return
    if merges is None:
        merges = read_all(context, names)
    merges = {name: merges[name] for name in names}
    changes = [change for change in merges.values() if change.merge.changed]
    for change in merges.values():
        if not change.merge.changed:
            context.record(STEP, change.node, "unchanged", change.path)
    if not changes:
        return
    changes = context.each(tuple(c.node for c in changes), lambda name: _check(context, merges[name]))
    _refuse_restart_under_a_group(context, changes)
    if not context.options.confirm(question(changes)):
        listed = "; ".join(f"{c.node}: {c.path} needs {', '.join(c.merge.changes)}" for c in changes)
        raise fail(changes[0].node if len(changes) == 1 else None, STEP,
                   f"not changed (no confirmation): {listed}",
                   "rerun with --yes, or merge build/<name>/daemon.json by hand and restart Docker")
    by_node = {change.node: change for change in changes}
    context.each(tuple(by_node), lambda name: _write_and_restart(context, by_node[name]))


def _refuse_restart_under_a_group(context: StepContext, changes: list[Change]) -> None:
    """A restart stops the node's containers; under ``--node``, one node of a running multi-node group
    would drop out of it alone (the same reason apply never replaces one such container alone)."""
    if len(context.plan.nodes) == 1 or len(context.executors) == len(context.plan.nodes):
        return
    for change in changes:
        container = context.plan.node(change.node).container.name
        state = context.engine(change.node, STEP, lambda c=container, n=change.node: context.executors[n].inspect(c))  # type: ignore[misc]  # mypy cannot type a lambda with defaults
        if state is not None and state.running:
            raise fail(change.node, STEP,
                       f"{change.path} needs {', '.join(change.merge.changes)}, and restarting Docker would stop"
                       f" {container}, one node of a {len(context.plan.nodes)}-node group, alone; nothing was written",
                       "apply with --all (the whole group restarts together), or `vllmgen down SPEC --node NAME` on"
                       " every node first")


def read_all(context: StepContext, names: tuple[str, ...]) -> dict[str, Change]:
    """Every node's daemon.json read and merged in memory; nothing written."""
    return dict(zip(names, context.each(names, lambda name: _read(context, name)), strict=True))


def question(changes: list[Change]) -> str:
    lines = [f"  {c.node}: {c.path} ({', '.join(c.merge.changes)})" for c in changes]
    return ("daemon.json changes:\n" + "\n".join(lines) + "\nDocker restarts on each of these nodes to load it,"
            " which stops containers without a restart policy. Write and restart?")


def _read(context: StepContext, name: str) -> Change:
    executor = docker_engine(context.executors[name])
    path = executor.host.daemon_json_path
    current = context.engine(name, STEP, executor.read_daemon_json)
    try:
        return Change(name, path, daemon_json.merge(current, context.plan.daemon, f"{path} on {name}"))
    except daemon_json.DaemonJsonError as exc:
        raise fail(name, STEP, str(exc)) from exc


def _check(context: StepContext, change: Change) -> Change:
    """The change, with how its merged file was checked; a RunnerError (nothing written) when it would not load."""
    executor = docker_engine(context.executors[change.node])
    valid, words = context.engine(change.node, STEP, lambda: executor.validate_daemon_json(change.merge.text))
    if valid is False:
        raise fail(change.node, STEP, f"the merged {change.path} would not load: {words}; nothing was written",
                   "fix docker.daemon in the spec (or the key on the host), then apply again")
    if valid:
        return replace(change, checked="dockerd --validate: configuration OK")
    problem = daemon_json.own_check(change.merge.merged, context.plan.daemon, f"the merged {change.path}")
    if problem:
        raise fail(change.node, STEP, problem + "; nothing was written",
                   "fix the value in the spec or on the host, then apply again")
    return replace(change, checked="the keys vllmgen writes checked (this dockerd has no --validate)")


def _write_and_restart(context: StepContext, change: Change) -> None:
    name, path, merge = change.node, change.path, change.merge
    executor = docker_engine(context.executors[name])
    backup = daemon_json.backup_name(path) if merge.original is not None else None
    context.engine(name, STEP, lambda: executor.write_daemon_json(merge.text, backup))
    context.progress.say(f"{STEP}: wrote {path}" + (f" (backup {backup})" if backup else "") + f"; {change.checked}", name)
    why = _restart_and_wait(context, executor)
    if why is None:
        context.record(STEP, name, "merged", ", ".join(merge.changes))
        return
    context.progress.say(f"{STEP}: {why}; putting the previous {path} back", name)
    kept = f" (a copy stays at {backup})" if backup else ""
    try:
        executor.restore_daemon_json(merge.original)
    except (EngineError, HostError) as exc:
        by_hand = f"cp {backup} {path}" if backup else f"rm {path}"
        raise fail(name, STEP, f"Docker did not come back with the merged {path} ({why}), and putting the previous"
                   f" file back failed: {exc}", f"restore it by hand ({by_hand}), then restart Docker") from exc
    again = _restart_and_wait(context, executor)
    previous = "the previous file" if merge.original is not None else "no file (as before)"
    if again is None:
        raise fail(name, STEP, f"Docker did not come back with the merged {path}; vllmgen restored {previous}{kept}"
                   f" and restarted Docker, which answers again. What failed: {why}",
                   "fix docker.daemon in the spec (Docker's log names the key), then apply again")
    raise fail(name, STEP, f"Docker did not come back with the merged {path}; vllmgen restored {previous}{kept}"
               f" and restarted Docker, and it still does not answer ({again}). What failed first: {why}",
               "check `journalctl -u docker` on the node; the file is as it was before this apply")


def _restart_and_wait(context: StepContext, executor: DockerEngine) -> str | None:
    """None once Docker answers again; else what went wrong."""
    try:
        executor.restart_daemon()
    except (EngineError, HostError) as exc:
        return f"the restart failed: {exc}"

    def answers() -> tuple[bool | None, str]:
        try:
            info = executor.ping()
            return True, f"Docker {info.version} answers"
        except EngineError as exc:
            return None, str(exc)

    try:
        wait_for(context.progress, "Docker to come back after the restart", answers,
                 timeout=context.options.daemon_timeout, interval=1, node=executor.node)
    except WaitTimeout as exc:
        return f"Docker did not answer within {exc.waited:.0f}s ({exc.last})"
    return None
