"""What apply needs on a node before it runs without network: the images of the node's containers (the
plan's one list, ``Plan.workloads``, as ``vllmgen bundle`` carries them) and the model's files in the
Hugging Face cache. With ``offline: true`` a missing one fails (apply would refuse to build or pull it,
vLLM to download it) with the ``bundle load`` that brings it; otherwise the row says what apply will
build or pull and what vLLM will download at start.

Pure: the facts come through the probe (``Probe.image``, ``list_dir``, ``read_text``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from vllmgen.bundle import hfcache
from vllmgen.doctor import storage
from vllmgen.doctor.checks import CheckResult, fail, ok
from vllmgen.spec.rules.offline import pinned

CARRY = "on a connected machine `vllmgen bundle SPEC -o DIR`; carry DIR here; `vllmgen bundle load DIR --node {node}`"


def with_carry(result: CheckResult, node: str) -> CheckResult:
    """A failed model check of an offline node: its fix also says how a bundle brings the files."""
    if result.status != "fail":
        return result
    return replace(result, fix=(result.fix + "; or " if result.fix else "") + CARRY.format(node=node))


@dataclass(frozen=True)
class ImageExpectation:
    """One image a container of this node runs."""

    reference: str
    role: str  # vllm, router, gateway, prometheus, grafana (Workload.role)
    labels: tuple[tuple[str, str], ...] = ()  # a built image: the labels apply compares to use it as it is
    built: bool = False  # built from the deployment's Dockerfile; else pulled by its tag


@dataclass(frozen=True)
class SnapshotExpectation:
    """The model as a Hugging Face cache snapshot under the node's ``hf_cache``."""

    hf_cache: str  # the host folder mounted as the HF cache (HF_HOME): the hub is its hub/
    source: str
    revision: str | None


def check_image(node: str, expect: ImageExpectation, found: tuple[str, Mapping[str, str]] | None,
                offline: bool) -> CheckResult:
    """``found``: the image's ID and labels on this host's Docker engine, None when it is not there."""
    name = f"image.{expect.role}"
    how = "build" if expect.built else "pull"
    if found is None:
        if offline:
            return fail(name, f"{expect.reference} is not on this host, and offline: true forbids apply to {how} it",
                        CARRY.format(node=node))
        return ok(name, f"{expect.reference} is not here yet: apply will {how} it")
    image_id, labels = found
    stale = [key for key, value in expect.labels if labels.get(key) != value]
    if not stale:
        return ok(name, f"{expect.reference} is here ({image_id.removeprefix('sha256:')[:12]})")
    why = (f"{expect.reference} is here ({image_id.removeprefix('sha256:')[:12]}) but was built from another "
           f"Dockerfile than the spec renders ({stale[0]} {labels.get(stale[0], 'missing')}, wanted "
           f"{dict(expect.labels)[stale[0]]})")
    if offline:
        return fail(name, f"{why}: apply would build it again, which offline: true forbids",
                    "bundle from the same spec and load it again (" + CARRY.format(node=node) + "); an image built "
                    "FROM another base needs the same --base-image / --router-base-image given to doctor and apply")
    return ok(name, f"{why}: apply will build it again")


def _snapshot_commit(probe: Any, repo: str, revision: str) -> str | None:
    if pinned(revision):
        return revision
    text = probe.read_text(f"{repo}/refs/{revision}")
    return text.strip() if text and text.strip() else None


def check_snapshot(node: str, probe: Any, expect: SnapshotExpectation, offline: bool, *,
                   weights: bool = True) -> CheckResult:
    """The snapshot of source@revision where vLLM (HF_HUB_OFFLINE=1) looks it up: refs/ names the commit
    for a branch or tag, snapshots/<commit> holds config.json and the weights its index names."""
    name = "model.hf_snapshot"
    revision = expect.revision or hfcache.DEFAULT_REVISION
    repo = f"{expect.hf_cache.rstrip('/')}/hub/{hfcache.repo_folder(expect.source)}"
    commit = _snapshot_commit(probe, repo, revision)
    if commit is None:
        missing = f"{expect.source}@{revision} is not in this host's Hugging Face cache ({repo}/refs/{revision} is missing)"
    else:
        folder = hfcache.node_snapshot(expect.hf_cache, expect.source, commit)
        entries = probe.list_dir(folder)
        if entries is not None:
            index = probe.read_json(f"{folder}/{storage.INDEX}") if storage.INDEX in entries else None
            found = storage.check_model_path(folder, entries, index, weights=weights)
            if found.status == "ok" or offline:
                found = with_carry(found, node) if offline else found
                return replace(found, name=name, detail=f"{expect.source}@{revision}: {found.detail}")
            return replace(found, name=name, status="warn", detail=f"{expect.source}@{revision}: {found.detail}")
        missing = f"{expect.source}@{revision} is not in this host's Hugging Face cache ({folder} is missing)"
    if offline:
        return fail(name, f"{missing}, and offline: true keeps vLLM from downloading it",
                    CARRY.format(node=node) + f"; or `hf download {expect.source} --revision {revision}` with "
                    f"HF_HOME={expect.hf_cache} where the hub is reachable")
    return ok(name, f"{missing}: vLLM downloads it at start")
