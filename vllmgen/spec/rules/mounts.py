"""Mount targets that clash inside the container, found at validate instead of at ``docker run``.

Every container gets the HF cache, the model folder (with ``model.host_path``), each
``runtime.volumes`` entry, on serving nodes the serve config file, and the engine caches
(``caches.keep``). Two mounts on one target
fail with ``Duplicate mount point``. A mount inside another puts its mount point in the outer
one's host folder: Docker creates it there, or fails when that mount is read-only; and the config
is a file, so nothing fits under it. So vllmgen's own mounts never nest with any other; two of the
user's volumes may nest, unless the outer one is read-only.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

from vllmgen.plan.engine import CACHE_IN_CONTAINER
from vllmgen.errors import Path
from vllmgen.plan.plan import CONFIG_IN_CONTAINER, HF_CACHE_IN_CONTAINER
from vllmgen.spec.rules.core import Finding
from vllmgen.spec.model import Spec

MODEL_PATH: Path = ("model", "path")


@dataclass(frozen=True)
class _Mount:
    what: str
    target: str
    read_only: bool
    field: Path | None  # the spec field that chose the target; None: fixed by vllmgen

    @property
    def normal(self) -> str:
        return posixpath.normpath(self.target)


def _mounts(spec: Spec) -> list[_Mount]:
    mounts = [_Mount("the HF cache", HF_CACHE_IN_CONTAINER, False, None)]
    if spec.model.host_path or any(node.model_host_path for node in spec.nodes):
        mounts.append(_Mount("model.path", spec.model.path, True, MODEL_PATH))
    mounts += [
        _Mount(f"runtime.volumes[{index}]", volume.container, volume.read_only,
               ("runtime", "volumes", index, "container"))
        for index, volume in enumerate(spec.runtime.volumes)
    ]
    mounts.append(_Mount("the serve config file", CONFIG_IN_CONTAINER, True, None))
    if spec.caches.keep:
        mounts.append(_Mount("the engine caches (caches.keep)", CACHE_IN_CONTAINER, False, None))
    return mounts


def _inside(inner: str, outer: str) -> bool:
    return inner != outer and (outer == "/" or inner.startswith(outer + "/"))


def mount_clashes(spec: Spec) -> Iterator[Finding]:
    mounts = _mounts(spec)
    for index, later in enumerate(mounts):
        for earlier in mounts[:index]:
            # reported where the user chose a path: the later volume, else model.path
            here, there = (later, earlier) if later.field else (earlier, later)
            message = _clash(here, there)
            if message and here.field:
                yield Finding(here.field, message)


def _clash(here: _Mount, there: _Mount) -> str | None:
    if here.normal == there.normal:
        return (f"{here.target} is also where {there.what} is mounted; "
                "docker run would fail with 'Duplicate mount point': choose another container path")
    if _inside(here.normal, there.normal):
        inner, outer = here, there
    elif _inside(there.normal, here.normal):
        inner, outer = there, here
    else:
        return None
    user_volumes = inner.field != MODEL_PATH and outer.field != MODEL_PATH and None not in (inner.field, outer.field)
    if user_volumes and not outer.read_only:
        return None  # the user's own nesting, inside a writable folder of theirs
    if outer.target == CONFIG_IN_CONTAINER:
        why = "a file: nothing can be mounted under it"
    elif outer.read_only:
        why = "mounted read-only: Docker cannot create the mount point in it"
    else:
        why = "a host folder: Docker would create the mount point there"
    relation = (f"{here.target} is inside {there.what} ({there.target})" if inner is here
                else f"{here.target} holds {there.what} ({there.target})")
    return f"{relation}, and {outer.target} is {why}; choose another container path"
