"""Which executor drives which node: the scope (``--node NAME`` or ``--all``) and each node's endpoint.

The same for apply, status and down. ``--node NAME`` runs on that node's host: the local engine
(``DOCKER_HOST`` or the default socket). ``--all`` reaches each node through its ``docker_host``
(``ssh://user@host``, ``tcp://host:2376``); a node without one is driven through the local engine
only when its address is one of this machine's, and otherwise the run is refused before anything
happens: a deployment meant for two hosts must never start on the control machine instead.
"""

from __future__ import annotations

import importlib
import ipaddress
import socket
from collections.abc import Callable, Sequence

from vllmgen.plan.plan import Plan
from vllmgen.runner import host as hosts
from vllmgen.runner import ssh
from vllmgen.runner.dryrun import DryRunHttp, FreshHost, Recorder, printing
from vllmgen.runner.executor import ClusterView, Executor
from vllmgen.runner.http import DirectHttp, HttpClient
from vllmgen.spec.addresses import url_host
from vllmgen.targets import registry


def scope(plan: Plan, node: str | None, all_nodes: bool) -> tuple[str, ...]:
    """The nodes to act on; ValueError (a usage error) when the choice is missing or wrong."""
    if node and all_nodes:
        raise ValueError("give --node NAME or --all, not both")
    if node:
        names = [n.name for n in plan.nodes]
        if node not in names:
            raise ValueError(f"the spec has no node {node!r}; its nodes are {', '.join(names)}")
        return (node,)
    if not all_nodes:
        raise ValueError("say where to run: --node NAME (on that host) or --all (every node's docker_host)")
    return tuple(n.name for n in plan.nodes)


def is_local_address(address: str) -> bool:
    """Is ``address`` (an IP, or a name resolving to one) an address of this machine (this namespace)?
    Tried by binding a socket to it, which only a local address allows."""
    try:
        infos = socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, _, _, _, sockaddr in infos:
        if ipaddress.ip_address(sockaddr[0]).is_unspecified:
            continue
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((sockaddr[0], 0, *sockaddr[2:]))
            return True
        except OSError:
            continue
    return False


def require_endpoints(plan: Plan, names: Sequence[str], spec: str = "SPEC") -> None:
    """``--all``: every node in ``names`` has a docker_host or is this machine; else ValueError saying how to fix it."""
    if not registry.target(plan.runtime).docker:  # no docker_host to reach a node through
        remote = [node for node in plan.nodes if node.name in names and not is_local_address(node.address)]
        if remote:
            listed = ", ".join(f"{node.name} ({node.address})" for node in remote)
            raise ValueError(
                f"--all with runtime.kind: process starts every node's process on this machine, and {listed} "
                f"{'is' if len(remote) == 1 else 'are'} not this machine; nothing was done. Processes are not "
                f"started over ssh yet: run `vllmgen COMMAND {spec} --node NAME` on each node's own host")
        return
    missing = [node for node in plan.nodes
               if node.name in names and not node.docker_host and not is_local_address(node.address)]
    if not missing:
        return
    index = {node.name: i for i, node in enumerate(plan.nodes)}
    listed = ", ".join(f"{node.name} ({node.address})" for node in missing)
    first = missing[0]
    raise ValueError(
        f"--all reaches each node through its docker_host, and {listed} "
        f"{'has' if len(missing) == 1 else 'have'} none and {'is' if len(missing) == 1 else 'are'} not this machine; "
        f"nothing was done. Add one to the spec (nodes[{index[first.name]}].docker_host: ssh://USER@{url_host(first.address)}), "
        f"or run `vllmgen COMMAND {spec} --node NAME` on each node's own host")


def executors(plan: Plan, names: Sequence[str], *, remote: bool, dry_run: Recorder | None = None,
              daemon_json_path: str = hosts.daemon_json.DEFAULT_PATH,
              restart_command: tuple[str, ...] = hosts.DEFAULT_RESTART,
              timeout: float | None = None) -> dict[str, Executor]:
    """One executor per node in ``names``: the engine the target's registry line names (a dry run: its printing,
    into the recorder); ``remote``: through each node's docker_host; ``timeout``: per engine call, where it has one."""
    target = registry.target(plan.runtime)
    if target.engine is None:
        raise ValueError(f"runtime.kind: {plan.runtime} is not run from here: apply the rendered files with "
                         "its own tools (see build/<name>/README.md)")
    make = engine_factory(target.engine)
    out: dict[str, Executor] = {}
    if remote and dry_run is None:  # every host's one ssh connection, opened now and side by side
        ssh.CONNECTIONS.open_docker_hosts((plan.node(name).docker_host for name in names), docker=target.docker)
    whole = ClusterView(sum(n.gpus for n in plan.nodes), tuple(sorted(n.address for n in plan.nodes)))
    for name in names:
        node = plan.node(name)
        endpoint = node.docker_host if remote else None
        host = hosts.for_endpoint(endpoint, daemon_json_path=daemon_json_path, restart_command=restart_command)
        engine = make(plan, node, endpoint, host, **({} if timeout is None else {"timeout": timeout}))
        # a dry run: the target's engine says what it would run; a fresh host in memory answers, and no host is reached
        out[name] = engine if dry_run is None else printing(FreshHost(name, endpoint, host, cluster=whole),
                                                            engine.commands, dry_run, plan.secrets)
    return out


def http_client(plan: Plan, dry_run: Recorder | None = None) -> HttpClient:
    """The one HTTP client of a run's probes: from this machine, or the dry run's (printed, never sent)."""
    return DirectHttp() if dry_run is None else DryRunHttp(dry_run, plan)


def engine_factory(path: str) -> Callable[..., Executor]:
    """The callable a registry line names ("module:name"): imported only when the runner needs that target,
    so the compile stage never loads an engine or its SDK."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def close(executors: dict[str, Executor]) -> None:
    for executor in executors.values():
        executor.close()
