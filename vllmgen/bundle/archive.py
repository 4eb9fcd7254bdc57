"""The bundle on disk: items (a deployment tree, a model folder, one image each) cut into parts, and a
manifest with the SHA-256 of every part and the spec's hash.

    DIR/manifest.json        written last, in one rename: a bundle without it is unfinished
    DIR/journal.jsonl        one line per finished part while writing (what a resumed write trusts)
    DIR/parts/<item>.<NNNN>  at most ``part_size`` bytes each; an item is its parts, concatenated

Everything streams in chunks of ``CHUNK`` bytes: no model or image is ever held in memory. A file's
bytes take the shortest way: into a part by ``copy_file_range`` (in the kernel), out of parts into a
pipe by ``splice``, and hashed from a mapping of the file, beside the copy in a thread of its own (on
these machines a memory copy costs as much as SHA-256: each one saved counts); an image's stream is
read into buffers of ``CHUNK`` bytes, each written and hashed from where it was read. A write
that was interrupted resumes: parts already on disk whose size and checksum match the journal are
kept; a seekable item (a folder) starts reading at the first missing part, an image stream is read
again and its first bytes checked against the kept parts before anything new is written.
"""

from __future__ import annotations

import functools
import hashlib
import json
import mmap
import os
import queue
import stat
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vllmgen.errors import RunnerError

FORMAT = "vllmgen-bundle/1"
MANIFEST = "manifest.json"
JOURNAL = "journal.jsonl"
PARTS = "parts"
CHUNK = 1 << 20
WINDOW = 8 << 20  # a file's bytes are copied and hashed this many at a time
WRITE_SLICE = 32 << 10  # written this many at a time: 1 MiB write(2)s cost ~3x the system time here (2 GiB image)
STREAM_BUFFERS = 8  # an image stream's buffers of CHUNK bytes: one filled and written while others are hashed
BLOCK = 512


class BundleError(RunnerError):
    """The bundle is incomplete, corrupt or not a bundle; the text names the part."""


# --- folders as deterministic, seekable tar streams -------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A run of the stream: literal bytes (a tar header, padding) or a file's content."""

    length: int
    data: bytes = b""
    path: Path | None = None


@dataclass(frozen=True)
class TreeFile:
    name: str  # '/'-separated, relative to the folder
    path: Path
    size: int
    mode: int
    mtime: int
    folder: bool = False


def tree(root: Path) -> list[TreeFile]:
    """Every folder and file under ``root``, sorted; symlinks to files are followed (a Hugging Face
    snapshot links into its blobs), dangling ones are left out."""
    out: list[TreeFile] = []
    for current, folders, files in os.walk(root, followlinks=False):
        folders.sort()
        base = Path(current)
        for name in sorted([*folders, *files]):
            path = base / name
            try:
                info = path.stat()
            except FileNotFoundError:
                continue  # a dangling symlink
            relative = path.relative_to(root).as_posix()
            if stat.S_ISDIR(info.st_mode):
                if path.is_symlink():
                    continue  # folders are walked, never followed: no cycles
                out.append(TreeFile(relative, path, 0, 0o755, int(info.st_mtime), folder=True))
            elif stat.S_ISREG(info.st_mode):
                mode = 0o755 if info.st_mode & 0o111 else 0o644
                out.append(TreeFile(relative, path, info.st_size, mode, int(info.st_mtime)))
    return sorted(out, key=lambda f: f.name)


def tree_key(files: list[TreeFile]) -> str:
    """Identifies a folder's content cheaply (names, sizes, modes, mtimes): a resumed write trusts it."""
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}\0{f.size}\0{f.mode}\0{f.mtime}\0{int(f.folder)}\n".encode())
    return digest.hexdigest()


