"""Which executor drives which node: the scope (``--node NAME`` or ``--all``) and each node's endpoint.

``--node NAME`` runs on that node's host: the local engine (``DOCKER_HOST`` or the default socket).
``--all`` (and ``status``/``down`` of every node) reaches each node through its ``docker_host``
(``ssh://user@host``, ``tcp://host:2376``), the local engine where it has none.
"""

from __future__ import annotations

from collections.abc import Sequence

from vllmgen.plan import Plan
from vllmgen.runner import host as hosts
from vllmgen.runner.dryrun import DryRunExecutor, Recorder
from vllmgen.runner.executor import ClusterView, Executor
from vllmgen.runner.sdk import DockerSdkExecutor


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


def executors(plan: Plan, names: Sequence[str], *, remote: bool, dry_run: Recorder | None = None,
              daemon_json_path: str = hosts.daemon_json.DEFAULT_PATH,
              restart_command: tuple[str, ...] = hosts.DEFAULT_RESTART) -> dict[str, Executor]:
    """One executor per node in ``names``; ``remote``: through each node's docker_host."""
    out: dict[str, Executor] = {}
    whole = ClusterView(sum(n.gpus for n in plan.nodes), tuple(sorted(n.address for n in plan.nodes)))
    for name in names:
        node = plan.node(name)
        endpoint = node.docker_host if remote else None
        host = hosts.for_endpoint(endpoint, daemon_json_path=daemon_json_path, restart_command=restart_command)
        if dry_run is not None:
            out[name] = DryRunExecutor(
                name, endpoint, dry_run, host=host,
                assume_cluster=whole,
                assume_served=plan.endpoint.served_name, assume_api_key=plan.endpoint.api_key is not None,
            )
        else:
            out[name] = DockerSdkExecutor(name, endpoint, host)
    return out


def close(executors: dict[str, Executor]) -> None:
    for executor in executors.values():
        executor.close()
