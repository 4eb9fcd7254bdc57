"""The model as a Hugging Face cache snapshot, for a spec without ``model.host_path``.

The hub's cache layout (huggingface_hub, the same on the control machine and on every node)::

    <hub>/models--ORG--NAME/snapshots/<commit>/<files>   symlinks into ../../blobs/<sha>
    <hub>/models--ORG--NAME/refs/<branch or tag>         the commit it names

``bundle`` finds ``source``@``revision`` in this machine's cache and carries the snapshot's files
(the links followed: real files); ``bundle load`` places them at the same place under each node's
``hf_cache`` (mounted as the containers' HF cache, a process's ``HF_HOME``), where vLLM with
``HF_HUB_OFFLINE=1`` looks them up by commit. A branch name is written to ``refs/`` as well.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vllmgen.bundle.archive import BundleError
from vllmgen.spec.rules.offline import pinned

DEFAULT_REVISION = "main"  # what huggingface_hub and vLLM use when no revision is given


def hub_cache(env: Mapping[str, str] | None = None) -> Path:
    """This machine's hub cache, as huggingface_hub finds it: HF_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME."""
    env = os.environ if env is None else env
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def repo_folder(source: str) -> str:
    """models--ORG--NAME for ORG/NAME."""
    return "models--" + source.replace("/", "--")


def node_snapshot(hf_cache: str, source: str, commit: str) -> str:
    """Where a node keeps the snapshot: under the folder the spec mounts as its HF cache (HF_HOME)."""
    return f"{hf_cache.rstrip('/')}/hub/{repo_folder(source)}/snapshots/{commit}"


@dataclass(frozen=True)
class Snapshot:
    source: str
    revision: str  # as the spec gives it (main when it gives none)
    commit: str
    folder: Path  # snapshots/<commit> on this machine

    @property
    def ref(self) -> str | None:
        """The branch or tag name to record in refs/ on the nodes; None for a commit."""
        return None if self.revision == self.commit else self.revision

    @property
    def repo(self) -> str:
        return repo_folder(self.source)


def _download_hint(source: str, revision: str, cache: Path) -> str:
    return (f"run `hf download {source} --revision {revision}` (older: `huggingface-cli download {source} "
            f"--revision {revision}`) on this machine first (HF_HUB_CACHE={cache}), or set model.host_path")


def find(source: str, revision: str | None, cache: Path) -> Snapshot:
    """``source``@``revision`` in the hub cache ``cache``; a clear BundleError when it is not all there."""
    revision = revision or DEFAULT_REVISION
    repo = cache / repo_folder(source)
    if pinned(revision):
        commit = revision
    else:
        try:
            commit = (repo / "refs" / revision).read_text(encoding="utf-8").strip()
        except OSError:
            raise BundleError(f"the model {source}@{revision} is not in this machine's Hugging Face cache "
                              f"({repo / 'refs' / revision} is missing): " + _download_hint(source, revision, cache)
                              ) from None
    folder = repo / "snapshots" / commit
    if not folder.is_dir():
        raise BundleError(f"the model {source}@{revision} is not in this machine's Hugging Face cache "
                          f"({folder} is missing): " + _download_hint(source, revision, cache))
    dangling = sorted(str(path.relative_to(folder)) for path in folder.rglob("*")
                      if path.is_symlink() and not path.exists())
    if dangling:
        raise BundleError(f"the snapshot {folder} is incomplete ({len(dangling)} link(s) lead nowhere, e.g. "
                          f"{dangling[0]}): " + _download_hint(source, revision, cache))
    if not any(path.is_file() for path in folder.iterdir()):
        raise BundleError(f"the snapshot {folder} holds no files: " + _download_hint(source, revision, cache))
    return Snapshot(source, revision, commit, folder)