def tar_segments(files: list[TreeFile], literal: dict[str, tuple[bytes, int]] | None = None) -> list[Segment]:
    """A tar archive (POSIX pax) of ``files`` and of ``literal`` (name -> bytes and mode), as segments."""
    segments: list[Segment] = []

    def header(name: str, size: int, mode: int, mtime: int, folder: bool) -> bytes:
        info = tarfile.TarInfo(name + ("/" if folder else ""))
        info.type = tarfile.DIRTYPE if folder else tarfile.REGTYPE
        info.size, info.mode, info.mtime = size, mode, mtime
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")

    for name, (data, mode) in sorted((literal or {}).items()):
        head = header(name, len(data), mode, 0, False)
        segments += [Segment(len(head), head), Segment(len(data), data), _padding(len(data))]
    for f in files:
        head = header(f.name, f.size, f.mode, f.mtime, f.folder)
        segments.append(Segment(len(head), head))
        if not f.folder:
            segments += [Segment(f.size, path=f.path), _padding(f.size)]
    segments.append(Segment(2 * BLOCK, bytes(2 * BLOCK)))
    return [s for s in segments if s.length]


def _padding(size: int) -> Segment:
    pad = -size % BLOCK
    return Segment(pad, bytes(pad))


def segments_size(segments: list[Segment]) -> int:
    return sum(s.length for s in segments)


# --- items and the manifest -------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    file: str  # relative to the bundle folder
    size: int
    sha256: str


@dataclass
class Item:
    """One thing in the bundle. ``meta`` says what it is (kind, image ID and tags, nodes, ...)."""

    key: str  # file-name safe, unique in the bundle
    kind: str  # deployment, model, image
    source: str  # what the content was made from (image ID, folder key): a resume trusts parts of the same
    size: int | None  # None: known only once written (an image stream)
    meta: dict[str, Any] = field(default_factory=dict)
    parts: list[Part] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "source": self.source, "size": self.size, **self.meta,
                "parts": [{"file": p.file, "size": p.size, "sha256": p.sha256} for p in self.parts]}


class ByteStream(Protocol):
    """A stream read into the caller's buffer (an image's `docker save` archive): ``readinto`` returns how
    many bytes it put there, 0 at the end."""

    def readinto(self, buffer: memoryview) -> int: ...
    def close(self) -> None: ...


@dataclass
class Source:
    """An item with how to read it, one of two: a folder's ``segments`` (written by ``copy_segments`` from
    any offset: a resumed write skips the kept parts) or an image's ``stream`` (read from its start into the
    writer's buffers: a resumed write reads the kept parts' bytes again and checks them)."""

    item: Item
    segments: list[Segment] | None = None
    stream: Callable[[], ByteStream] | None = None


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{folder} is not a finished bundle: no {MANIFEST} (an interrupted `vllmgen bundle`? "
                          "run it again: it resumes)") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f"{path} is not a {FORMAT} manifest")
    return data


# --- writing ----------------------------------------------------------------------------------------


@dataclass
class Written:
    item: Item
    written: int = 0  # bytes written now
    kept: int = 0  # bytes of parts kept from an earlier, interrupted write
    seconds: float = 0.0


class Progress:
    """Sizes and rates on one line per item, at most once a second, then a summary line."""

    def __init__(self, say: Callable[[str], None], clock: Callable[[], float] = time.monotonic):
        self.say, self.clock = say, clock

    def start(self, item: Item) -> Callable[[int], None]:
        started = last = self.clock()
        total = 0

        def advance(count: int) -> None:
            nonlocal last, total
            total += count
            now = self.clock()
            if now - last >= 1.0:
                last = now
                of = f" of {human(item.size)}" if item.size else ""
                self.say(f"{item.key}: {human(total)}{of}, {rate(total, now - started)}")

        return advance


def human(size: float | None) -> str:
    if size is None:
        return "size unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def rate(size: int, seconds: float) -> str:
    return f"{human(size / seconds)}/s" if seconds > 0 else "-"


