"""The runner's commands: ``apply``, ``plan``, ``status``, ``down``, ``bench``. The runner itself is
imported inside each command, never when the command line loads (render/validate stay light)."""

from __future__ import annotations

import gc
import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from vllmgen.errors import EXIT_DRIFT

SPEC = click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))


def _warn(diagnostics) -> None:  # noqa: ANN001
    for diagnostic in diagnostics:
        click.echo(str(diagnostic), err=True)


# --- scope and options ---------------------------------------------------------------------------------

NODE = click.option("--node", "node_name", metavar="NAME",
                    help="Act on this node only, from its own host (local Docker).")
ALL = click.option("--all", "all_nodes", is_flag=True,
                   help="Act on every node, each through its docker_host (a node without one: only if it is this machine).")
BUILD_DIR = click.option(
    "--build-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("build"), show_default=True,
    help="Folder holding <name>/ as `vllmgen render` wrote it.",
)


def _scope(plan, node_name: str | None, all_nodes: bool, spec: Path, command: str,  # noqa: ANN001
           build_dir: Path = Path("build"), dry_run: bool = False, artifacts=None) -> tuple[str, ...]:  # noqa: ANN001
    """The nodes apply/status/down act on, the same way for the three; usage errors before anything runs."""
    # lazy: start-up time
    from vllmgen.runner import targets

    refuse_without_engine(plan, command, build_dir, dry_run, artifacts)
    try:
        names = targets.scope(plan, node_name, all_nodes)
        if all_nodes:
            targets.require_endpoints(plan, names, str(spec))
    except ValueError as exc:
        raise click.UsageError(str(exc).replace("COMMAND", command)) from exc
    return names


def refuse_without_engine(plan, command: str, build_dir: Path = Path("build"),  # noqa: ANN001
                          dry_run: bool = False, artifacts=None) -> None:  # noqa: ANN001
    """A target vllmgen does not run (no engine in the registry, e.g. Kubernetes): print what its manual says
    (what to run instead; nothing is done) and exit with its code. ``artifacts``: the rendered files, where
    the command compiled the spec (its manual compares them with build/ for plan and apply)."""
    from vllmgen.targets import registry  # lazy: start-up time

    target = registry.target(plan.runtime)
    if target.engine is not None:
        return
    if target.manual is None:
        raise click.UsageError(f"vllmgen does not {command} runtime.kind: {target.kind} deployments; nothing was done")
    module, _, name = target.manual.partition(":")
    answer = getattr(importlib.import_module(module), name)(command, plan, artifacts, build_dir, dry_run=dry_run)
    click.echo(answer.text, nl=False, err=answer.exit_code not in (0, EXIT_DRIFT))
    sys.exit(answer.exit_code)


@contextmanager
def _transport_errors() -> Iterator[None]:
    """A broken pipe or reset from a node must not reach click, which exits 1 silently on EPIPE."""
    # lazy: start-up time
    from vllmgen.errors import RunnerError

    try:
        yield
    except (BrokenPipeError, ConnectionError) as exc:
        raise RunnerError(f"the connection to a node broke: {type(exc).__name__}: {exc}; "
                          "run the command again (it is safe to repeat)") from exc


BASE_IMAGE = click.option("--base-image", metavar="IMAGE",
                          help="Build FROM this image instead of the spec's base (a local copy).")
NO_GPUS = click.option("--no-gpus", is_flag=True,
                       help="Start containers without --gpus: a rehearsal of the mechanics on hosts without the NVIDIA runtime.")
DAEMON_JSON = click.option("--daemon-json", default="/etc/docker/daemon.json", show_default=True,
                           help="The Docker daemon's config file on each node.")


def collect_again() -> None:
    """The collector back on once the runner's modules are imported and the spec compiled (``entry`` turned
    it off for the start-up): a command that follows a container for minutes makes cyclic garbage."""
    gc.enable()


def _connect(plan, all_nodes: bool, dry_run: bool = False) -> None:  # noqa: ANN001
    """``--all``: start every ssh host's one connection now, before the runner's modules are imported, so the
    logins (0.3-0.9 s on a loaded 2-core machine), and each host's first Docker API stream, overlap those
    imports instead of following them. Only the Docker target reaches hosts over ssh (by name: the registry's
    import would delay the logins)."""
    if not all_nodes or dry_run or plan.runtime != "docker":
        return
    # lazy: start-up time
    from vllmgen.runner import ssh

    ssh.CONNECTIONS.open_docker_hosts((node.docker_host for node in plan.nodes), docker=True)


