"""``vllmgen bundle load DIR (--node NAME | --all)``: the bundle's deployment placed on this machine,
its images and model on each node's host — locally, or over the same ssh transport apply uses.

Order: the deployment (spec and build/) is checked and placed first; then every part the nodes in
scope need is checked (size and SHA-256) before anything is loaded, and a bad part is named; then
per node, images missing by ID are `docker load`ed (streamed from the parts, each checked again as
read) and tagged, and the model folder is unpacked beside its place and moved there in one rename.
A second load finds everything in place and transfers nothing.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vllmgen.bundle import archive, hfcache, unpack
from vllmgen.bundle.archive import BundleError, human, rate
from vllmgen.render.artifacts import Artifact
from vllmgen.render.compile import plan_file
from vllmgen.render.fingerprint import spec_sha256
from vllmgen.render.write import check, write
from vllmgen.runner import host as hosts
from vllmgen.runner import targets

MARKER = ".vllmgen-bundle"  # in a model folder bundle load placed: the digest of what it holds
# sh -c PROBE vllmgen PATH: what is at a model's place now
PROBE = ('if [ -f "$1/%s" ]; then printf "ours:"; cat -- "$1/%s"; elif [ ! -e "$1" ]; then echo absent; '
         'elif [ -d "$1" ] && [ -z "$(ls -A -- "$1")" ]; then echo empty; else echo foreign; fi') % (MARKER, MARKER)
INCOMING = ".vllmgen-incoming"  # beside a model's place while it is unpacked
# sh -c PLACE vllmgen PATH DIGEST < model.tar: unpacked beside PATH, then renamed into place; a half
# transfer leaves only PATH.vllmgen-incoming, which the next load replaces. On this machine the
# unpacking between CLEAR and COMMIT is ``unpack.unpack`` instead of tar (one copy fewer).
NAMES = 'set -e; t="$1"; n="$t' + INCOMING + '"; '
CLEAR = 'rm -rf -- "$n"; mkdir -p -- "$n"; '
COMMIT = ('printf %s "$2" > "$n/' + MARKER + '"; '
          'if [ -e "$t" ]; then if [ -f "$t/' + MARKER + '" ] || [ -z "$(ls -A -- "$t")" ]; then rm -rf -- "$t"; '
          'else echo "$t holds files vllmgen did not place" >&2; exit 3; fi; fi; '
          'mkdir -p -- "$(dirname -- "$t")"; mv -- "$n" "$t"')
# as a user's tar -x even as root: owned by who loads, modes less the umask (a bundle is input)
PLACE = NAMES + CLEAR + 'tar -x --no-same-owner --no-same-permissions -f - -C "$n"; ' + COMMIT

# sh -c WRITE_REF vllmgen REFS BRANCH COMMIT: the branch names the commit in the node's HF cache
WRITE_REF = ('set -e; f="$1/$2"; [ "$(cat -- "$f" 2>/dev/null)" = "$3" ] && exit 0; '
             'mkdir -p -- "$(dirname -- "$f")"; printf %s "$3" > "$f.vllmgen-incoming"; mv -- "$f.vllmgen-incoming" "$f"')


class NodeEngine(Protocol):
    host: hosts.Host

    def ping(self) -> None: ...
    def image_id(self, reference: str) -> str | None: ...
    def load(self, chunks: Iterable[bytes]) -> str: ...
    def tag(self, image_id: str, reference: str) -> None: ...
    def close(self) -> None: ...


@dataclass
class Loaded:
    lines: list[str] = field(default_factory=list)
    transferred: int = 0
    spec: Path | None = None


def item_digest(item: Mapping[str, Any]) -> str:
    """What a placed model folder is marked with: its parts' checksums, in order."""
    return spec_sha256("\n".join(part["sha256"] for part in item["parts"]).encode())


# --- the deployment on this machine -----------------------------------------------------------------