class Hasher:
    """SHA-256 in a thread of its own: hashlib lets go of the GIL on large chunks, so hashing runs beside
    the reads and writes of the calling thread instead of after them (a part costs about its I/O)."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.queue: queue.Queue[tuple[bytes | memoryview, Callable[[], None] | None] | None] = queue.Queue(maxsize=8)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            entry = self.queue.get()
            if entry is None:
                self.queue.task_done()
                return
            then = entry[1]
            self.digest.update(entry[0])
            entry = None  # a view of a mapping is let go at once: the file can be unmapped
            if then is not None:
                then()
            self.queue.task_done()

    def update(self, data: bytes | memoryview, then: Callable[[], None] | None = None) -> None:
        """Hash ``data`` (in order), then call ``then`` (the buffer it lies in may be filled again)."""
        self.queue.put((data, then))

    def drain(self) -> None:
        """Wait until everything handed over is hashed (before a mapping it came from is closed)."""
        self.queue.join()

    def hexdigest(self) -> str:
        self.queue.put(None)
        self.thread.join()
        return self.digest.hexdigest()


@contextmanager
def mapped(handle: Any, offset: int, length: int) -> Iterator[memoryview]:
    """``length`` bytes of an open file from ``offset``, as a view of a mapping: no copy through Python."""
    if length <= 0:
        yield memoryview(b"")
        return
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    mapping = mmap.mmap(handle.fileno(), offset + length - start, access=mmap.ACCESS_READ, offset=start)
    try:
        mapping.madvise(mmap.MADV_SEQUENTIAL)
    except (AttributeError, OSError):
        pass
    try:
        yield memoryview(mapping)[offset - start:offset - start + length]
    finally:
        try:
            mapping.close()
        except BufferError:
            pass  # a view is still held somewhere: unmapped when the last one goes


def sha256_file(path: Path, on_bytes: Callable[[int], None] = lambda n: None) -> str:
    """A file's SHA-256, read through a mapping (no copy into Python's memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle, mapped(handle, 0, os.fstat(handle.fileno()).st_size) as view:
        for at in range(0, len(view), WINDOW):
            digest.update(view[at:at + WINDOW])
            on_bytes(min(WINDOW, len(view) - at))
    return digest.hexdigest()


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def copy_segments(segments: list[Segment], offset: int, length: int, fd: int, digest: Hasher,
                  advance: Callable[[int], None]) -> None:
    """``length`` bytes of the stream from ``offset`` appended to ``fd`` and handed to ``digest``: a file's
    bytes by copy_file_range (a copy in the kernel), hashed from a mapping of the same file beside it."""
    for segment in segments:
        if length <= 0:
            return
        if offset >= segment.length:
            offset -= segment.length
            continue
        count = min(segment.length - offset, length)
        if segment.path is None:
            data = segment.data[offset:offset + count]
            _write_all(fd, data)
            digest.update(data)
            advance(count)
        else:
            with open(segment.path, "rb") as handle:
                if os.fstat(handle.fileno()).st_size < offset + count:
                    raise BundleError(f"{segment.path} shrank while it was being bundled")
                with mapped(handle, offset, count) as view:
                    for at in range(0, count, WINDOW):
                        window = view[at:at + WINDOW]
                        digest.update(window)  # hashed in the Hasher's thread while the kernel copies
                        _copy_into(handle.fileno(), offset + at, fd, window)
                        advance(len(window))
                    del window
                    digest.drain()  # the hashing thread is done with this mapping
        length -= count
        offset = 0


def _copy_into(source: int, at: int, fd: int, window: memoryview) -> None:
    """``window`` (the bytes of ``source`` at ``at``) appended to ``fd``: in the kernel where it can."""
    done = 0
    while done < len(window):
        try:
            copied = os.copy_file_range(source, fd, len(window) - done, at + done)
        except OSError:  # another file system, an old kernel: the plain way
            copied = 0
        if copied <= 0:
            _write_all(fd, window[done:])
            return
        done += copied


