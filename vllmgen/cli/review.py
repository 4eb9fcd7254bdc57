"""The review commands: ``vllmgen diff`` (what a change does, per node) and ``vllmgen precommit`` (the hook)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vllmgen.errors import EXIT_DRIFT, EXIT_INVALID, SpecError


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--against", metavar="REV|SPEC", default="HEAD", show_default=True,
              help="A git revision holding an earlier SPEC, or another spec file.")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True, help="markdown: a summary for a pull-request comment.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when there are changes (as git diff --exit-code).")
@click.option("--against-recipe", metavar="SOURCE", help="What the vLLM recipe SPEC was made from (`init --recipe`) "
              "changed upstream since, per concern: a recipes checkout, or the JSON API.")
def diff(spec: Path, against: str, fmt: str, exit_code: bool, against_recipe: str | None) -> None:
    """Summarise what changed in SPEC since REV (or against another spec), per node and per concern.

    \b
    Concerns: layout, image, serve options, env, secrets (by name only), mounts, devices, ports,
    daemon.json, runtime. Read from the two plans, not from text diffs of build/.
    \b
      vllmgen diff specs/prod.yaml                          uncommitted changes (against HEAD)
      vllmgen diff specs/prod.yaml --against origin/main -o markdown   a pull request's summary
      vllmgen diff specs/a.yaml --against specs/b.yaml      two specs
      vllmgen diff vllmgen.yaml --against-recipe ~/recipes  what its recipe changed upstream
    """
    if against_recipe is not None:
        from vllmgen.recipes.drift import drift

        report = drift(spec, against_recipe)
        if fmt == "json":
            click.echo(report.as_json(), nl=False)
        elif fmt == "markdown":
            click.echo(f"### {spec} against its recipe\n\n```text\n{report.text()}```\n", nl=False)
        else:
            click.echo(report.text(), nl=False)
        if exit_code and (report.concerns or not report.unchanged):
            sys.exit(EXIT_DRIFT)
        return
    from vllmgen.render.compile import plan_file
    from vllmgen.review.gitspec import GitError, spec_at
    from vllmgen.spec.load import load_bytes
    from vllmgen.plan.plan import build_plan
    from vllmgen.review.review import as_json, as_markdown, as_text, compare
    from vllmgen.spec.validate import validate

    _, new = plan_file(spec)
    other = Path(against)
    if other.is_file():
        _, old = plan_file(other)
        title = f"{spec} against {other}"
    else:
        try:
            text = spec_at(against, spec)
        except GitError as exc:
            raise click.BadParameter(f"{exc} (give a git revision or a spec file)", param_hint="--against") from None
        old = None
        if text is not None:
            old = build_plan(validate(load_bytes(text, f"{against}:{spec}")).spec, spec.name)
        title = f"{spec} since {against}"
    changes = compare(old, new)
    if fmt == "json":
        click.echo(as_json(changes), nl=False)
    elif fmt == "markdown":
        click.echo(as_markdown(changes, title), nl=False)
    else:
        click.echo(as_text(changes), nl=False)
    if exit_code and changes:
        sys.exit(EXIT_DRIFT)


@click.command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--specs", "patterns", multiple=True, metavar="GLOB",
              help="Where the specs are, relative to the repository (default: specs/*.yaml, specs/*.yml, "
                   "vllmgen.yaml); repeat for several.")
@click.option("--build-dir", default="build", show_default=True, help="The folder `vllmgen render` writes.")
def precommit(files: tuple[Path, ...], patterns: tuple[str, ...], build_dir: str) -> None:
    """The pre-commit hook: validate the specs FILES touch and fail when their build/ is stale.

    \b
    A spec is checked when its file changed, when a file under its build/<name>/ changed, or when
    templates/ or vllmgen/ changed (vllmgen's own repository); with no FILES, every spec.
    Exit 1 when a build/ folder is out of date (run the `vllmgen render` it prints), 3 when a spec
    is invalid.
    """
    from vllmgen.render.compile import compile_file
    from vllmgen.spec.load import load_file
    from vllmgen.review.precommit import DEFAULT_SPECS, fix_command, is_vllmgens_own, select, spec_files
    from vllmgen.render.write import check as check_tree

    specs = spec_files(Path("."), patterns or DEFAULT_SPECS)
    names: dict[Path, str | None] = {}
    for spec in specs:
        try:
            data = load_file(str(spec)).data
        except SpecError:
            data = None
        names[spec] = str(data["name"]) if isinstance(data, dict) and isinstance(data.get("name"), str) else None
    selection = select(specs, names, [file.as_posix() for file in files], build_dir,
                       own_repo=is_vllmgens_own(Path(".")))
    worst = 0
    for spec in selection.specs:
        try:
            compiled = compile_file(spec)
        except SpecError as exc:
            for diagnostic in exc.diagnostics:
                click.echo(str(diagnostic), err=True)
            click.echo(f"{spec}: invalid ({selection.reason[spec]})", err=True)
            worst = max(worst, EXIT_INVALID)
            continue
        target = Path(build_dir) / compiled.plan.name
        stale = check_tree(compiled.artifacts, target)
        if stale:
            click.echo("".join(stale), nl=False, err=True)
            click.echo(f"{target} is out of date with {spec} ({selection.reason[spec]}); fix: "
                       f"{fix_command(spec, build_dir, target)}", err=True)
            worst = max(worst, EXIT_DRIFT)
        else:
            click.echo(f"{spec}: ok, {target} up to date")
    sys.exit(worst)