def connect_early(spec: Path, all_nodes: bool, dry_run: bool = False, node_name: str | None = None) -> None:
    """``--all``: log in to the nodes' ssh hosts before the spec is validated: the logins (0.3-0.4 s each, side
    by side) then overlap importing and validating it (~0.5 s of CPU) instead of following them. Only what the
    spec says plainly: the ``nodes[].docker_host`` values of a Docker spec, read by the same bounded YAML
    loader validation uses (no pydantic yet); nothing reaches an engine before the spec is valid, and an
    invalid spec still exits 3 (the masters end with vllmgen)."""
    if not all_nodes or dry_run or node_name:  # --node with --all is a usage error: no login first
        return
    # lazy: start-up time
    from vllmgen.errors import SpecError
    from vllmgen.spec.load import load_file

    try:
        data = load_file(spec).data
    except SpecError:
        return  # the validation says why
    runtime = data.get("runtime")
    nodes = data.get("nodes")
    if (isinstance(runtime, dict) and runtime.get("kind", "docker") != "docker") or not isinstance(nodes, list):
        return  # only the Docker target reaches hosts over ssh
    # lazy: start-up time
    from vllmgen.runner import ssh

    ssh.CONNECTIONS.open_docker_hosts(node.get("docker_host") for node in nodes if isinstance(node, dict))


def _runner(spec: Path, node_name: str | None, all_nodes: bool, command: str, *, dry_run: bool, build_dir: Path,
            options_kw: dict, daemon_json: str, docker_restart: str = "systemctl restart docker"):  # noqa: ANN202
    """The Apply that ``apply`` runs and ``plan`` previews: one construction, the same executors."""
    # lazy: start-up time
    import shlex

    connect_early(spec, all_nodes, dry_run, node_name)
    # lazy: start-up time
    from vllmgen.render.compile import plan_file

    valid, plan = plan_file(spec)
    _connect(plan, all_nodes, dry_run)
    # lazy: start-up time
    from vllmgen.runner import targets
    from vllmgen.runner.dryrun import Recorder
    from vllmgen.runner.steps import Apply, Options

    collect_again()
    _warn(valid.warnings)
    deploy_dir = build_dir / plan.name
    from vllmgen.targets import registry  # lazy: start-up time

    # a target vllmgen does not run gets the rendered objects: its manual compares them with build/
    manual_artifacts = None if registry.target(plan.runtime).engine else _rendered(spec, valid, plan)
    names = _scope(plan, node_name, all_nodes, spec, command, build_dir, dry_run, manual_artifacts)
    recorder = Recorder(stream=sys.stderr if command == "plan" else None) if dry_run else None
    options = Options(dry_run=dry_run, **options_kw)
    executors = targets.executors(plan, names, remote=all_nodes, dry_run=recorder, daemon_json_path=daemon_json,
                                  restart_command=tuple(shlex.split(docker_restart)))
    return Apply(plan, executors, deploy_dir, http=targets.http_client(plan, recorder), options=options,
                 drift=_drift(spec, valid, plan, build_dir))


def _drift(spec: Path, valid, plan, build_dir: Path) -> list[str]:  # noqa: ANN001
    """How the rendered tree differs from the spec (empty: up to date). An unchanged tree is told from its
    manifest as `render --check` tells it (no render, no jinja2: ~0.1 s of CPU); anything else is rendered
    and compared, file by file."""
    # lazy: start-up time
    from vllmgen.render.fastcheck import up_to_date

    deploy_dir = build_dir / plan.name
    if up_to_date(spec, build_dir, warnings=len(valid.warnings)) == str(deploy_dir):
        return []
    # lazy: start-up time
    from vllmgen.render.write import check as check_tree

    return check_tree(_rendered(spec, valid, plan), deploy_dir)


def _rendered(spec: Path, valid, plan):  # noqa: ANN001, ANN202
    """The artifacts as render.compile.compile_file renders them, from the spec validated and planned already."""
    # lazy: start-up time
    from vllmgen.render.artifacts import render
    from vllmgen.render.fingerprint import inputs

    return render(plan, inputs(spec.read_bytes(), len(valid.warnings)))


@click.command()
@SPEC
@NODE
@ALL
@click.option("--dry-run", is_flag=True, help="Print the docker commands apply would run, in order; change nothing.")
@click.option("-y", "--yes", is_flag=True,
              help="Replace running containers, rewrite daemon.json and restart Docker without asking.")
@click.option("--timeout", type=click.FloatRange(min=1), default=1200, show_default=True,
              help="Seconds to wait for the cluster, and again for the model to load.")
@BUILD_DIR
@NO_GPUS
@BASE_IMAGE
@click.option("--router-base-image", metavar="IMAGE", help="Build the router FROM this image instead of router.base_image.")
@DAEMON_JSON
@click.option("--docker-restart", default="systemctl restart docker", show_default=True,
              help="Command that restarts Docker on a node after its daemon.json changed.")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: the plan, the outcomes and the startup phases on stdout when apply ends.")
