"""``vllmgen bundle SPEC -o DIR`` on a machine with network access: every image built (or reused) on
its Docker engine and saved by ID, the model folder, the rendered deployment and its spec, written
as a bundle (``archive``): parts of a given size, each with its SHA-256, resumable."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vllmgen import __version__
from vllmgen.bundle import archive, contents, hfcache, wheels
from vllmgen.bundle.archive import BundleError, Item, Source, human, rate
from vllmgen.render.compile import compile_file
from vllmgen.render.fingerprint import spec_sha256
from vllmgen.render.write import check
from vllmgen.spec.container_layout import HF_CACHE_IN_CONTAINER
from vllmgen.targets import registry

DEPLOYMENT, MODEL = "deployment", "model"


class Engine(Protocol):
    """What bundling needs of the connected machine's Docker engine (``runner.sdk`` in real use)."""

    def image_id(self, reference: str) -> str | None: ...
    def image_labels(self, reference: str) -> dict[str, str] | None: ...
    def size(self, reference: str) -> int | None: ...
    def build(self, need: contents.ImageNeed, on_line: Callable[[str], None]) -> None: ...
    def pull(self, reference: str) -> None: ...
    def save(self, image_id: str) -> archive.ByteStream: ...


@dataclass(frozen=True)
class Request:
    spec: Path
    output: Path
    build_dir: Path = Path("build")
    part_size: int = 2 << 30
    model_dir: Path | None = None
    base_image: str | None = None
    router_base_image: str | None = None
    hf_cache: Path | None = None  # the hub cache holding the model's snapshot (default: hfcache.hub_cache())
    with_vllmgen: bool = False  # vllmgen's wheel and its dependencies', for the air-gapped control machine
    wheel_dependencies: bool = True


@dataclass
class Summary:
    lines: list[str] = field(default_factory=list)
    written: int = 0
    kept: int = 0


def deployment_files(spec: Path, name: str, artifacts: Iterable[Any]) -> dict[str, tuple[bytes, int]]:
    """The spec and build/<name>/ as apply reads them, under the names ``bundle load`` places them."""
    files = {f"spec/{spec.name}": (spec.read_bytes(), 0o644)}
    for artifact in artifacts:
        files[f"build/{name}/{artifact.path}"] = (artifact.data, 0o755 if artifact.executable else 0o644)
    return files


def _compiled(request: Request):  # noqa: ANN202
    compiled = compile_file(request.spec)
    target = registry.target(compiled.plan.runtime)
    if target.engine is None:  # nothing vllmgen applies on hosts: no `bundle load`, no offline apply
        raise BundleError(f"a bundle carries a deployment vllmgen applies to hosts; runtime.kind: {target.kind} is "
                          "applied by kubectl: push its images to the cluster's registry and apply build/ there")
    deploy_dir = request.build_dir / compiled.plan.name
    drift = check(compiled.artifacts, deploy_dir)
    if drift:
        raise BundleError(f"{deploy_dir} is out of date with {request.spec} ({len(drift)} file(s) differ): run "
                          f"`vllmgen render {request.spec}` first; images are built from what was rendered")
    return compiled, deploy_dir


def _deployment_source(files: dict[str, tuple[bytes, int]]) -> Source:
    segments = archive.tar_segments([], files)
    digest = hashlib.sha256()
    for segment in segments:
        digest.update(segment.data)
    item = Item(DEPLOYMENT, "deployment", digest.hexdigest(), archive.segments_size(segments))
    return Source(item, segments=segments)


def model_source(folder: Path, container_path: str, snapshot: hfcache.Snapshot | None = None) -> Source:
    """The model folder as one item; a Hugging Face snapshot says which (``bundle load`` places it in the
    nodes' HF cache, ``refs/`` included)."""
    if not folder.is_dir():
        raise BundleError(f"the model folder {folder} does not exist on this machine (give --model-dir)")
    files = archive.tree(folder)
    segments = archive.tar_segments(files)
    meta: dict[str, Any] = {"files": sum(1 for f in files if not f.folder), "bytes": sum(f.size for f in files),
                            "container_path": container_path}
    if snapshot is not None:
        meta["hf"] = {"source": snapshot.source, "revision": snapshot.revision, "commit": snapshot.commit,
                      "ref": snapshot.ref}
    item = Item(MODEL, "model", archive.tree_key(files), archive.segments_size(segments), meta)
    return Source(item, segments=segments)


