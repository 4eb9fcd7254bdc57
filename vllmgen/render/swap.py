"""Filesystem primitives for the writer: an atomic directory exchange and a render lock.

``exchange(a, b)`` swaps two directories in one step with Linux's ``renameat2(RENAME_EXCHANGE)``,
so a path that held a complete tree holds the other complete tree at the next instant, with no
moment in between. Where the call is missing (not Linux, old libc) or the filesystem refuses it,
the caller falls back to two renames and repairs a kill between them on the next run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from collections.abc import Callable, Iterator

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
# errnos that mean "this system or filesystem cannot do it", never "this path is wrong"
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


class Unsupported(Exception):
    """The atomic rename is not available here; use the two-rename fallback."""


_renameat2: Callable[..., int] | None | bool = False  # False: not looked up yet


def _lookup() -> Callable[..., int] | None:
    global _renameat2
    if _renameat2 is False:
        _renameat2 = None
        if sys.platform.startswith("linux"):
            import ctypes  # only here: the import costs a few ms a render does not need otherwise

            try:
                function = ctypes.CDLL(None, use_errno=True).renameat2
            except (OSError, AttributeError):  # musl or glibc < 2.28
                pass
            else:
                function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
                function.restype = ctypes.c_int
                _renameat2 = function
    return _renameat2  # type: ignore[return-value]


def _call(source: str, destination: str, flags: int) -> None:
    function = _lookup()
    if function is None:
        raise Unsupported("renameat2 is not available")
    import ctypes

    if function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(destination), flags) != 0:
        code = ctypes.get_errno()
        if code in _UNSUPPORTED:
            raise Unsupported(os.strerror(code))
        raise OSError(code, os.strerror(code), source, None, destination)


def exchange(first: str, second: str) -> None:
    """Swap two existing paths atomically (both must exist), or raise ``Unsupported``."""
    _call(first, second, _RENAME_EXCHANGE)


def rename_new(source: str, destination: str) -> None:
    """Rename onto a path that must not exist (never onto an empty folder that appeared meanwhile)."""
    try:
        _call(source, destination, _RENAME_NOREPLACE)
    except Unsupported:
        if os.path.lexists(destination):
            raise FileExistsError(errno.EEXIST, "exists", destination) from None
        os.rename(source, destination)


class Busy(Exception):
    """Another process held the lock for longer than the wait allowed."""


@contextlib.contextmanager
def locked(directory: str, on_wait: Callable[[], None], timeout: float) -> Iterator[None]:
    """Hold an exclusive flock on ``directory`` itself: no lock file litters a folder git commits.

    The kernel drops the lock when its holder dies, so a killed render never blocks the next one.
    ``on_wait`` is called once if another holder makes us wait. Where the filesystem has no such
    lock, renders are not serialised; each switch is still atomic.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no serialisation, the atomic rename still protects the tree
        yield
        return
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:  # unreadable: writing there fails next, with its own message
        yield
        return
    try:
        deadline = None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is None:
                    deadline = time.monotonic() + timeout
                    on_wait()
                if time.monotonic() > deadline:
                    raise Busy() from None
                time.sleep(0.05)
            except OSError:  # no flock on this filesystem (NFS maps it to fcntl locks, refused on a folder)
                break
        yield
    finally:
        os.close(fd)  # releases the lock