def apply(spec: Path, node_name: str | None, all_nodes: bool, dry_run: bool, yes: bool, timeout: float,
          build_dir: Path, no_gpus: bool, base_image: str | None, router_base_image: str | None, daemon_json: str,
          docker_restart: str, fmt: str) -> None:
    """Run SPEC's rendered deployment: preflight, plan, daemon.json, image, head, workers, cluster, serve, verify.

    \b
    On one host:        vllmgen apply SPEC --node NAME
    From one machine:   vllmgen apply SPEC --all        (each node through its docker_host)
    It prints the plan (as `vllmgen plan`) first. Before stopping a running container (a replacement,
    an orphan) it asks on a terminal; without a terminal it needs --yes, else it stops there (exit 2).
    Idempotent: containers whose config-hash label matches the spec are left alone.
    """
    if dry_run:
        click.echo(f"# vllmgen apply --dry-run {spec}: the commands apply would run, in order; nothing was changed")

    def confirm(question: str) -> bool:
        if yes or dry_run:
            return True
        if not sys.stdin.isatty():
            return False
        return click.confirm(question, default=False, err=True)

    def confirm_replace(question: str) -> bool:
        if yes or dry_run:
            return True
        if not sys.stdin.isatty():
            click.echo(question.replace("\nGo on?", ""), err=True)
            raise click.UsageError("apply would stop running containers and there is no terminal to ask: "
                                   "rerun with --yes (nothing was changed; `vllmgen plan` shows the changes)")
        return click.confirm(question, default=False, err=True)

    runner = _runner(spec, node_name, all_nodes, "apply", dry_run=dry_run, build_dir=build_dir,
                     daemon_json=daemon_json, docker_restart=docker_restart,
                     options_kw=dict(timeout=timeout, gpus=not no_gpus, base_image=base_image,
                                     router_base_image=router_base_image, confirm=confirm,
                                     confirm_replace=confirm_replace))
    # lazy: start-up time
    from vllmgen.runner import targets

    try:
        with _transport_errors():
            report = runner.run()
    finally:
        targets.close(runner.executors)
    if fmt == "json":
        # lazy: start-up time
        import json

        click.echo(json.dumps(report.as_dict(runner.changes), indent=2, sort_keys=True))


@click.command()
@SPEC
@NODE
@ALL
@click.option("--dry-run", is_flag=True, help="Print the read-only docker commands the plan needs; reach no node.")
@BUILD_DIR
@NO_GPUS
@BASE_IMAGE
@DAEMON_JSON
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def plan(spec: Path, node_name: str | None, all_nodes: bool, dry_run: bool, build_dir: Path, no_gpus: bool,
         base_image: str | None, daemon_json: str, fmt: str) -> None:
    """What `apply` would do on each node, given what runs there now; changes nothing.

    \b
    Per node: daemon.json keys that change, an image build, the container created, replaced (and
    which part of its identity changed: definition, image, a secret's value) or left alone; and
    orphans to remove. Give apply's own --base-image / --no-gpus: they change the answer.
    Exit 0 nothing to do, 1 changes pending (as `terraform plan -detailed-exitcode`); errors keep theirs.
    """
    runner = _runner(spec, node_name, all_nodes, "plan", dry_run=dry_run, build_dir=build_dir,
                     daemon_json=daemon_json, options_kw=dict(gpus=not no_gpus, base_image=base_image))
    # lazy: start-up time
    from vllmgen.runner import targets

    try:
        with _transport_errors():
            changes = runner.preview()
    finally:
        targets.close(runner.executors)
    click.echo(changes.as_json() if fmt == "json" else changes.text(), nl=False)
    if changes.pending:
        sys.exit(EXIT_DRIFT)


@click.command()
@SPEC
@NODE
@ALL
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def status(spec: Path, node_name: str | None, all_nodes: bool, fmt: str) -> None:
    """Show each node's containers, the cluster view and the endpoint's health; exit 1 if anything is unhealthy."""
    connect_early(spec, all_nodes, node_name=node_name)
    # lazy: start-up time
    from vllmgen.render.compile import plan_file

    _, plan = plan_file(spec)
    _connect(plan, all_nodes)
    # lazy: start-up time
    from vllmgen.runner import status as status_report
    from vllmgen.runner import targets

    collect_again()
    names = _scope(plan, node_name, all_nodes, spec, "status")
    executors = targets.executors(plan, names, remote=all_nodes)
    api_key = None
    if plan.endpoint.api_key:
        source = plan.endpoint.api_key
        api_key = os.environ.get(source.from_env or source.name) if not source.from_file else None
        if source.from_file:
            try:
                api_key = Path(os.path.expanduser(source.from_file)).read_text(encoding="utf-8").strip()
            except OSError:
                api_key = None
    try:
        with _transport_errors():
            report = status_report.collect(plan, executors, targets.http_client(plan), api_key)
    finally:
        targets.close(executors)
    click.echo(status_report.as_json(report) if fmt == "json" else status_report.table(report))
    if not report["healthy"]:
        sys.exit(EXIT_DRIFT)


