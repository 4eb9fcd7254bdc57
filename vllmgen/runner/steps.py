"""The ordered steps of ``apply``, computed from a Plan and run through Executors (``down`` is runner.down).

    preflight    engines answer; GPUs present; the deployment folder matches the spec; secrets resolve
    daemon-json  merge the plan's keys into each host's daemon.json; restart Docker only if it changed
    image        build the generated Dockerfile on each node (skipped when the image-hash label matches)
    head         start the head container (left alone when its config-hash label matches the plan) and
                 follow its output and exit from then on (runner.watch): every later wait reads them
    workers      start the workers, in parallel
    cluster      ray: every node and GPU in `ray.cluster_resources()`; mp: the followers joined (/health)
    serve        ray: `vllm serve` exec'd in the head, detached, its output in `docker logs`
    verify       /health, /v1/models, one chat completion, the API key enforced

Every step runs for the nodes in scope (``--node NAME`` or ``--all``) and reports per node:
created, replaced, unchanged, ... A second apply on a healthy deployment reports only
"unchanged" and "ok".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from vllmgen.doctor.docker import PERMISSION_FIX, START_FIX, TOOLKIT_FIX, classify_error
from vllmgen.errors import RunnerError
from vllmgen.plan import label_names
from vllmgen.plan.plan import NodePlan, Plan
from vllmgen.runner import changes, cluster_step, gateway_step, identity, phases, secrets, servers, startup, verify
from vllmgen.runner.executor import (
    IMAGE_HASH_LABEL,
    SERVE_WRAPPER,
    EngineError,
    Executor,
    RunRequest,
    dockerfile_for,
    image_hash,
)
from vllmgen.runner.host import HostError
from vllmgen.runner.http import HttpClient
from vllmgen.runner.progress import Progress, fail
from vllmgen.runner.watch import Watch
from vllmgen.targets import registry
from vllmgen.targets.docker import daemon_step
from vllmgen.targets.docker.engine import docker_engine

T = TypeVar("T")
HASH_LABEL = label_names.CONFIG_HASH
DEPLOYMENT_LABEL = label_names.DEPLOYMENT
NODE_LABEL = label_names.NODE
UNCHANGED = ("unchanged", "ok", "skipped")


@dataclass(frozen=True)
class Step:
    name: str
    nodes: tuple[str, ...]
    title: str


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


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    startup: list[dict[str, Any]] = field(default_factory=list)  # per serving node: startup.report

    @property
    def changed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.result not in UNCHANGED]

    def as_dict(self, planned: changes.Changes | None = None) -> dict[str, Any]:
        return {"plan": planned.as_dict() if planned else None, "changed": bool(self.changed),
                "outcomes": [{"step": o.step, "node": o.node, "result": o.result, "detail": o.detail}
                             for o in self.outcomes], "startup": self.startup}

    def summary(self) -> str:
        if not self.changed:
            return "nothing changed: the deployment was already as the spec says"
        return "changed: " + ", ".join(f"{o.node} {o.step} {o.result}" for o in self.changed)


def plan_steps(plan: Plan, nodes: tuple[str, ...]) -> list[Step]:
    """The steps ``apply`` runs for the nodes in scope, in order."""
    scope = [node for node in plan.nodes if node.name in nodes]
    names = tuple(node.name for node in scope)
    head_in = plan.head.name in names
    workers = tuple(node.name for node in scope if node.role == "worker")
    steps = [Step("preflight", names, "engines answer, GPUs, deployment folder, secrets")]
    if registry.target(plan.runtime).docker:  # a Docker target's own steps: daemon.json, the image
        steps += [Step("daemon-json", names, "merge daemon.json, restart Docker if it changed"),
                  Step("image", names, f"build {plan.image.tag}")]
    if head_in:
        steps.append(Step("head", (plan.head.name,), f"start {plan.head.container.name}"))
    if workers:
        steps.append(Step("workers", workers, "start the workers, in parallel"))
    if head_in and plan.backend == "ray":
        steps.append(Step("cluster", (plan.head.name,), "every node and GPU joined the Ray cluster"))
        steps.append(Step("serve", (plan.head.name,), "start vllm serve in the head container"))
    elif head_in and plan.backend == "mp":
        steps.append(Step("cluster", (plan.head.name,), "the followers joined and the model loaded (/health)"))
    if head_in:
        steps.append(Step("verify", (plan.head.name,), "/health, /v1/models, a chat completion, the API key"))
    others = tuple(s.node for s in servers.api_servers(plan) if s.node in names and s.node != plan.head.name)
    if others:
        steps.append(Step("servers", others, "every other API server answers /health"))
    if plan.router and plan.router.node in names:
        steps.append(Step("router", (plan.router.node,), "vllm-router in front of the healthy servers, verified"))
    if plan.gateway and plan.gateway.node in names:
        steps.append(Step("gateway", (plan.gateway.node,), "the gateway (nginx) in front, verified through it"))
    if plan.router and plan.router.disaggregated and plan.router.node in names:
        steps.append(Step("kv-transfer", (plan.router.node,), "a completion through the front door moved the KV "
                          "cache: NIXL handshake in a decode's log, its transfer counters up"))
    return steps


def engine_hint(error: str) -> str | None:
    kind = classify_error(error)
    if kind == "permission_denied":
        return PERMISSION_FIX
    if kind == "no_daemon":
        return START_FIX + "; or check the node's docker_host"
    if kind == "no_gpu_driver":
        return TOOLKIT_FIX + "; or rehearse without GPUs: --no-gpus"
    return None


class Apply:
    """One ``vllmgen apply``: the plan's steps over the executors of the nodes in scope."""

    def __init__(self, plan: Plan, executors: Mapping[str, Executor], deploy_dir: Path, *, http: HttpClient,
                 options: Options | None = None, progress: Progress | None = None,
                 drift: list[str] | None = None, environ: Mapping[str, str] | None = None,
                 secret_files: Mapping[str, str] | None = None):
        self.plan = plan
        self.target = registry.target(plan.runtime)
        self.executors = dict(executors)
        self.http = http  # every HTTP probe (health, models, chat, the key checks), from this machine
        self.deploy_dir = deploy_dir
        self.options = options or Options()
        self.progress = progress or Progress()
        self.drift = drift or []
        self.environ = environ
        self.secret_files = secret_files
        self.report = Report()
        self.secrets: Mapping[str, str] = {}
        self.fingerprint = identity.NO_SECRETS  # of the secret values (identity.secrets_fingerprint)
        self.image_ids: dict[str, str] = {}  # node -> the ID of the image its container runs
        self.node_dirs: dict[str, str] = {}
        self._decided: dict[str, tuple[str, str]] | None = None
        self.daemon_merges: dict[str, daemon_step.Change] | None = None  # read and merged by changes.compute
        self.image_plan: dict[str, tuple[str, str]] = {}  # node -> (build | unchanged, why)
        self.changes: changes.Changes | None = None
        self.clock = startup.Clock()  # the runner's own seconds per node (image, container start, answers)
        self.watches: dict[str, Watch] = {}  # node -> its container or process, followed since this run started it
        self.steps = plan_steps(plan, tuple(self.executors))

    # --- helpers ------------------------------------------------------------------------------

    def _node(self, name: str) -> NodePlan:
        return self.plan.node(name)

    def _outcome(self, step: str, node: str, result: str, detail: str = "") -> None:
        self.report.outcomes.append(Outcome(step, node, result, detail))
        self.progress.say(f"{step}: {result}" + (f" ({detail})" if detail else ""), node)

    def _each(self, names: tuple[str, ...], fn: Callable[[str], T]) -> list[T]:
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

    def _engine(self, node: str, step: str, fn: Callable[[], T], todo: str | None = None) -> T:
        try:
            return fn()
        except EngineError as exc:
            raise fail(node, step, str(exc), engine_hint(str(exc)) or todo) from exc
        except HostError as exc:
            raise fail(node, step, str(exc)) from exc

    # --- apply --------------------------------------------------------------------------------

    def _step(self, step: Step) -> None:
        self.progress.say(f"== {step.name}: {step.title} [{', '.join(step.nodes)}]")
        getattr(self, "step_" + step.name.replace("-", "_"))(step)

    def preview(self) -> changes.Changes:
        """What apply would do (``vllmgen plan``): the preflight, then the plan; changes nothing."""
        self._step(self.steps[0])
        planned = changes.compute(self)
        self.daemon_merges, self.image_plan = planned.daemon_merges, planned.images.plan
        self.image_ids.update(planned.images.ids)
        self.changes = planned.changes
        return self.changes

    def run(self) -> Report:
        """The plan first (printed; running containers stopped only when ``confirm_replace`` agrees), then the steps."""
        planned = self.preview()
        for line in planned.text().rstrip().splitlines():
            self.progress.say(f"plan: {line}")
        changes.refuse_offline_builds(self, planned)
        stopped = planned.disruptive()
        if stopped and not self.options.confirm_replace(
                "apply stops these running containers:\n" + "\n".join(f"  {s}" for s in stopped) + "\nGo on?"):
            raise changes.Cancelled("apply cancelled: nothing was changed; the changes above are still pending")
        steps = list(self.steps[1:])
        if planned.orphans:
            at = next((i for i, s in enumerate(steps) if s.name in ("head", "workers")), len(steps))
            steps.insert(at, Step("orphans", tuple(sorted({o.engine_of for o in planned.orphans})),
                                  "remove this deployment's containers of nodes no longer in the spec"))
        try:
            for step in steps:
                self._step(step)
        finally:
            for watch in self.watches.values():
                watch.close()
        self.progress.say(self.report.summary())
        return self.report

    def step_orphans(self, step: Step) -> None:
        assert self.changes is not None
        for orphan in self.changes.orphans:
            executor = self.executors[orphan.engine_of]
            self._engine(orphan.engine_of, step.name, lambda e=executor, o=orphan: e.remove(o.container))  # type: ignore[misc]  # mypy cannot type a lambda with defaults
            self._outcome(step.name, orphan.engine_of, "removed",
                          f"{orphan.container}: node {orphan.node or '?'} is no longer in the spec")

    def step_preflight(self, step: Step) -> None:
        if self.drift:
            raise fail(None, step.name,
                       f"{self.deploy_dir} is out of date with the spec ({len(self.drift)} file(s) differ)",
                       "run `vllmgen render SPEC`, review the change, then apply: apply runs what was rendered")
        if self.options.dry_run:  # the dry run shows secrets by name and needs none of their values
            self.secrets = secrets.placeholders(self.plan.secrets)
        else:
            self.secrets = secrets.resolve(self.plan.secrets, environ=self.environ, files=self.secret_files,
                                           example=str(self.deploy_dir / "secrets.env.example"))
        self.fingerprint = ("(keyed fingerprint of the secret values)" if self.options.dry_run
                            else identity.secrets_fingerprint(self.secrets, self.environ))
        self._each(step.nodes, lambda name: self._preflight(step.name, name))

    def _preflight(self, step: str, name: str) -> None:
        executor, node = self.executors[name], self._node(name)
        info = self._engine(name, step, executor.ping, "check that the node's docker_host is right and reachable")
        detail = f"Docker {info.version}, API {info.api_version}" if self.target.docker else info.version
        if self.options.gpus:
            if info.runtimes and "nvidia" not in info.runtimes:
                self.progress.say("warning: Docker has no 'nvidia' runtime registered; --gpus may fail "
                                  f"({TOOLKIT_FIX})", name)
            count = executor.host.gpu_count()
            if count is not None and count < node.gpus:
                raise fail(name, step, f"the host has {count} GPU(s); the spec gives node {name} {node.gpus}",
                           "fix nodes[].gpus in the spec, or free the GPUs")
            detail += f", {count} GPU(s)" if count is not None else ", GPU count not checked (no nvidia-smi)"
        else:
            detail += ", without GPUs (--no-gpus)"
        self._outcome(step, name, "ok", detail)

    def step_daemon_json(self, step: Step) -> None:
        daemon_step.run(self, step.nodes)

    def step_image(self, step: Step) -> None:
        try:
            dockerfile = dockerfile_for(self.deploy_dir, self.options.base_image)
        except (OSError, ValueError) as exc:
            raise fail(None, step.name, str(exc), "run `vllmgen render SPEC` first") from exc
        labels = {IMAGE_HASH_LABEL: image_hash(dockerfile)}  # one label: each is a build step (a layer copy on vfs)
        self._each(step.nodes, lambda name: self._image(step.name, name, dockerfile, labels))

    def _image(self, step: str, name: str, dockerfile: str, labels: dict[str, str]) -> None:
        executor, tag = self.executors[name], self.plan.image.tag
        if self.image_plan.get(name, ("build", ""))[0] == "unchanged":  # decided by changes.compute
            result = "unchanged"
            self.clock.record(name, "image", None, f"{tag} already built")
        else:
            self.progress.say(f"{step}: building {tag} (base {self.options.base_image or self.plan.image.base})",
                              name)
            self.clock.timed(name, "image", lambda: self._engine(name, step, lambda: docker_engine(executor).build_image(
                self.deploy_dir, tag, dockerfile, labels, lambda line: self.progress.say(f"{step}: {line}", name)),
                "read the build output above; a failing RUN line is the Dockerfile's (build/<name>/Dockerfile)"),
                f"built {tag} (its base pulled if missing)")
            result = "built"
        self.image_ids[name] = self._engine(name, step, lambda: docker_engine(executor).image_id(tag)) or ""
        self._outcome(step, name, result, tag)

    # containers ---------------------------------------------------------------------------------

    def _request(self, name: str, image_id: str | None = None) -> RunRequest:
        container = self._node(name).container
        image_id = self.image_ids.get(name, "") if image_id is None else image_id
        labels = identity.run_labels(dict(container.labels)[HASH_LABEL], image_id,
                                     self.fingerprint)
        return RunRequest(container, self.node_dirs.get(name, ""), self.secrets, self.options.gpus, labels)

    def _decisions(self) -> dict[str, tuple[str, str]]:
        """Each container's action and why (changes.decisions), decided once at the head/workers steps:
        after daemon.json (a restart stops containers) and the build (the image's real ID)."""
        if self._decided is None:
            self._decided = {name: (action, why) for name, (action, why, _) in changes.decisions(self).items()}
        return self._decided

    def _start(self, step: str, name: str) -> None:
        executor, node = self.executors[name], self._node(name)
        action, why = self._decisions()[name]
        if action == "unchanged":
            self._outcome(step, name, "unchanged", f"{node.container.name}: {why}")
            return
        files = tuple(m.source for m in node.container.mounts if m.anchor == "deploy_dir")
        remote = f"{self.options.remote_dir}/{self.plan.name}"
        if not remote.startswith("/") and files:
            remote = self._engine(name, step, lambda: f"{executor.host.home()}/{remote}")
        self.node_dirs[name] = self._engine(
            name, step, lambda: executor.prepare_deploy_dir(self.deploy_dir, files, remote))
        if action == "replace":
            self.progress.say(f"{step}: removing {node.container.name}: {why}", name)
            self._engine(name, step, lambda: executor.remove(node.container.name))
        self.clock.started[name] = time.monotonic()
        self.clock.timed(name, "container start", lambda: self._engine(
            name, step, lambda: executor.run(self._request(name))), "docker run" if self.target.docker
            else "the process started")
        follow = self._engine(name, step, lambda: executor.follow(node.container.name))
        if follow is not None:  # from here on, its exit and its log lines are seen as they come
            self.watches[name] = Watch(name, node.container.name, follow)
        self._outcome(step, name, "created" if action == "create" else "replaced", f"{node.container.name}: {why}")

    def step_head(self, step: Step) -> None:
        self._decisions()
        self._start(step.name, step.nodes[0])

    def step_workers(self, step: Step) -> None:
        self._decisions()  # inspected once, before the workers start in parallel
        self._each(step.nodes, lambda name: self._start(step.name, name))

    def _alive(self, step: str, todo: Callable[[NodePlan], str] | None = None) -> str | None:
        """Raise, with its logs, if a container in scope is no longer running."""
        for name, executor in self.executors.items():
            node = self._node(name)
            container = node.container.name
            state = self._engine(name, step, lambda e=executor, c=container: e.inspect(c))  # type: ignore[misc]  # mypy cannot type a lambda with defaults
            if state is None or not state.running:
                how = "is gone" if state is None else f"exited (exit code {state.exit_code})"
                advice = todo(node) if todo else "read its log below; then `vllmgen apply` again"
                raise fail(name, step, f"{container} {how}", advice,
                           executor.logs(container, tail=15) if state is not None else None)
        return None

    def _head_logs(self) -> str:
        head = self.plan.head
        return self.executors[head.name].logs(head.container.name, tail=20)

    def step_cluster(self, step: Step) -> None:
        cluster_step.run(self, step.name)

    def _phase(self) -> str:
        """The head's start phase now, for the progress line of a long wait."""
        watch = self.watches.get(self.plan.head.name)
        if watch is not None:
            return "phase: " + watch.phase()
        return "phase: " + phases.current(startup.read_log(self.executors[self.plan.head.name],
                                                            self.plan.head.container.name))

    def _watching(self) -> list[Watch]:
        """What this run started and follows, the head first: every wait stops on their failures."""
        return sorted(self.watches.values(), key=lambda w: w.node != self.plan.head.name)

    def step_serve(self, step: Step) -> None:
        serve = self.plan.serve_exec
        assert serve is not None
        head = self.executors[serve.node]
        if self._engine(serve.node, step.name, lambda: head.serving(serve.container)):
            self._outcome(step.name, serve.node, "unchanged", "vllm serve is running in the head")
            return
        argv = (*SERVE_WRAPPER, *serve.argv)
        self._engine(serve.node, step.name, lambda: head.exec(serve.container, argv, detach=True))
        self._outcome(step.name, serve.node, "started", f"follow it: docker logs -f {serve.container}")

    def step_servers(self, step: Step) -> None:
        servers.step_servers(self, step)

    def step_router(self, step: Step) -> None:
        servers.step_router(self, step)

    def step_kv_transfer(self, step: Step) -> None:
        servers.step_kv_transfer(self, step)

    def step_gateway(self, step: Step) -> None:
        gateway_step.step_gateway(self, step)

    def step_verify(self, step: Step) -> None:
        head = self.executors[self.plan.head.name]
        serve = self.plan.serve_exec

        def alive() -> str | None:
            self._alive(step.name)
            note = self._phase()
            if serve and not self._engine(serve.node, step.name, lambda: head.serving(serve.container)):
                raise fail(serve.node, step.name, f"vllm serve is no longer running in {serve.container}",
                           "read its output below (docker logs); fix the spec and apply again",
                           head.logs(serve.container))
            return note

        name, container = self.plan.head.name, self.plan.head.container.name
        verify.wait_healthy(self.http, name, self.plan.direct_endpoint, self.progress, timeout=self.options.timeout,
                            alive=alive, interval=self.options.health_poll, logs=self._head_logs,
                            watches=self._watching())
        self._answered(name, "first healthy answer", "/health 200")
        api_key = secrets.api_key(self.plan, self.secrets)
        passed = verify.verify(self.http, name, self.plan.direct_endpoint, api_key, self.progress,
                               logs=lambda: head.logs(container, tail=40), public=self.plan.gateway is None,
                               answered=lambda: self._answered(name, "first token", "a chat completion answered"))
        self.report.outcomes.append(Outcome(step.name, name, "ok", "; ".join(passed)))
        entry = startup.report(name, container, startup.read_log(head, container), self.clock,
                               started=self._engine(name, step.name, lambda: head.started_at(container)))
        self.report.startup.append(entry)
        for line in startup.table(entry).splitlines():
            self.progress.say(line, name)
        if sum(node.gpus for node in self.plan.nodes) > 1:  # NCCL's transports, from every node's log
            startup.report_nccl(self.plan, self.executors, self.progress)

    def _answered(self, node: str, phase: str, what: str) -> None:
        since = self.clock.since_start(node)
        self.clock.record(node, phase, since, f"{what}, since the container started" if since is not None
                          else f"{what}; the container was already running")
