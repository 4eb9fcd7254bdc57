"""``vllmgen bundle SPEC -o DIR`` and ``vllmgen bundle load DIR (--node NAME | --all)``. Only click is
imported when the command line loads; the rest inside each command."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click

_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)i?b?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise click.BadParameter(f"expected a size such as 4G, 700M or a byte count, not {text!r}")
    factor = 1024 ** " kmgt".index(match.group(2).lower() or " ")
    return int(float(match.group(1)) * factor)


class _BundleGroup(click.Group):
    """`bundle SPEC ...` writes a bundle; `bundle load DIR ...` places one."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] in self.commands and args[0] != "write":
            return super().resolve_command(ctx, args)
        return "write", self.commands["write"], args

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        with formatter.section("Commands"):
            formatter.write_dl([("SPEC -o DIR", "write a bundle (see `vllmgen bundle write --help`)"),
                                ("load DIR", "place a bundle on the nodes (see `vllmgen bundle load --help`)")])


@click.group(cls=_BundleGroup)
def bundle() -> None:
    """Carry a whole deployment to hosts without internet: images, model, the rendered tree.

    \b
    On a machine with network access and Docker:
      vllmgen bundle SPEC -o DIR [--part-size 4G] [--dry-run]
    Carry DIR (a folder: manifest.json and parts/), then on the air-gapped control machine:
      vllmgen bundle load DIR --all          (every node through its docker_host, or --node NAME here)
      vllmgen apply DIR-LOADED/SPEC --all    (no build, no pull with offline: true)
    """


@bundle.command("write")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The bundle folder (made if missing; an interrupted write there resumes).")
@click.option("--part-size", default="2G", show_default=True, metavar="SIZE",
              help="Largest part file (e.g. 700M for a file system or medium with a size limit).")
@click.option("--dry-run", is_flag=True, help="List what would go in, with sizes where known; write nothing.")
@click.option("--build-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("build"),
              show_default=True, help="Folder holding <name>/ as `vllmgen render` wrote it.")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The weights' folder on this machine (default: the spec's model.host_path).")
@click.option("--hf-cache", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="The Hugging Face hub cache holding the model's snapshot, for a spec without model.host_path "
                   "(default: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub).")
@click.option("--with-vllmgen", is_flag=True,
              help="Also carry vllmgen's wheel and its dependencies' (pip wheel), for an air-gapped control machine "
                   "with this machine's Python version and platform; `bundle load` places them under --to/wheels.")
@click.option("--base-image", metavar="IMAGE", help="Build FROM this image instead of the spec's base (as apply's).")
@click.option("--router-base-image", metavar="IMAGE", help="Build the router FROM this image (as apply's).")
def write(spec: Path, output: Path, part_size: str, dry_run: bool, build_dir: Path, model_dir: Path | None,
          hf_cache: Path | None, with_vllmgen: bool, base_image: str | None, router_base_image: str | None) -> None:
    """Write SPEC's bundle into the folder OUTPUT: every image built or reused on this machine's Docker
    engine and saved by ID, the model (its host_path folder, else its Hugging Face cache snapshot), the
    spec and build/<name>/, each part with its SHA-256."""
    # lazy: start-up time
    from vllmgen.bundle import make

    request = make.Request(spec, output, build_dir, parse_size(part_size), model_dir, base_image, router_base_image,
                           hf_cache, with_vllmgen)
    engine, error = _local_engine()

    def say(line: str) -> None:
        click.echo(line, err=True)

    try:
        if dry_run:
            click.echo("\n".join(make.dry_run(request, engine, error)))
            return
        if engine is None and error is not None:
            say(f"note: {error}")
        summary = make.make(request, engine, say)
    finally:
        if engine is not None:
            engine.close()
    for line in summary.lines:
        click.echo(line)
    click.echo(f"wrote {output}: carry the whole folder, then `vllmgen bundle load {output} --all`")


def _local_engine() -> tuple[Any, str | None]:
    """This machine's Docker engine, if it answers (a process deployment bundles without one)."""
    # lazy: start-up time
    from vllmgen.bundle.docker import DockerEngine
    from vllmgen.runner.executor import EngineError

    engine = DockerEngine("bundle", None)
    try:
        engine.ping()
    except EngineError as exc:
        engine.close()
        return None, f"no Docker engine here: {exc}"
    return engine, None


@bundle.command("load")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--node", "node_name", metavar="NAME", help="Load this node's part, here (this machine's Docker).")
@click.option("--all", "all_nodes", is_flag=True, help="Load every node, each through its docker_host (ssh).")
@click.option("--to", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="Where the spec and build/<name>/ are placed on this machine (apply reads them there).")
def load(folder: Path, node_name: str | None, all_nodes: bool, to: Path) -> None:
    """Check every part of the bundle FOLDER, then load its images (those missing by ID) and place its
    model where the spec expects it on each node. Idempotent: a second load transfers nothing."""
    # lazy: start-up time
    from vllmgen.bundle import load as loading
    from vllmgen.bundle.docker import DockerEngine

    if not node_name and not all_nodes:
        raise click.UsageError("say where to load: --node NAME (this host) or --all (every node's docker_host)")

    def say(line: str) -> None:
        click.echo(line, err=True)

    loaded = loading.run(folder, node_name, all_nodes, to, say, DockerEngine)
    for line in loaded.lines:
        click.echo(line)
    scope = f"--node {node_name}" if node_name else "--all"
    click.echo(f"next: vllmgen apply {loaded.spec} {scope} --build-dir {to / 'build'}", file=sys.stdout)