@click.command()
@SPEC
@NODE
@ALL
@click.option("--dry-run", is_flag=True, help="Print the docker commands; remove nothing.")
def down(spec: Path, node_name: str | None, all_nodes: bool, dry_run: bool) -> None:
    """Remove the containers apply started (by their labels), workers first."""
    connect_early(spec, all_nodes, dry_run, node_name)
    # lazy: start-up time
    from vllmgen.render.compile import plan_file

    _, plan = plan_file(spec)
    _connect(plan, all_nodes, dry_run)
    # lazy: start-up time
    from vllmgen.runner import targets
    from vllmgen.runner.down import down as run_down
    from vllmgen.runner.dryrun import Recorder

    collect_again()
    names = _scope(plan, node_name, all_nodes, spec, "down", dry_run=dry_run)
    executors = targets.executors(plan, names, remote=all_nodes, dry_run=Recorder() if dry_run else None)
    try:
        with _transport_errors():
            removed = run_down(plan, executors)
    finally:
        targets.close(executors)
    if not dry_run:
        click.echo(f"removed {len(removed)} container(s)" + (f": {', '.join(removed)}" if removed else ""))




@click.command()
@SPEC
@click.option("--preset", type=click.Choice(["chat", "long", "smoke"]), default="chat", show_default=True,
              help="chat: random 1000 in / 200 out at 1, 4, 16 concurrent; long: 8000 / 500 at 1, 4; smoke: 64 / 16 "
                   "at 1, 2 (a quick proof). Shrunk to fit max-model-len, saying so.")
@click.option("--results", type=click.Path(file_okay=False, path_type=Path),
              help="Folder keeping the runs, one sub-folder per deployment (default: .vllmgen/bench/ beside SPEC).")
@click.option("--dry-run", is_flag=True, help="Print the docker exec commands; run nothing.")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--timeout", type=click.IntRange(min=60), default=3600, show_default=True,
              help="Seconds one concurrency level may run.")
def bench(spec: Path, preset: str, results: Path | None, dry_run: bool, fmt: str, timeout: int) -> None:
    """Run vLLM's own `vllm bench serve` inside the serving (head) container against the deployed server.

    \b
    The head is reached as apply reaches it (its docker_host, else the local Docker; a process on this host). The API key goes as
    OPENAI_API_KEY in the exec's environment, never on a command line. Each run is kept with the
    spec's hash under --results and compared with the last run of the same spec and preset:
    requests/s, output tokens/s, TTFT and ITL percentiles (ms).
    """
    # lazy: start-up time
    import json

    # lazy: start-up time
    from vllmgen.render.compile import compile_file
    from vllmgen.render.fingerprint import spec_sha256
    from vllmgen.runner import benchmark, benchrun, secrets, targets
    from vllmgen.runner.dryrun import Recorder
    from vllmgen.runner.progress import Progress


    compiled = compile_file(spec)
    _warn(compiled.valid.warnings)
    plan = compiled.plan
    refuse_without_engine(plan, "bench", dry_run=dry_run)
    head = plan.head
    api_key = None
    if plan.endpoint.api_key:  # a dry run reads no secret: it prints where each one is read
        values = secrets.placeholders(plan.secrets) if dry_run else secrets.resolve(plan.secrets)
        api_key = secrets.api_key(plan, values)
    executor = targets.executors(plan, (head.name,), remote=True, dry_run=Recorder() if dry_run else None,
                                 timeout=timeout)[head.name]
    folder = results or spec.parent / ".vllmgen" / "bench"
    try:
        with _transport_errors():
            run = benchrun.run(plan, executor, preset=benchmark.PRESETS[preset], api_key=api_key, results=folder,
                               spec_sha256=spec_sha256(spec.read_bytes()), progress=Progress(), dry_run=dry_run)
    finally:
        targets.close({head.name: executor})
    if dry_run:
        click.echo(f"# the benchmark would run {run.where}; nothing was run")
    elif fmt == "json":
        click.echo(json.dumps(run.as_dict(), indent=2, sort_keys=True))
    else:
        click.echo(run.text(), nl=False)
