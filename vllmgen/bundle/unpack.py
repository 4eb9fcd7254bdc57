"""A bundled folder (the model, the wheels) unpacked on this machine without ``tar -x``.

``tar -x`` reads the archive into its own buffer and writes it out again: two copies of every byte
through user space. Here tarfile reads only the headers (a few 512-byte reads per file) and each
file's bytes go from the parts to the new file by ``copy_file_range`` (one copy, in the kernel),
while a thread beside it hashes every part from a mapping (hashlib lets go of the GIL), so on two
cores the load costs about what ``tar -x`` does and each byte is read from memory once by each.
The caller moves the folder into place only when every part's SHA-256 matched.

Only what ``archive.tar_segments`` writes is accepted: folders and regular files with relative
names; a link, a device, an absolute name or ``..`` is refused by name (a bundle is input).
"""

from __future__ import annotations

import io
import os
import tarfile
import threading
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from vllmgen.bundle import archive
from vllmgen.bundle.archive import BundleError


class PartsReader(io.RawIOBase):
    """An item's parts read as one seekable file (what tarfile needs for the headers), and where each
    run of its bytes lies (for copying them out)."""

    def __init__(self, folder: Path, item: Mapping[str, Any]):
        super().__init__()
        self.parts: list[tuple[int, int, int]] = []  # (start in the item, size, descriptor)
        start = 0
        try:
            for part in item["parts"]:
                fd = os.open(folder / part["file"], os.O_RDONLY)
                self.parts.append((start, int(part["size"]), fd))
                start += int(part["size"])
        except OSError:
            self.close()
            raise
        self.size, self.position = start, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        view, done = memoryview(buffer).cast("B"), 0
        for fd, at, count in self.runs(self.position, min(len(view), self.size - self.position)):
            data = os.pread(fd, count, at)
            view[done:done + len(data)] = data
            done += len(data)
            if len(data) < count:
                break
        self.position += done
        return done

    def runs(self, offset: int, length: int) -> list[tuple[int, int, int]]:
        """(descriptor, offset in that part, count) covering ``length`` bytes of the item from ``offset``."""
        out = []
        for start, size, fd in self.parts:
            if length <= 0:
                break
            if offset >= start + size:
                continue
            count = min(start + size - offset, length)
            out.append((fd, offset - start, count))
            offset, length = offset + count, length - count
        return out

    def close(self) -> None:
        for _, _, fd in getattr(self, "parts", []):
            os.close(fd)
        self.parts = []
        super().close()


class PartHasher:
    """Every part of an item hashed, in order, in a thread of its own; ``bad`` is set at the first mismatch
    so that the copy beside it stops early."""

    def __init__(self, folder: Path, item: Mapping[str, Any]):
        self.folder, self.item = folder, item
        self.problem: str | None = None
        self.bad = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for part in self.item["parts"]:
            try:
                found = archive.sha256_file(self.folder / part["file"])
            except OSError as exc:
                found = f"unreadable ({exc.strerror})"
            if found != part["sha256"]:
                self.problem = (f"{part['file']} ({self.item['key']}) is corrupt: its SHA-256 is {found}, "
                                f"the manifest says {part['sha256']}")
                self.bad.set()
                return

    def result(self) -> str | None:
        self.thread.join()
        return self.problem


def _member_path(dest: Path, member: tarfile.TarInfo, key: str) -> Path:
    name = PurePosixPath(member.name)
    if (not (member.isreg() or member.isdir()) or name.is_absolute() or ".." in name.parts
            or not name.parts or name.parts == (".",)):
        what = "a folder" if member.isdir() else "a file" if member.isreg() else "a link or device"
        raise BundleError(f"{key}: the bundle holds {member.name!r} ({what}), which bundle load does not unpack "
                          "(only folders and files under the item's folder)")
    return dest.joinpath(*name.parts)


def unpack(folder: Path, item: Mapping[str, Any], dest: Path) -> None:
    """The item's folder into ``dest`` (which exists and is empty), every part's SHA-256 checked on the
    way; a BundleError names a bad part (then ``dest`` holds a part of the files: the caller removes it)."""
    problems = archive.check_sizes(folder, dict(item))
    if problems:
        raise BundleError(problems[0])
    hasher = PartHasher(folder, item)
    try:
        _copy_out(folder, item, dest, hasher)
    except (BundleError, tarfile.TarError, OSError) as exc:
        problem = hasher.result()  # a corrupt part explains a broken header or an early end: name it first
        if problem:
            raise BundleError(problem) from None
        if isinstance(exc, BundleError):
            raise
        if isinstance(exc, tarfile.TarError):
            raise BundleError(f"{item['key']}: not a tar stream ({exc})") from None
        raise
    problem = hasher.result()
    if problem:
        raise BundleError(problem)


def _copy_out(folder: Path, item: Mapping[str, Any], dest: Path, hasher: PartHasher) -> None:
    folders: list[tuple[Path, int, int]] = []
    umask = os.umask(0)
    os.umask(umask)
    # as tar -x as a user: the bundle's modes less the umask (a bundle is input: no group- or world-writable
    # weights because the carried cache was); a folder's mode once its files are in (a 0555 one stays writable till then)
    keep = 0o777 & ~umask
    with PartsReader(folder, item) as reader, tarfile.open(fileobj=reader, mode="r:") as tar:
        for member in tar:
            if hasher.bad.is_set():
                return
            path = _member_path(dest, member, item["key"])
            if member.isdir():
                path.mkdir(parents=True, exist_ok=True)
                folders.append((path, member.mode & keep, int(member.mtime)))
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                if member.offset_data + member.size > reader.size:
                    raise BundleError(f"{item['key']}: {member.name} runs past the item's end")
                for fd, at, count in reader.runs(member.offset_data, member.size):
                    _copy_run(fd, at, count, out, hasher)
                    if hasher.bad.is_set():
                        return
                os.fchmod(out, member.mode & keep)
            finally:
                os.close(out)
            os.utime(path, (member.mtime, member.mtime))
    for path, mode, mtime in reversed(folders):  # as tar does: a folder's mode and time once its files are in
        os.chmod(path, mode)
        os.utime(path, (mtime, mtime))


def _copy_run(source: int, at: int, count: int, out: int, hasher: PartHasher) -> None:
    end, kernel = at + count, True
    while at < end and not hasher.bad.is_set():
        if kernel:
            try:
                copied = os.copy_file_range(source, out, min(archive.WINDOW, end - at), at)
            except OSError:  # another file system, an old kernel: the plain way from here on
                kernel = False
                continue
        else:
            data = os.pread(source, min(archive.CHUNK, end - at), at)
            view = memoryview(data)
            while view:
                view = view[os.write(out, view):]
            copied = len(data)
        if copied <= 0:
            raise BundleError(f"a part ended early at byte {at} while it was being unpacked")
        at += copied
