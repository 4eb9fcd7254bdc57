"""The ``vllmgen`` command line. Exit codes: 0 ok, 1 drift, 2 usage, 3 invalid spec, 4 runner, 123 internal."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from vllmgen import __version__
from vllmgen.errors import EXIT_DRIFT, EXIT_INTERNAL, Diagnostic, SpecError, VllmgenError

SPEC = click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
STRICT = click.option("--strict", is_flag=True, help="Treat warnings (such as an unpinned image) as errors.")


def _warn(diagnostics: list[Diagnostic]) -> None:
    for diagnostic in diagnostics:
        click.echo(str(diagnostic), err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="vllmgen")
def cli() -> None:
    """Compile a vLLM deployment spec (YAML) into every artifact it needs, and run them.

    \b
    Typical use:
      vllmgen init                     write a commented starter spec (vllmgen.yaml)
      vllmgen validate vllmgen.yaml    check it; every error at once, with file:line:col
      vllmgen render vllmgen.yaml      write build/<name>/ (commit it)
      vllmgen render vllmgen.yaml --check   in CI: exit 1 with a diff when build/ is stale

    Exit codes: 0 ok, 1 build/ out of date, 2 usage error, 3 invalid spec,
    4 a runner step failed, 123 internal error (please report it).
    """


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), default="vllmgen.yaml")
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
def init(path: Path, force: bool) -> None:
    """Write a commented starter spec to PATH (default: vllmgen.yaml)."""
    from vllmgen.render import templates_dir

    if path.exists() and not force:
        raise click.UsageError(f"{path} exists; use --force to overwrite it")
    path.write_text((templates_dir() / "starter.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    click.echo(f"wrote {path}; edit it, then: vllmgen validate {path}")


@cli.command()
@SPEC
@STRICT
def validate(spec: Path, strict: bool) -> None:
    """Check SPEC: types, unknown keys, and the rules across fields (one head, world size, ports...)."""
    from vllmgen.compile import plan_file

    valid, plan = plan_file(spec, strict=strict)
    _warn(valid.warnings)
    click.echo(
        f"{spec}: ok: deployment {plan.name}, {len(plan.nodes)} node(s), backend {plan.backend}, "
        f"{sum(node.gpus for node in plan.nodes)} GPU(s)"
    )


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
    from vllmgen.compile import compile_file
    from vllmgen.write import check as check_tree
    from vllmgen.write import write

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
    write(compiled.artifacts, target)
    click.echo(f"wrote {len(compiled.artifacts)} files to {target}")


@cli.command()
@click.option(
    "--format", "fmt", type=click.Choice(["json", "markdown"]), default="json", show_default=True,
    help="json: JSON Schema for editors (yaml-language-server); markdown: the field reference.",
)
def schema(fmt: str) -> None:
    """Print the spec's JSON Schema, or its field reference as Markdown."""
    if fmt == "markdown":
        from vllmgen.reference import markdown

        click.echo(markdown(), nl=False)
        return
    from vllmgen.spec import Spec

    click.echo(json.dumps(Spec.model_json_schema(), indent=2, sort_keys=True))


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
