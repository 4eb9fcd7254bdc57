"""What an output was made from: the spec's bytes and the compiler that read them, as hashes.

Recorded in each manifest so ``render --check`` can tell an unchanged tree without running the
pipeline. Only the standard library, and of it only what the quick check needs (no pathlib, no
importlib.metadata: together ~15 ms, a third of that check's budget): this runs before anything
heavy is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

from vllmgen import __version__

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # vllmgen/, this is vllmgen/render/
# The pipeline's folders (relative to the package; "" is its top level). Every module in them counts but
# those that never shape output (below), so a new pipeline module is covered without being listed anywhere.
COMPILER_FOLDERS = ("", "spec", "spec/rules", "plan", "render", "targets", "targets/docker", "targets/process")
NOT_COMPILER = frozenset({
    "__main__.py", "plan/nccl.py", "render/fastcheck.py", "render/swap.py", "render/write.py",
    # the runner's engines, kept beside their target but not read by render
    "targets/docker/daemon_json.py", "targets/docker/daemon_step.py", "targets/docker/dockerargs.py",
    "targets/docker/commands.py", "targets/docker/engine.py", "targets/docker/engineapi.py", "targets/docker/sdk.py",
    "targets/process/commands.py", "targets/process/procexec.py",
})


def spec_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files(folder: str, keep) -> list[tuple[str, str]]:  # noqa: ANN001 - a predicate on the name
    """(folder's own name, file name) of the regular files in ``folder`` that ``keep`` accepts."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    base = os.path.basename(folder)
    return [(base, name) for name in names
            if not name.startswith(".") and keep(name) and os.path.isfile(os.path.join(folder, name))]


def compiler_files() -> list[str]:
    """Everything the pure pipeline reads: its modules, the flag catalogs, the templates. The runner,
    doctor and command line do not shape output and are left out, so editing them stales no build/."""
    templates = os.path.join(PACKAGE, "templates")
    if not os.path.isdir(templates):  # a source checkout: templates/ beside the package
        templates = os.path.join(os.path.dirname(PACKAGE), "templates")
    found, folders = [], {}  # folders by their own name (each name is unique)
    for relative in COMPILER_FOLDERS:
        folder = os.path.join(PACKAGE, relative) if relative else PACKAGE
        folders[os.path.basename(folder)] = folder
        found += _files(folder, lambda name, relative=relative: name.endswith(".py")
                        and os.path.join(relative, name) not in NOT_COMPILER)
    found += _files(os.path.join(PACKAGE, "spec", "catalogs"), lambda name: name.endswith(".json"))
    found += _files(templates, lambda name: True)
    folders.update({"catalogs": os.path.join(PACKAGE, "spec", "catalogs"), os.path.basename(templates): templates})
    return [os.path.join(folders[parent], name) for parent, name in sorted(found)]


# Libraries whose behaviour shapes the output: an upgrade of one may change bytes.
SHAPING_LIBRARIES = ("jinja2", "pydantic", "pydantic-core", "ruamel.yaml")


def _normal(name: str) -> str:
    """A distribution name as its dist-info folder spells it (PEP 503 normalised, '_' for the separator)."""
    out: list[str] = []
    for char in name.lower():
        if char in "-_.":
            if not out or out[-1] != "_":
                out.append("_")
        else:
            out.append(char)
    return "".join(out)


def installed_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Each distribution's version as ``importlib.metadata.version`` gives it (the first ``*.dist-info``
    on sys.path, its METADATA's Version), read directly; None for one not installed."""
    wanted = {_normal(name): name for name in names}
    found: dict[str, str | None] = {}
    for entry in sys.path:
        try:
            listing = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        for item in listing:
            if not item.endswith((".dist-info", ".egg-info")):
                continue
            name = wanted.get(_normal(item.rpartition(".")[0].partition("-")[0]))
            if name is None or name in found:
                continue
            version = _metadata_version(os.path.join(entry or ".", item))
            if version is not None:
                found[name] = version
        if len(found) == len(wanted):
            break
    missing = [name for name in names if name not in found]
    if missing:  # not where a dist-info would be: ask importlib.metadata, which knows every layout
        # lazy: rarely needed, slow to import
        from importlib import metadata

        for name in missing:
            try:
                found[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                found[name] = None
    return found


def _metadata_version(folder: str) -> str | None:
    for file in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(folder, file), encoding="utf-8") as handle:
                for line in handle:
                    if line.startswith("Version:"):
                        return line[len("Version:"):].strip()
                    if not line.strip():  # the headers end at the first empty line
                        break
        except OSError:
            continue
    return None


def compiler_sha256() -> str:
    digest = hashlib.sha256(__version__.encode())
    versions = installed_versions(SHAPING_LIBRARIES)
    for name in SHAPING_LIBRARIES:
        version = versions[name]
        digest.update(f"\0{name}=={version}".encode() if version is not None else f"\0{name} absent".encode())
    for path in compiler_files():
        digest.update(f"\0{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)}\0".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()


def inputs(spec_bytes: bytes, warnings: int) -> dict[str, object]:
    """What an output is made from; the manifest adds ``outputs_sha256`` once the files are known."""
    return {"compiler_sha256": compiler_sha256(), "spec_sha256": spec_sha256(spec_bytes), "warnings": warnings,
            "vllmgen": __version__}


def outputs_sha256(files: object) -> str:
    """A hash of the manifest's file list (path -> sha256), so an entry dropped from it is noticed."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None
