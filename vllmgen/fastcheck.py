"""``render SPEC --check`` on an unchanged tree, decided without running (or importing) the pipeline.

The manifest records the spec's bytes and the compiler that read them (``fingerprint``) and every
output's hash. When both inputs match and every output on disk still has its recorded hash, the
full render would produce those same bytes: the tree is up to date. Anything else (a changed spec
or compiler, an edited or missing file, a spec that had warnings, a name not found by the quick
look below) falls back to the full check, which alone reports drift, with its diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from vllmgen import fingerprint

_NAME = re.compile(rb"^name:[ \t]*[\"']?([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)[\"']?[ \t]*(?:#.*)?$", re.MULTILINE)


def up_to_date(spec: Path, output: Path) -> Path | None:
    """The deployment folder when it is provably up to date; None: run the full check."""
    try:
        data = spec.read_bytes()
    except OSError:
        return None
    names = _NAME.findall(data)
    if len(names) != 1:  # a flow-style or unusual spec: leave it to the real parser
        return None
    target = output / names[0].decode()
    try:
        manifest = json.loads((target / "manifest.json").read_bytes())
        recorded = manifest["inputs"]
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(recorded, dict) or not isinstance(files, dict) or recorded.get("warnings") != 0:
        return None
    if recorded.get("spec_sha256") != fingerprint.spec_sha256(data):
        return None
    if recorded.get("compiler_sha256") != fingerprint.compiler_sha256():
        return None
    for relative, digest in files.items():
        path = target / relative
        if fingerprint.file_sha256(path) != digest:
            return None
        if relative.endswith(".sh") and not os.access(path, os.X_OK):
            return None
    return target
