"""``render SPEC --check`` on an unchanged tree, decided without running (or importing) the pipeline.

The manifest records the spec's bytes and file name and the compiler that read them
(``fingerprint``), every output's hash, and a hash of that list. When all of these match and every
output on disk still has its recorded hash, the full render would produce those same bytes: the
tree is up to date. Anything else (a changed spec, file name or compiler, an edited or missing
file, a manifest not exactly as vllmgen writes it or naming paths outside the folder, a spec that
had warnings, a spec that is not a regular file, a name not found by the quick look below) falls
back to the full check, which alone reports drift, with its diff. A manifest edited by hand
consistently (every hash recomputed) is trusted: the manifest is a record, not a signature.
"""

from __future__ import annotations

import json
import os
import re
import stat

from vllmgen import __version__
from vllmgen.render import fingerprint

_NAME = re.compile(rb"^name:[ \t]*[\"']?([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)[\"']?[ \t]*(?:#.*)?$", re.MULTILINE)


def up_to_date(spec: str | os.PathLike[str], output: str | os.PathLike[str], warnings: int = 0) -> str | None:
    """The deployment folder when it is provably up to date; None: run the full check. ``warnings``: how many
    the spec has, when the caller validated it and printed them (the runner); ``render --check`` has not."""
    try:
        if not stat.S_ISREG(os.stat(spec).st_mode):  # a pipe read here would be empty for the full check
            return None
        with open(spec, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    names = _NAME.findall(data)
    if len(names) != 1:  # a flow-style or unusual spec: leave it to the real parser
        return None
    target = os.path.join(output, names[0].decode())
    manifest = _manifest(target)
    if (manifest is None or manifest.get("spec") != os.path.basename(spec)
            or manifest.get("deployment") != names[0].decode()):
        return None  # the spec's file name is in every header: another name is another output
    recorded, files = manifest["inputs"], manifest["files"]
    if recorded.get("warnings") != warnings or recorded.get("outputs_sha256") != fingerprint.outputs_sha256(files):
        return None
    if recorded.get("spec_sha256") != fingerprint.spec_sha256(data):
        return None
    if recorded.get("compiler_sha256") != fingerprint.compiler_sha256():
        return None
    for relative, digest in files.items():
        path = os.path.join(target, relative)
        if fingerprint.file_sha256(path) != digest:
            return None
        if relative.endswith(".sh") and not os.access(path, os.X_OK):
            return None
    return target


def _manifest(target: str) -> dict | None:
    """The manifest, if it is exactly as vllmgen writes it and names only files inside ``target``."""
    try:
        with open(os.path.join(target, "manifest.json"), "rb") as handle:
            raw = handle.read()
        manifest = json.loads(raw)
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or raw != (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode():
        return None
    if manifest.get("generated_by") != f"vllmgen {__version__}":
        return None
    files, recorded = manifest.get("files"), manifest.get("inputs")
    if not isinstance(files, dict) or not isinstance(recorded, dict):
        return None
    for relative in files:
        parts = [part for part in relative.split("/") if part not in ("", ".")]  # as PurePosixPath's parts
        if not parts or relative.startswith("/") or ".." in parts or "\\" in relative or "manifest.json" == relative:
            return None
    return manifest
