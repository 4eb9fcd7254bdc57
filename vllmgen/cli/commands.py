"""The ``vllmgen`` command line. Exit codes: 0 ok, 1 drift, 2 usage, 3 invalid spec, 4 runner, 123 internal."""

from __future__ import annotations

import gc
import importlib
import json
import os
import sys
from pathlib import Path

import click

from vllmgen import __version__
from vllmgen.errors import EXIT_DRIFT, EXIT_INTERNAL, EXIT_INVALID, Diagnostic, SpecError, VllmgenError

SPEC = click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
STRICT = click.option("--strict", is_flag=True, help="Treat warnings (such as an unpinned image) as errors.")


def _warn(diagnostics: list[Diagnostic]) -> None:
    for diagnostic in diagnostics:
        click.echo(str(diagnostic), err=True)


# Commands defined in other modules, imported only when named (or listed by --help): `render` and
# `validate` never load the runner's or the review tools' modules.
ELSEWHERE = {"apply": "vllmgen.cli.runner", "plan": "vllmgen.cli.runner", "status": "vllmgen.cli.runner",
             "down": "vllmgen.cli.runner", "bench": "vllmgen.cli.runner", "diff": "vllmgen.cli.review",
             "precommit": "vllmgen.cli.review", "bundle": "vllmgen.bundle.cli"}


class Commands(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *ELSEWHERE})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in ELSEWHERE and name not in self.commands:
            self.add_command(getattr(importlib.import_module(ELSEWHERE[name]), name))
        return super().get_command(ctx, name)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="vllmgen")
def cli() -> None:
    """Compile a vLLM deployment spec (YAML) into every artifact it needs, and run them.

    \b
    Typical use:
      vllmgen init                     write a commented starter spec (vllmgen.yaml)
      vllmgen validate vllmgen.yaml    check it; every error at once, with file:line:col
      vllmgen render vllmgen.yaml      write build/<name>/ (commit it)
      vllmgen render vllmgen.yaml --check   in CI: exit 1 with a diff when build/ is stale
      vllmgen plan vllmgen.yaml --all      what apply would do on each host now (exit 1: changes pending)
      vllmgen apply vllmgen.yaml --all     run it on every node, then verify it serves
      vllmgen status vllmgen.yaml          containers, cluster and endpoint health
      vllmgen down vllmgen.yaml            remove what apply started
      vllmgen bench vllmgen.yaml           vllm bench serve inside the serving container, compared
      vllmgen bundle vllmgen.yaml -o DIR   images, model and build/ for hosts without internet (then: bundle load)

    Exit codes: 0 ok, 1 build/ out of date, 2 usage error, 3 invalid spec,
    4 a runner step failed, 123 internal error (please report it).
    """


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), default="vllmgen.yaml")
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
@click.option("--recipe", "recipe_source", metavar="SOURCE",
              help="Start from a vLLM recipe: a vllm-project/recipes checkout, or the site's JSON API (URL or folder).")
@click.option("--list", "list_only", is_flag=True, help="With --recipe: list its models, strategies, hardware "
              "(and, with --model, the model's variants and features).")
@click.option("--model", metavar="ORG/NAME", help="With --recipe: the recipe's model id.")
@click.option("--strategy", metavar="NAME", help="With --recipe: e.g. single_node_tp, multi_node_tp_pp.")
@click.option("--hardware", metavar="NAME", help="With --recipe: a taxonomy hardware profile, e.g. h200.")
@click.option("--variant", metavar="NAME", help="With --recipe: a precision variant (default: 'default').")
@click.option("--feature", "features", metavar="NAME", multiple=True, help="With --recipe: turn on an opt-in feature (repeat).")
@click.option("--nodes", metavar="ADDR[,ADDR...]", help="With --recipe: the hosts (default: 192.0.2.x placeholders).")
@click.option("--nic", metavar="IFACE", help="With --recipe: the data NIC (binds the recipe's $IFACE_NAME).")
@click.option("--ib-hca", "ib_hcas", metavar="HCA[,HCA...]", help="With --recipe: InfiniBand HCAs (binds $IB_IF).")
@click.option("--vllm", "vllm_version", metavar="VERSION", help="With --recipe: the vLLM version (a flag catalog's).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of PATH.")
def init(path: Path, force: bool, recipe_source: str | None, list_only: bool, output: Path | None, **choices) -> None:
    """Write a commented starter spec to PATH (default: vllmgen.yaml), or one made from a vLLM recipe.

    \b
    vllmgen init --recipe ~/recipes --list [--model Qwen/Qwen3-Next-80B-A3B-Instruct]
    vllmgen init --recipe ~/recipes --model Qwen/Qwen3-Next-80B-A3B-Instruct \\
        --strategy multi_node_tp --hardware h200 --nodes 10.0.0.1,10.0.0.2 --nic ens1f0
    """
    # lazy: start-up time
    from vllmgen.render.templates import templates_dir

    path = output or path
    if recipe_source is None:
        given = [f"--{name.replace('_', '-')}" for name, value in choices.items() if value]
        if given or list_only:
            raise click.UsageError(f"{', '.join(given or ['--list'])} need(s) --recipe SOURCE")
    elif list_only:
        # lazy: start-up time
        from vllmgen.recipes.command import listing

        click.echo(listing(recipe_source, choices["model"]), nl=False)
        return
    if path.exists() and not force:
        raise click.UsageError(f"{path} exists; use --force to overwrite it")
    if recipe_source is None:
        _write_new(path, (templates_dir() / "starter.yaml").read_text(encoding="utf-8"))
        click.echo(f"wrote {path}; edit it, then: vllmgen validate {path}")
        return
    # lazy: start-up time
    from vllmgen.recipes.command import from_options

    made = from_options(recipe_source, path, choices)
    for warning in made.warnings:
        click.echo(warning, err=True)
    _write_new(path, made.text)
    click.echo(f"wrote {path} from the recipe; review it, then: vllmgen render {path}")