def place_deployment(folder: Path, manifest: Mapping[str, Any], to: Path) -> tuple[Path, bool]:
    """The spec and build/<name>/ under ``to``; (the spec's path, whether anything was written)."""
    item = next((i for i in manifest["items"] if i["kind"] == "deployment"), None)
    if item is None:
        raise BundleError(f"{folder / archive.MANIFEST} lists no deployment")
    problems = archive.check_parts(folder, [item])
    if problems:
        raise BundleError("the bundle's deployment is damaged; nothing was loaded:\n  " + "\n  ".join(problems))
    data = b"".join(archive.read_item(folder, item))  # the spec and text files: small
    files: dict[str, tuple[bytes, bool]] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            if handle is not None:
                files[member.name] = (handle.read(), bool(member.mode & 0o111))
    spec_name, name = manifest["spec_file"], manifest["name"]
    spec_bytes = files.get(f"spec/{spec_name}", (b"", False))[0]
    if spec_sha256(spec_bytes) != manifest["spec_sha256"]:
        raise BundleError(f"the bundle's spec {spec_name} does not hash as its manifest says; nothing was loaded")
    spec_path = to / spec_name
    changed = False
    if spec_path.exists():
        if spec_path.read_bytes() != spec_bytes:
            raise BundleError(f"{spec_path} exists and differs from the bundle's spec; nothing was loaded: move it "
                              "away, or load into another folder (--to)")
    else:
        to.mkdir(parents=True, exist_ok=True)
        spec_path.write_bytes(spec_bytes)
        changed = True
    prefix = f"build/{name}/"
    artifacts = [Artifact(path.removeprefix(prefix), data.decode("utf-8"), executable)
                 for path, (data, executable) in sorted(files.items()) if path.startswith(prefix)]
    target = to / "build" / name
    if check(artifacts, target):
        write(artifacts, target)
        changed = True
    return spec_path, changed


# --- images and the model on a node -----------------------------------------------------------------


