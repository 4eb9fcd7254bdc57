"""What an output was made from: the spec's bytes and the compiler that read them, as hashes.

Recorded in each manifest so ``render --check`` can tell an unchanged tree without running the
pipeline. Only the standard library: this runs before anything heavy is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

from vllmgen import __version__

PACKAGE = Path(__file__).resolve().parent
# Top-level modules that never shape output (the command line, review tools, log reading). Every
# other module counts, so a new pipeline module is covered without being listed anywhere.
NOT_COMPILER = frozenset({
    "__main__.py", "cli.py", "cli_review.py", "cli_runner.py", "entry.py", "fastcheck.py", "gitspec.py",
    "nccl.py", "phases.py", "precommit.py", "review.py", "reference.py", "swap.py", "write.py",
})


def spec_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _compiler_files() -> list[Path]:
    """Everything the pure pipeline reads: its modules, the flag catalogs, the templates. The runner,
    doctor and command line do not shape output and are left out, so editing them stales no build/."""
    templates = PACKAGE / "templates"
    if not templates.is_dir():  # a source checkout: templates/ beside the package
        templates = PACKAGE.parent / "templates"
    files = [p for p in PACKAGE.glob("*.py") if p.name not in NOT_COMPILER]
    files += PACKAGE.glob("catalogs/*.json")
    files += (p for p in templates.glob("*") if p.is_file())
    return sorted(files, key=lambda p: (p.parent.name, p.name))


# Libraries whose behaviour shapes the output: an upgrade of one may change bytes.
SHAPING_LIBRARIES = ("jinja2", "pydantic", "pydantic-core", "ruamel.yaml")


def compiler_sha256() -> str:
    digest = hashlib.sha256(__version__.encode())
    for name in SHAPING_LIBRARIES:
        try:
            digest.update(f"\0{name}=={metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"\0{name} absent".encode())
    for path in _compiler_files():
        digest.update(f"\0{path.parent.name}/{path.name}\0".encode())
        digest.update(path.read_bytes())
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