def _write_new(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:  # a missing folder, no permission: the user's to fix, not an internal error
        raise click.UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


@cli.command()
@SPEC
@STRICT
@click.option(
    "--model-config", type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The model's config.json: also estimate whether weights and KV cache fit the GPUs (offline).",
)
@click.option("--gpu-memory-gib", type=click.FloatRange(min=1), default=80.0, show_default=True,
              help="Memory of one GPU, for --model-config.")
def validate(spec: Path, strict: bool, model_config: Path | None, gpu_memory_gib: float) -> None:
    """Check SPEC: types, unknown keys, and the rules across fields (one head, world size, ports...)."""
    # lazy: start-up time
    from vllmgen.render.compile import plan_file

    valid, plan = plan_file(spec, strict=strict)
    _warn(valid.warnings)
    click.echo(
        f"{spec}: ok: deployment {plan.name}, {len(plan.nodes)} node(s), backend {plan.backend}, "
        f"{sum(node.gpus for node in plan.nodes)} GPU(s)"
    )
    if model_config:
        _report_fit(valid.spec, model_config, gpu_memory_gib, strict)


def _report_fit(spec, model_config: Path, gpu_memory_gib: float, strict: bool) -> None:
    # lazy: start-up time
    from vllmgen.doctor.fit import tp_problems
    from vllmgen.doctor.from_spec import fit_for_spec

    try:
        config = json.loads(model_config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"cannot read {model_config}: {exc}", param_hint="--model-config") from None
    problems = tp_problems(config, spec.serve.tensor_parallel_size)
    estimate = fit_for_spec(spec, config, gpu_memory_gib)
    click.echo(f"model fit ({spec.total_gpus} x {gpu_memory_gib:g} GiB): {estimate.message}")
    for note in estimate.notes:
        click.echo(f"  note: {note}")
    for problem in problems:
        click.echo(f"{model_config}: serve.tensor_parallel_size: {problem}", err=True)
    if problems or (strict and not estimate.fits):
        sys.exit(EXIT_INVALID)


@cli.command()
@SPEC
@click.option(
    "-o", "--output", "output", type=click.Path(file_okay=False, path_type=Path), default=Path("build"),
    show_default=True, help="Folder that holds one sub-folder per deployment.",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 with a unified diff if OUTPUT is out of date.")
@STRICT
def render(spec: Path, output: Path, check: bool, strict: bool) -> None:
    """Render SPEC into OUTPUT/<name>/: Dockerfile, daemon.json, scripts, compose files, runbook.

    Nothing is written unless the whole spec is valid, and the folder is replaced in one step.
    """
    # lazy: start-up time
    from vllmgen.render.compile import compile_file
    from vllmgen.render.write import check as check_tree
    from vllmgen.render.write import write

    compiled = compile_file(spec, strict=strict)
    _warn(compiled.valid.warnings)
    target = output / compiled.plan.name
    if check:
        diffs = check_tree(compiled.artifacts, target)
        if diffs:
            click.echo("".join(diffs), nl=False)
            click.echo(f"{target} is out of date with {spec}: run `vllmgen render {spec}`", err=True)
            sys.exit(EXIT_DRIFT)
        click.echo(f"{target} is up to date")
        return
    write(compiled.artifacts, target,
          on_wait=lambda: click.echo(f"another vllmgen render into {output} is running; waiting for it", err=True))
    click.echo(f"wrote {len(compiled.artifacts)} files to {target}")


@cli.command()
@click.option(
    "--format", "fmt", type=click.Choice(["json", "markdown"]), default="json", show_default=True,
    help="json: JSON Schema for editors (yaml-language-server); markdown: the field reference.",
)
def schema(fmt: str) -> None:
    """Print the spec's JSON Schema, or its field reference as Markdown."""
    if fmt == "markdown":
        # lazy: start-up time
        from vllmgen.review.reference import markdown

        click.echo(markdown(), nl=False)
        return
    # lazy: start-up time
    from vllmgen.spec.model import Spec

    click.echo(json.dumps(Spec.model_json_schema(), indent=2, sort_keys=True))


@cli.command()
@SPEC
@click.option("--node", "node_name", help="The node of SPEC this host is (default: the only node).")
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--no-docker", is_flag=True, help="Skip the Docker checks (daemon, socket, NVIDIA runtime, --gpus smoke).")
@click.option("--image-cuda", metavar="X.Y", help="CUDA version of the image, to check the driver against.")
@click.option("--base-image", metavar="IMAGE", help="As given to apply: the vLLM image is built FROM it.")
@click.option("--router-base-image", metavar="IMAGE", help="As given to apply: the router is built FROM it.")
def doctor(spec: Path, node_name: str | None, output: str, no_docker: bool, image_cuda: str | None,
           base_image: str | None, router_base_image: str | None) -> None:
    """Check this host against SPEC before starting anything, and say how to fix what is wrong.

    \b
    Docker: daemon reachable, socket permission, NVIDIA runtime, a real `--gpus all` run, mirrors,
            the image of each of the node's containers (vLLM, router, gateway, monitoring).
    GPUs: nvidia-smi inventory vs the node's GPU count, one model and driver, driver vs CUDA.
    Network: the node's address is local, the data NIC exists, ports are free, InfiniBand HCAs.
    Storage: /dev/shm, free disk, the model folder or its Hugging Face cache snapshot; whether it fits.
    With offline: true a missing image or model fails (apply and vLLM would not fetch it).
    Exit status 1 when any check fails.
    """
    # lazy: start-up time
    from vllmgen.doctor import report
    from vllmgen.doctor.checks import exit_code
    from vllmgen.doctor.from_spec import expectation, model_fit
    from vllmgen.doctor.gpu import format_inventory
    from vllmgen.doctor.host import docker_checks, gpu_facts, network_checks, storage_checks
    from vllmgen.doctor.probe import LiveProbe
    from vllmgen.doctor.workloads import node_images
    from vllmgen.render.compile import plan_file
    from vllmgen.targets import registry

    valid, plan = plan_file(spec)
    _warn(valid.warnings)
    names = [node.name for node in plan.nodes]
    if node_name is None and len(names) > 1:
        raise click.UsageError(f"{spec} has several nodes; name this host's with --node ({', '.join(names)})")
    try:
        node = plan.node(node_name or names[0])
    except KeyError:
        raise click.UsageError(f"no node {node_name!r} in {spec}; nodes: {', '.join(names)}") from None
    probe = LiveProbe()
    docker = not no_docker and registry.target(plan.runtime).docker  # no Docker: no Docker checks
    images = node_images(spec, node.name, base_image=base_image, router_base_image=router_base_image) if docker else ()
    expect = expectation(plan, valid.spec, node, docker=docker, image_cuda=image_cuda, images=images)
    facts = gpu_facts(probe, expect)
    results = [*facts.results, *network_checks(probe, expect), *storage_checks(probe, expect)]
    results += docker_checks(probe, expect)
    results += model_fit(probe, valid.spec, facts, expect)
    if output == "json":
        inventory = [gpu.__dict__ for gpu in facts.gpus]
        click.echo(report.render_json(results, node=node.name, gpus=inventory, cuda_version=facts.cuda_version), nl=False)
    else:
        if facts.gpus:
            click.echo(format_inventory(facts.gpus, facts.cuda_version) + "\n")
        click.echo(report.render_table(results, title=f"vllmgen doctor: {plan.name}, node {node.name} ({node.address})"), nl=False)
    sys.exit(exit_code(results))


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except SpecError as exc:
        _warn(exc.diagnostics)
        errors = sum(1 for d in exc.diagnostics if d.severity == "error")
        click.echo(f"{errors} error(s); nothing was written", err=True)
        sys.exit(exc.exit_code)
    except VllmgenError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback for users
        if os.environ.get("VLLMGEN_DEBUG"):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (set VLLMGEN_DEBUG=1 for a traceback)", err=True)
        sys.exit(EXIT_INTERNAL)
    finally:
        # The process ends next: spare the collector a last walk over every pydantic validator and
        # template while the interpreter shuts down (~65 ms, a tenth of a small render's time).
        gc.freeze()