def pipe(host: hosts.Host, argv: list[str], feed: Iterable[bytes] | Callable[[int], None]) -> hosts.Completed:
    """``argv`` on the node's host with ``feed`` on its stdin (ssh for an ssh:// node): chunks, or a
    function writing to the pipe's descriptor itself (``archive.splice_item``). When feeding fails the
    command is stopped (its process group, locally) before its input is whole."""
    if isinstance(host, hosts.SshHost):
        command = host.ssh_argv(argv)
    elif hosts.is_local(host):
        command = argv
    else:
        raise hosts.NoHostAccess(f"placing the model needs the host itself, and {host.description} reaches only "
                                 "its Docker API: give the node an ssh:// docker_host, or load with --node on that host")
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out, stderr=err, start_new_session=True)
        assert proc.stdin is not None
        try:
            if callable(feed):
                feed(proc.stdin.fileno())
            else:
                for data in feed:
                    proc.stdin.write(data)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the command ended early: its exit status and stderr say why
        except BaseException:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the shell and its tar, nothing else
            except ProcessLookupError:
                pass
            try:
                proc.stdin.close()
            except OSError:
                pass
            proc.wait()
            raise
        rc = proc.wait()
        err.seek(0)
        out.seek(0)
        return hosts.Completed(rc, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"))


def _host_path(host: hosts.Host, path: str) -> str:
    if path == "~" or path.startswith("~/"):
        return host.home() + path[1:]
    return path


@dataclass
class NodeLoad:
    """What one node needs from the bundle: its images, and where its model goes (if any)."""

    name: str
    images: list[Mapping[str, Any]]
    model_path: str | None
    model_ref: tuple[str, str, str] | None = None  # a Hugging Face snapshot's (refs folder, branch, commit)


def needs(manifest: Mapping[str, Any], spec: Any, names: tuple[str, ...]) -> list[NodeLoad]:
    model = next((i for i in manifest["items"] if i["kind"] == "model"), None)
    out = []
    for node in spec.nodes:
        if node.name not in names:
            continue
        images = [i for i in manifest["items"] if i["kind"] == "image" and node.name in i["nodes"]]
        hf = model.get("hf") if model is not None else None
        if hf is not None:  # the snapshot goes into the HF cache the node's containers (or processes) read
            where = hfcache.node_snapshot(node.hf_cache or spec.model.hf_cache, hf["source"], hf["commit"])
            ref = (where.rsplit("/snapshots/", 1)[0] + "/refs", hf["ref"], hf["commit"]) if hf.get("ref") else None
            out.append(NodeLoad(node.name, images, where, ref))
            continue
        where = node.model_host_path or spec.model.host_path
        out.append(NodeLoad(node.name, images, where if model is not None and where else None))
    return out


def load_node(folder: Path, manifest: Mapping[str, Any], need: NodeLoad, engine: NodeEngine,
              say: Callable[[str], None], sent_before: int = 0,
              checked: Mapping[str, archive.Identity] | None = None) -> int:
    """One node's model, then its images; the bytes sent to it. The model's parts are hashed while they
    are sent (``archive.splice_item``, or ``unpack`` here) and it is moved into place only when all
    match: on the first node, before any image is loaded. ``checked``: the image parts ``check_needed``
    hashed, read again without hashing them twice (``archive.read_item``)."""
    sent = 0
    if need.model_path is not None:
        sent += _place_model(folder, manifest, need, engine, say, sent_before)
    if need.model_ref is not None:
        refs, ref, commit = need.model_ref
        out = engine.host.run(["sh", "-c", WRITE_REF, "vllmgen", _host_path(engine.host, refs), ref, commit])
        if out.rc != 0:
            raise BundleError(f"{need.name}: writing refs/{ref} in the Hugging Face cache failed (exit {out.rc}): "
                              f"{out.stderr.strip()}")
    for item in need.images:
        image_id, tags = item["id"], item["tags"]
        if engine.image_id(image_id) == image_id:
            say(f"{need.name}: image {', '.join(tags)}: present ({image_id[:19]})")
        else:
            started = time.monotonic()
            loaded = engine.load(archive.read_item(folder, item, checked=checked))
            if loaded and loaded != image_id:
                raise BundleError(f"{need.name}: docker load gave {loaded}, the bundle says {image_id}")
            seconds = time.monotonic() - started
            sent += item["size"]
            say(f"{need.name}: image {', '.join(tags)}: loaded, {human(item['size'])} in {seconds:.1f} s "
                f"({rate(item['size'], seconds)})")
        for tag in tags:
            if engine.image_id(tag) != image_id:
                engine.tag(image_id, tag)
    return sent


def place_model(host: hosts.Host, folder: Path, item: Mapping[str, Any], path: str) -> hosts.Completed:
    """The model item unpacked beside ``path`` on the host and renamed into place (PLACE), every part's
    SHA-256 checked on the way; a BundleError names a bad part. On this machine the parts are unpacked
    by ``unpack`` (copied in the kernel); on another they are spliced into ``tar -x`` over ssh."""
    digest = item_digest(item)
    if not hosts.is_local(host):
        return pipe(host, ["sh", "-c", PLACE, "vllmgen", path, digest],
                    lambda fd: archive.splice_item(folder, dict(item), fd))
    cleared = host.run(["sh", "-c", NAMES + CLEAR, "vllmgen", path, digest])
    if cleared.rc != 0:
        return cleared
    try:
        unpack.unpack(folder, item, Path(path + INCOMING))
    except OSError as exc:
        host.run(["rm", "-rf", "--", path + INCOMING])
        return hosts.Completed(1, "", f"unpacking into {path + INCOMING}: {exc}")
    return host.run(["sh", "-c", NAMES + COMMIT, "vllmgen", path, digest])


def _place_model(folder: Path, manifest: Mapping[str, Any], need: NodeLoad, engine: NodeEngine,
                 say: Callable[[str], None], sent_before: int) -> int:
    item = next(i for i in manifest["items"] if i["kind"] == "model")
    digest = item_digest(item)
    assert need.model_path is not None
    path = _host_path(engine.host, need.model_path)
    state = engine.host.run(["sh", "-c", PROBE, "vllmgen", path]).stdout.strip()
    if state == f"ours:{digest}":
        say(f"{need.name}: model at {path}: present")
        return 0
    if state not in ("absent", "empty") and not state.startswith("ours:"):
        raise BundleError(f"{need.name}: {path} holds files bundle load did not place ({state or 'unreadable'}); "
                          "nothing of the model was changed: move them away, or point the spec's host_path "
                          "(hf_cache for a Hugging Face snapshot) elsewhere")
    started = time.monotonic()
    try:
        out = place_model(engine.host, folder, item, path)
    except BundleError as exc:
        engine.host.run(["rm", "-rf", "--", path + INCOMING])
        done = "nothing was loaded" if not sent_before else f"the model was not placed on {need.name}"
        raise BundleError(f"the bundle is damaged; {done}:\n  {exc}\ncopy the named part again from the "
                          "connected machine (or run `vllmgen bundle` there again: it resumes), then load again"
                          ) from None
    if out.rc != 0:
        raise BundleError(f"{need.name}: placing the model at {path} failed (exit {out.rc}): "
                          f"{out.stderr.strip()}; the model was left as it was")
    seconds = time.monotonic() - started
    say(f"{need.name}: model at {path}: placed, {human(item['size'])} in {seconds:.1f} s "
        f"({rate(item['size'], seconds)}), every part's SHA-256 checked on the way")
    return int(item["size"])


def place_wheels(folder: Path, item: Mapping[str, Any], to: Path, say: Callable[[str], None]) -> str:
    """vllmgen's wheels (``bundle --with-vllmgen``) under ``to``/wheels on this machine; how to install them."""
    from vllmgen.bundle import wheels  # lazy: only with bundle --with-vllmgen

    target = (to / wheels.WHEELS).resolve()
    host = hosts.LocalHost()
    problems = archive.check_sizes(folder, dict(item))
    if problems:
        raise BundleError("the bundle is damaged; nothing was loaded:\n  " + "\n  ".join(problems))
    state = host.run(["sh", "-c", PROBE, "vllmgen", str(target)]).stdout.strip()
    if state == f"ours:{item_digest(item)}":
        say(f"wheels: {target}: present")
    elif state not in ("absent", "empty") and not state.startswith("ours:"):
        raise BundleError(f"{target} holds files bundle load did not place: move them away, or load with another --to")
    else:
        out = place_model(host, folder, item, str(target))
        if out.rc != 0:
            raise BundleError(f"placing the wheels at {target} failed (exit {out.rc}): {out.stderr.strip()}")
        say(f"wheels: {target}: placed ({len(item.get('files', []))} wheel(s))")
    return f"vllmgen for this machine: {wheels.install_hint(target)}"


def check_needed(folder: Path, manifest: Mapping[str, Any], loads: list[NodeLoad],
                 say: Callable[[str], None]) -> dict[str, archive.Identity]:
    """Every part the nodes need checked before anything is loaded, all bad parts named at once: the
    images' in full; the model's sizes here (a truncated copy), its SHA-256s as it is placed. The image
    parts that matched, by file, with what identifies them (``archive.read_item`` trusts those)."""
    keys = {item["key"] for load in loads for item in load.images}
    items = [item for item in manifest["items"] if item["key"] in keys]
    if any(load.model_path for load in loads):
        model = next(item for item in manifest["items"] if item["kind"] == "model")
        problems = archive.check_sizes(folder, model)
        if problems:
            raise BundleError("the bundle is damaged; nothing was loaded:\n  " + "\n  ".join(problems)
                              + "\ncopy the named part(s) again from the connected machine, then load again")
    total = sum(part["size"] for item in items for part in item["parts"])
    started = time.monotonic()
    checked: dict[str, archive.Identity] = {}
    problems = archive.check_parts(folder, items, checked=checked)
    if problems:
        raise BundleError("the bundle is damaged; nothing was loaded:\n  " + "\n  ".join(problems)
                          + "\ncopy the named part(s) again from the connected machine (or run `vllmgen bundle` "
                            "there again: it resumes), then load again")
    seconds = time.monotonic() - started
    say(f"checked {sum(len(i['parts']) for i in items)} part(s), {human(total)} in {seconds:.1f} s "
        f"({rate(total, seconds)}): every SHA-256 matches the manifest")
    return checked


def run(folder: Path, node_name: str | None, all_nodes: bool, to: Path, say: Callable[[str], None],
        engine_for: Callable[[str, str | None], NodeEngine]) -> Loaded:
    """The whole load: deployment, checks, then node by node. ``engine_for(node, endpoint)``: None is
    this machine's engine (``--node``), else the node's docker_host (``--all``)."""
    manifest = archive.read_manifest(folder)
    spec_path, changed = place_deployment(folder, manifest, to)
    result = Loaded(spec=spec_path)
    say(f"deployment: {spec_path} and {to / 'build' / manifest['name']}/: " + ("placed" if changed else "present"))
    wheels_item = next((i for i in manifest["items"] if i["kind"] == "wheels"), None)
    if wheels_item is not None:
        result.lines.append(place_wheels(folder, wheels_item, to, say))
    valid, plan = plan_file(spec_path)
    try:
        names = targets.scope(plan, node_name, all_nodes)
        if all_nodes:
            targets.require_endpoints(plan, names, str(spec_path))
    except ValueError as exc:
        raise BundleError(str(exc).replace("COMMAND", "bundle load")) from exc
    loads = needs(manifest, valid.spec, names)
    checked = check_needed(folder, manifest, loads, say)
    for load in loads:
        node = plan.node(load.name)
        engine = engine_for(load.name, node.docker_host if all_nodes else None)
        try:
            if load.images:
                engine.ping()
            result.transferred += load_node(folder, manifest, load, engine, say, result.transferred, checked)
        finally:
            engine.close()
    result.lines.append(f"transferred {human(result.transferred)} to {len(loads)} node(s)" if result.transferred
                        else "nothing new to transfer: every image and the model were already in place")
    return result