class Writer:
    """Writes sources into a bundle folder, resuming from its journal; the manifest comes last."""

    def __init__(self, folder: Path, part_size: int, progress: Progress):
        if part_size < BLOCK:
            raise BundleError(f"--part-size must be at least {BLOCK} bytes")
        self.folder, self.part_size, self.progress = folder, part_size, progress
        (folder / PARTS).mkdir(parents=True, exist_ok=True)
        self.journal = self._read_journal()
        self._read_finished()
        (folder / MANIFEST).unlink(missing_ok=True)  # from now on the bundle is unfinished

    def _read_finished(self) -> None:
        """A finished bundle's parts count as written: bundling again writes only what changed."""
        try:
            manifest = read_manifest(self.folder)
        except BundleError:
            return
        if manifest.get("part_size") != self.part_size:
            return
        items = manifest["items"]
        for item in items:
            parts = {index: Part(p["file"], int(p["size"]), p["sha256"]) for index, p in enumerate(item["parts"])}
            self.journal.setdefault((item["key"], item["source"]), parts)

    def _read_journal(self) -> dict[tuple[str, str], dict[int, Part]]:
        found: dict[tuple[str, str], dict[int, Part]] = {}
        try:
            lines = (self.folder / JOURNAL).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return found
        for line in lines:
            try:
                entry = json.loads(line)
                if entry.get("part_size") != self.part_size:
                    continue  # cut at other sizes: written again
                part = Part(entry["file"], int(entry["size"]), entry["sha256"])
                found.setdefault((entry["key"], entry["source"]), {})[int(entry["index"])] = part
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by the interruption
        return found

    def _kept(self, item: Item) -> tuple[list[Part], bool]:
        """Parts of an earlier write of the same content that match their checksums, and whether they
        are the whole item (a last, shorter part was recorded)."""
        recorded = self.journal.get((item.key, item.source), {})
        kept: list[Part] = []
        for index in range(len(recorded)):
            part = recorded.get(index)
            if part is None:
                break
            path = self.folder / part.file
            if not path.is_file() or path.stat().st_size != part.size or sha256_file(path) != part.sha256:
                break
            kept.append(part)
            if part.size < self.part_size:
                return kept, True
        return kept, False

    def _record(self, item: Item, index: int, part: Part) -> None:
        with open(self.folder / JOURNAL, "a", encoding="utf-8") as journal:
            journal.write(json.dumps({"key": item.key, "source": item.source, "index": index, "file": part.file,
                                      "size": part.size, "sha256": part.sha256, "part_size": self.part_size}) + "\n")
            journal.flush()
            os.fsync(journal.fileno())

    def write(self, source: Source) -> Written:
        item, started = source.item, time.monotonic()
        kept, complete = self._kept(item)
        offset = sum(part.size for part in kept)
        advance = self.progress.start(item)
        item.parts = list(kept)
        written = 0
        if not complete and source.segments is not None:
            written = self._segment_parts(item, source.segments, offset, len(kept), advance)
        elif not complete and source.stream is not None:
            stream = source.stream()
            try:
                if kept and not _starts_as(stream, kept, advance):
                    stream.close()
                    kept, offset, item.parts = [], 0, []
                    stream = source.stream()
                written = self._stream_parts(item, stream, len(kept), advance)
            finally:
                stream.close()
        elif not complete:
            raise ValueError(f"{item.key}: a Source has segments or a stream")
        if item.size is None:
            item.size = offset + written
        for stale in sorted((self.folder / PARTS).glob(f"{item.key}.*")):
            if stale.name not in {Path(p.file).name for p in item.parts}:
                stale.unlink()
        return Written(item, written, offset, time.monotonic() - started)

    def _segment_parts(self, item: Item, segments: list[Segment], offset: int, index: int,
                       advance: Callable[[int], None]) -> int:
        """A folder's stream from ``offset`` into parts, each file's bytes copied in the kernel."""
        total, written = segments_size(segments), 0
        while offset < total:
            name = f"{PARTS}/{item.key}.{index:04d}"
            size, digest = min(self.part_size, total - offset), Hasher()
            fd = os.open(self.folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                copy_segments(segments, offset, size, fd, digest, advance)
            finally:
                os.close(fd)
            part = Part(name, size, digest.hexdigest())
            item.parts.append(part)
            self._record(item, index, part)
            written, offset, index = written + size, offset + size, index + 1
        return written

    def _stream_parts(self, item: Item, stream: ByteStream, index: int, advance: Callable[[int], None]) -> int:
        """A stream into parts through ``STREAM_BUFFERS`` buffers of ``CHUNK`` bytes (larger ones cost more
        system time to write here): each is filled by ``readinto``, written from where it lies, and hashed
        there in the hashing thread, which hands it back once hashed."""
        free: queue.Queue[memoryview] = queue.Queue()
        for _ in range(STREAM_BUFFERS):
            free.put(memoryview(bytearray(CHUNK)))
        written, ended = 0, False
        while not ended:
            name = f"{PARTS}/{item.key}.{index:04d}"
            path = self.folder / name
            digest, size = Hasher(), 0
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                while size < self.part_size:
                    buffer = free.get()
                    wanted = min(len(buffer), self.part_size - size)
                    filled = _fill(stream, buffer[:wanted])
                    ended = filled < wanted
                    if filled:
                        for at in range(0, filled, WRITE_SLICE):
                            _write_all(fd, buffer[at:min(filled, at + WRITE_SLICE)])
                        digest.update(buffer[:filled], then=functools.partial(free.put, buffer))
                        size += filled
                        advance(filled)
                    else:
                        free.put(buffer)
                    if ended:
                        break
            finally:
                os.close(fd)
            sha256 = digest.hexdigest()
            if size == 0 and index > 0:
                path.unlink()
                return written
            part = Part(name, size, sha256)
            item.parts.append(part)
            self._record(item, index, part)
            written += size
            index += 1
        return written

    def finish(self, manifest: dict[str, Any], items: list[Item]) -> None:
        """The manifest, in one rename: from now on the bundle is whole. The journal is no longer needed."""
        data = {"format": FORMAT, **manifest, "part_size": self.part_size, "items": [i.as_dict() for i in items]}
        temporary = self.folder / (MANIFEST + ".tmp")
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(temporary, self.folder / MANIFEST)
        (self.folder / JOURNAL).unlink(missing_ok=True)


def _fill(stream: ByteStream, buffer: memoryview) -> int:
    """Read until ``buffer`` is full or the stream ends; how many bytes it holds."""
    filled = 0
    while filled < len(buffer):
        count = stream.readinto(buffer[filled:])
        if not count:
            break
        filled += count
    return filled


def _starts_as(stream: ByteStream, kept: list[Part], advance: Callable[[int], None]) -> bool:
    """Read the stream's first bytes again; True when they hash as the kept parts (nothing written)."""
    buffer = memoryview(bytearray(WINDOW))
    for part in kept:
        digest, left = hashlib.sha256(), part.size
        while left:
            count = _fill(stream, buffer[:min(len(buffer), left)])
            if not count:
                return False
            digest.update(buffer[:count])
            left -= count
            advance(count)
        if digest.hexdigest() != part.sha256:
            return False
    return True


# --- reading ----------------------------------------------------------------------------------------


def check_sizes(folder: Path, item: dict[str, Any]) -> list[str]:
    """The item's parts present and of the manifest's sizes (a truncated copy), read no further."""
    problems = []
    for part in item["parts"]:
        path = folder / part["file"]
        if not path.is_file():
            problems.append(f"{part['file']} ({item['key']}) is missing")
        elif path.stat().st_size != part["size"]:
            problems.append(f"{part['file']} ({item['key']}) is truncated or padded: {path.stat().st_size} bytes, "
                            f"the manifest says {part['size']}")
    return problems


Identity = tuple[int, int, int, int, int]


def identity(info: os.stat_result) -> Identity:
    """What changes when a file is written or replaced: its device, inode, size, modification time and change
    time (the kernel sets ctime on every write and utime; no user can set it back, as one can mtime)."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def check_parts(folder: Path, items: Iterable[dict[str, Any]], on_bytes: Callable[[int], None] = lambda n: None,
                checked: dict[str, Identity] | None = None) -> list[str]:
    """Every part of ``items`` against the manifest: present, its size, its SHA-256. The problems, by name.
    ``checked`` gets the identity of each part that matched and did not change while it was hashed."""
    def check(item: dict[str, Any], part: dict[str, Any]) -> str | None:
        wrong = check_sizes(folder, {"key": item["key"], "parts": [part]})
        if wrong:
            return wrong[0]
        path = folder / part["file"]
        before = identity(path.stat())
        found = sha256_file(path, on_bytes)
        if found != part["sha256"]:
            return f"{part['file']} ({item['key']}) is corrupt: its SHA-256 is {found}, the manifest says {part['sha256']}"
        if checked is not None and identity(path.stat()) == before:
            checked[part["file"]] = before
        return None

    # parts are checked side by side (hashlib and reads let go of the GIL); problems in manifest order
    jobs = [(item, part) for item in items for part in item["parts"]]
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        found = list(pool.map(lambda job: check(*job), jobs))
    return [problem for problem in found if problem]


def read_item(folder: Path, item: Mapping[str, Any], on_bytes: Callable[[int], None] = lambda n: None,
              checked: Mapping[str, Identity] | None = None) -> Iterator[bytes]:
    """The item's bytes, its parts in order, each checked again as it is read: a part changed since the
    check fails here, before its last chunk is handed on. A part ``check_parts`` recorded in ``checked`` is
    not hashed a second time: that it is still the same file (inode, size, modification time, before and
    after reading) is checked instead; one SHA-256 pass costs as much as the whole stream's other work."""
    for part in item["parts"]:
        known = (checked or {}).get(part["file"])
        size = 0
        with open(folder / part["file"], "rb") as handle:
            same = known is not None and identity(os.fstat(handle.fileno())) == known
            digest = None if same else Hasher()
            pending = b""
            while data := handle.read(CHUNK):
                if digest is not None:
                    digest.update(data)
                size += len(data)
                if pending:
                    on_bytes(len(pending))
                    yield pending
                pending = data
            if digest is None:
                same = identity(os.fstat(handle.fileno())) == known
        if size != part["size"] or not (same if digest is None else digest.hexdigest() == part["sha256"]):
            raise BundleError(f"{part['file']} ({item['key']}) changed after it was checked")
        if pending:
            on_bytes(len(pending))
            yield pending


def splice_item(folder: Path, item: dict[str, Any], fd: int, on_bytes: Callable[[int], None] = lambda n: None) -> None:
    """The item's parts into the pipe ``fd`` by splice (no copy through Python), each hashed beside it from
    a mapping of the same file. A part's last bytes go only once its SHA-256 matches the manifest: on a
    BundleError (naming the part) the receiver has no whole stream, and the caller stops it."""
    _grow_pipe(fd)
    for part in item["parts"]:
        path = folder / part["file"]
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size != part["size"]:
                raise BundleError(f"{part['file']} ({item['key']}) is truncated or padded: {size} bytes, "
                                  f"the manifest says {part['size']}")
            found: list[str] = []
            hashing = threading.Thread(target=lambda: found.append(sha256_file(path)), daemon=True)
            hashing.start()
            held = min(size, CHUNK)
            _splice(handle.fileno(), fd, 0, size - held, on_bytes)
            hashing.join()
            if found != [part["sha256"]]:
                raise BundleError(f"{part['file']} ({item['key']}) is corrupt: its SHA-256 is "
                                  f"{found[0] if found else 'unreadable'}, the manifest says {part['sha256']}")
            _splice(handle.fileno(), fd, size - held, held, on_bytes)


def _grow_pipe(fd: int) -> None:
    """A pipe of 1 MiB instead of 64 KiB: fewer wake-ups of both ends (Linux; harmless where refused)."""
    try:
        import fcntl  # lazy: Linux only (harmless where refused)

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except OSError:
        pass


def _splice(source: int, fd: int, offset: int, count: int, on_bytes: Callable[[int], None]) -> None:
    end = offset + count
    while offset < end:
        try:
            moved = os.splice(source, fd, min(WINDOW, end - offset), offset_src=offset)
        except (AttributeError, OSError) as exc:  # no splice here (not Linux, not a pipe): the plain way
            if isinstance(exc, BrokenPipeError):
                raise
            moved = 0
            data = os.pread(source, min(CHUNK, end - offset), offset)
            if data:
                _write_all(fd, data)
                moved = len(data)
        if moved <= 0:
            raise BundleError(f"a part ended early at byte {offset} while it was being read")
        offset += moved
        on_bytes(moved)
