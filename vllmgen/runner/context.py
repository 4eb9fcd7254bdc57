"""What apply's step helpers (changes, cluster_step, servers, gateway_step, the Docker target's daemon_step)
are given: one small, explicit context that ``steps.Apply`` builds and passes, so that no helper reaches
back into the step runner.

Its fields are what every step reads (the plan, the executors in scope, the HTTP client, the options, where progress goes,
the secrets once preflight has resolved them); its methods the few things every step does (run a call per
node, turn an engine error into a step failure, record an outcome, stop a wait when a container died).
The context is frozen: preflight gives apply a new one with the secrets filled in. ``watches`` and
``outcomes`` are apply's own dict and list, shared: the head/workers steps add what they start, every step
adds outcomes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from vllmgen.doctor.docker import PERMISSION_FIX, START_FIX, TOOLKIT_FIX, classify_error
from vllmgen.errors import RunnerError
from vllmgen.plan import label_names
from vllmgen.plan.plan import NodePlan, Plan
from vllmgen.runner import identity, phases, startup
from vllmgen.runner.executor import EngineError, Executor, RunRequest
from vllmgen.runner.host import HostError
from vllmgen.runner.http import HttpClient
from vllmgen.runner.progress import Progress, fail
from vllmgen.runner.watch import Watch
from vllmgen.targets import registry

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    timeout: float = 1200.0  # seconds, for each wait (cluster, model load)
    gpus: bool = True  # False: start containers without --gpus (a rehearsal on hosts without GPUs)
    base_image: str | None = None  # build FROM this instead of the spec's base
    router_base_image: str | None = None  # build the router FROM this instead of router.base_image
    remote_dir: str = ".vllmgen/deployments"  # under $HOME on ssh:// nodes: the deployment files they mount
    confirm: Callable[[str], bool] = lambda question: False  # asked before daemon.json is rewritten
    confirm_replace: Callable[[str], bool] = lambda question: True  # asked before running containers are stopped
    poll: float = 3.0  # seconds between probes of a slow wait (the Ray cluster view: a python exec)
    health_poll: float = 1.0  # /health when the server's log has not said it serves (runner.watch)
    dry_run: bool = False  # no secret fingerprint (no key file is made): the label shows a placeholder
    daemon_timeout: float = 60.0  # seconds Docker has to answer after a restart, before its old file is put back


@dataclass(frozen=True)
class Outcome:
    step: str
    node: str
    result: str  # created, replaced, unchanged, built, merged, started, ok, skipped
    detail: str = ""


def engine_hint(error: str) -> str | None:
    """What to do about an engine's error, where doctor knows the fault."""
    kind = classify_error(error)
    if kind == "permission_denied":
        return PERMISSION_FIX
    if kind == "no_daemon":
        return START_FIX + "; or check the node's docker_host"
    if kind == "no_gpu_driver":
        return TOOLKIT_FIX + "; or rehearse without GPUs: --no-gpus"
    return None


@dataclass(frozen=True)
class StepContext:
    plan: Plan
    executors: Mapping[str, Executor]  # the nodes in scope
    http: HttpClient  # every HTTP probe (health, models, chat, the key checks), from this machine
    deploy_dir: Path  # build/<name>/ on this machine
    options: Options
    progress: Progress
    outcomes: list[Outcome]  # the report's (record adds to it)
    watches: Mapping[str, Watch]  # node -> its container or process, followed since this run started it
    secrets: Mapping[str, str] = field(default_factory=dict)  # resolved by preflight
    fingerprint: str = identity.NO_SECRETS  # of the secret values (identity.secrets_fingerprint)

    @property
    def docker(self) -> bool:
        """A Docker target: daemon.json, images built on the nodes."""
        return registry.target(self.plan.runtime).docker

    def record(self, step: str, node: str, result: str, detail: str = "") -> None:
        self.outcomes.append(Outcome(step, node, result, detail))
        self.progress.say(f"{step}: {result}" + (f" ({detail})" if detail else ""), node)

    def each(self, names: tuple[str, ...], fn: Callable[[str], T]) -> list[T]:
        """Run ``fn`` per node; at once when every executor allows it. All failures are reported."""
        concurrent = len(names) > 1 and all(self.executors[n].concurrent for n in names)
        if not concurrent:
            return [fn(name) for name in names]
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            futures = [pool.submit(fn, name) for name in names]
            errors = [error for f in futures if (error := f.exception()) is not None]
        if errors:
            if len(errors) == 1:
                raise errors[0]
            raise RunnerError("\n".join(str(error) for error in errors))
        return [f.result() for f in futures]

    def engine(self, node: str, step: str, fn: Callable[[], T], todo: str | None = None) -> T:
        """``fn()``; an engine's or a host's error becomes the step's failure on ``node``, with advice."""
        try:
            return fn()
        except EngineError as exc:
            raise fail(node, step, str(exc), engine_hint(str(exc)) or todo) from exc
        except HostError as exc:
            raise fail(node, step, str(exc)) from exc

    def run_request(self, name: str, image_id: str, node_dir: str = "") -> RunRequest:
        """Node ``name``'s container, ready to start from ``image_id``, with its run labels."""
        container = self.plan.node(name).container
        labels = identity.run_labels(dict(container.labels)[label_names.CONFIG_HASH], image_id, self.fingerprint)
        return RunRequest(container, node_dir, self.secrets, self.options.gpus, labels)

    def alive(self, step: str, todo: Callable[[NodePlan], str] | None = None) -> None:
        """Raise, with its logs, if a container in scope is no longer running."""
        for name, executor in self.executors.items():
            node = self.plan.node(name)
            container = node.container.name
            state = self.engine(name, step, lambda e=executor, c=container: e.inspect(c))  # type: ignore[misc]  # mypy cannot type a lambda with defaults
            if state is None or not state.running:
                how = "is gone" if state is None else f"exited (exit code {state.exit_code})"
                advice = todo(node) if todo else "read its log below; then `vllmgen apply` again"
                raise fail(name, step, f"{container} {how}", advice,
                           executor.logs(container, tail=15) if state is not None else None)

    def head_logs(self) -> str:
        head = self.plan.head
        return self.executors[head.name].logs(head.container.name, tail=20)

    def phase(self) -> str:
        """The head's start phase now, for the progress line of a long wait."""
        watch = self.watches.get(self.plan.head.name)
        if watch is not None:
            return "phase: " + watch.phase()
        return "phase: " + phases.current(startup.read_log(self.executors[self.plan.head.name],
                                                            self.plan.head.container.name))

    def watching(self) -> list[Watch]:
        """What this run started and follows, the head first: every wait stops on their failures."""
        return sorted(self.watches.values(), key=lambda w: w.node != self.plan.head.name)