def _group(needs: list[contents.ImageNeed], ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One item per image ID: its tags, roles and nodes (an image two roles share is carried once)."""
    grouped: dict[str, dict[str, Any]] = {}
    for need in needs:
        entry = grouped.setdefault(ids[need.reference], {"tags": [], "roles": [], "nodes": []})
        for key, values in (("tags", [need.reference]), ("roles", [need.role]), ("nodes", need.nodes)):
            entry[key] += [v for v in values if v not in entry[key]]
    return grouped


def _ensure(engine: Engine, need: contents.ImageNeed, say: Callable[[str], None]) -> str:
    """The image's ID on this machine's engine: built as apply builds it (reused when its label
    matches), or pulled by its tag when it is not here."""
    if need.dockerfile is not None:
        labels = engine.image_labels(need.reference)
        if labels is None or any(labels.get(k) != v for k, v in need.labels.items()):
            say(f"image {need.reference}: building ({need.role})")
            engine.build(need, lambda line: say(f"image {need.reference}: {line}"))
        else:
            say(f"image {need.reference}: already built from this Dockerfile")
    elif engine.image_id(need.reference) is None:
        say(f"image {need.reference}: pulling")
        engine.pull(need.reference)
    image_id = engine.image_id(need.reference)
    if not image_id:
        raise BundleError(f"image {need.reference} is not on this machine's Docker engine after building/pulling it")
    return image_id


def make(request: Request, engine: Engine | None, say: Callable[[str], None]) -> Summary:
    with tempfile.TemporaryDirectory(prefix="vllmgen-wheels-") as wheelhouse:
        return _make(request, engine, say, Path(wheelhouse))


def wheels_source(folder: Path) -> Source:
    files = archive.tree(folder)
    segments = archive.tar_segments(files)
    item = Item(wheels.WHEELS, "wheels", archive.tree_key(files), archive.segments_size(segments),
                {"files": [f.name for f in files if not f.folder]})
    return Source(item, segments=segments)


def _make(request: Request, engine: Engine | None, say: Callable[[str], None], wheelhouse: Path) -> Summary:
    compiled, deploy_dir = _compiled(request)
    plan, spec = compiled.plan, compiled.valid.spec
    needs = contents.images(plan, deploy_dir, base_image=request.base_image,
                            router_base_image=request.router_base_image)
    if needs and engine is None:
        raise BundleError("the deployment runs images and there is no Docker engine to build and save them")
    ids = {need.reference: _ensure(engine, need, say) for need in needs} if engine is not None else {}
    sources = [_deployment_source(deployment_files(request.spec, plan.name, compiled.artifacts))]
    folder = contents.model_folder(spec.model.host_path, request.model_dir)
    if folder is not None:
        sources.append(model_source(folder, spec.model.path))
    elif spec.model.modelscope:
        say(f"model: not bundled: {spec.model.source} comes from ModelScope; the hosts download it (not offline)")
    else:
        snapshot = hfcache.find(spec.model.source, spec.model.revision, request.hf_cache or hfcache.hub_cache())
        say(f"model: {snapshot.source}@{snapshot.revision}: the Hugging Face cache snapshot {snapshot.folder}")
        sources.append(model_source(snapshot.folder, HF_CACHE_IN_CONTAINER, snapshot))
    for image_id, meta in _group(needs, ids).items():
        item = Item(f"image-{image_id.removeprefix('sha256:')[:12]}", "image", image_id, None,
                    {"id": image_id, **meta})
        sources.append(Source(item, stream=lambda i=image_id: engine.save(i)))  # type: ignore[union-attr,misc]
    if request.with_vllmgen:
        built = wheels.build(wheelhouse, say, dependencies=request.wheel_dependencies)
        say(f"wheels: {len(built)} wheel(s), {human(sum(w.stat().st_size for w in built))}")
        sources.append(wheels_source(wheelhouse))
    writer = archive.Writer(request.output, request.part_size, archive.Progress(say))
    summary = Summary()
    for source in sources:
        done = writer.write(source)
        summary.written += done.written
        summary.kept += done.kept
        summary.lines.append(
            f"{done.item.key}: {human(done.item.size)} in {len(done.item.parts)} part(s); "
            + (f"{human(done.written)} written in {done.seconds:.1f} s ({rate(done.written, done.seconds)})"
               if done.written else "nothing written")
            + (f", {human(done.kept)} kept from an earlier write" if done.kept else ""))
    writer.finish({"vllmgen": __version__, "name": plan.name, "spec_file": request.spec.name,
                   "spec_sha256": spec_sha256(request.spec.read_bytes()), "offline": plan.offline},
                  [source.item for source in sources])
    return summary


def dry_run(request: Request, engine: Engine | None, engine_error: str | None) -> list[str]:
    """What would go in, with sizes where known; nothing is built, pulled or written."""
    compiled, deploy_dir = _compiled(request)
    plan, spec = compiled.plan, compiled.valid.spec
    lines = [f"# vllmgen bundle --dry-run {request.spec}: what {request.output} would hold; nothing was written"]
    if engine is None and engine_error:
        lines.append(f"# {engine_error}")
    files = deployment_files(request.spec, plan.name, compiled.artifacts)
    lines.append(f"deployment  {human(archive.segments_size(archive.tar_segments([], files)))}  "
                 f"{request.spec.name} and build/{plan.name}/ ({len(files) - 1} files)")
    total = archive.segments_size(archive.tar_segments([], files))
    folder = contents.model_folder(spec.model.host_path, request.model_dir)
    where = f"-> {spec.model.path} in the containers"
    if folder is None and spec.model.modelscope:
        lines.append(f"model       -  not bundled: {spec.model.source} comes from ModelScope")
    elif folder is None:
        try:
            snapshot = hfcache.find(spec.model.source, spec.model.revision, request.hf_cache or hfcache.hub_cache())
        except BundleError as exc:
            lines.append(f"model       ?  {exc}")
        else:
            folder = snapshot.folder
            where = (f"-> {hfcache.node_snapshot(spec.model.hf_cache, snapshot.source, snapshot.commit)} "
                     f"on each node (model.hf_cache, or the node's), {snapshot.source}@{snapshot.revision}")
    if folder is None:
        pass
    elif not folder.is_dir():
        lines.append(f"model       ?  {folder} does not exist on this machine (give --model-dir)")
    else:
        tree = archive.tree(folder)
        size = archive.segments_size(archive.tar_segments(tree))
        total += size
        lines.append(f"model       {human(size)}  {folder} ({sum(1 for f in tree if not f.folder)} files) {where}")
    unknown = False
    for need in contents.images(plan, deploy_dir, base_image=request.base_image,
                                router_base_image=request.router_base_image):
        image_size = engine.size(need.reference) if engine is not None else None
        if engine is None:
            how = "size unknown (no Docker engine here)"
        elif image_size is None:
            how = "not on this machine: would be " + ("built" if need.dockerfile is not None else "pulled")
        else:
            labels = engine.image_labels(need.reference) or {}
            stale = need.dockerfile is not None and any(labels.get(k) != v for k, v in need.labels.items())
            how = "here, but would be built again (its Dockerfile changed)" if stale else "here"
        unknown |= image_size is None
        total += image_size or 0
        lines.append(f"image       {human(image_size) if image_size is not None else '?'}  {need.reference} ({need.role}; "
                     f"nodes {', '.join(need.nodes)}): {how}")
    if request.with_vllmgen:
        unknown = True
        lines.append(f"wheels      ?  vllmgen {__version__} from {wheels.source_tree()}"
                     + (" and its dependencies" if request.wheel_dependencies else "")
                     + " (pip wheel), for the air-gapped control machine")
    parts = -(-total // request.part_size)
    lines.append(f"total       {'at least ' if unknown else ''}{human(total)}, in parts of at most "
                 f"{human(request.part_size)} (about {parts} or more: each item has its own)")
    return lines
