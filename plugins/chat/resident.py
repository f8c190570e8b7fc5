"""Keep a file's pages in memory, so that writing into it never waits for the disk to read.

The history's SQLite write-ahead log is written in frames of 24 bytes of header and
one database page: writes that cover only part of each 4 KiB page of the file. When
the kernel has evicted such a page (memory pressure, or a host that pages out file
data unused for a minute), the write first reads it back from the disk — with the
room's lock held, so every delivery waits on that read. :class:`ResidentFile` maps the file
and locks its pages (``mlock``) as it grows, so they stay in the page cache and a
write into them is a copy in memory.

Locked memory counts against ``RLIMIT_MEMLOCK`` (8 MiB by default; the systemd unit
raises it). When the limit is reached the pages locked so far stay locked, the rest
behave as before, and :attr:`ResidentFile.error` says why.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import resource

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value

#: Address space reserved for one file; pages are locked only up to the file's size.
WINDOW = 64 << 20


class ResidentFile:
    """Lock the pages of the file at ``path`` up to its size, following it as it grows.

    Call :meth:`follow` after writing to the file: one ``fstat`` when the file has not
    grown, one ``mlock`` of the new pages (just written, so already in memory) when it has.
    Only whole pages inside the file are touched; the mapping is never read or written.
    """

    def __init__(self, path: os.PathLike | str, window: int = WINDOW):
        self.path = path
        self.window = window
        self.locked = 0  # bytes locked, from the start of the file
        self.error: str | None = None  # why no more pages are locked (the limit), None while all goes well
        self._fd: int | None = None
        self._addr: int | None = None

    def follow(self) -> None:
        if self.error is not None:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            size = os.fstat(self._fd).st_size
        except FileNotFoundError:  # not created yet
            return
        except OSError as exc:
            self.error = f"{self.path}: {exc.strerror}"
            return
        want = min(-(-size // mmap.PAGESIZE) * mmap.PAGESIZE, self.window)
        if want <= self.locked:
            return
        if self._addr is None:
            addr = _libc.mmap(None, self.window, mmap.PROT_READ, mmap.MAP_SHARED, self._fd, 0)
            if addr in (None, _MAP_FAILED):
                self.error = f"mmap {self.path}: {os.strerror(ctypes.get_errno())}"
                return
            self._addr = addr
        if _libc.mlock(self._addr + self.locked, want - self.locked) != 0:
            self.error = f"mlock {self.path}: {mlock_refusal(ctypes.get_errno())}"
            return
        self.locked = want

    def close(self) -> None:
        if self._addr is not None:
            _libc.munmap(self._addr, self.window)  # unlocks too
            self._addr = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.locked = 0


def mlock_refusal(err: int) -> str:
    """What refused an ``mlock`` that failed with ``err``, for the operator. EPERM under a
    non-zero RLIMIT_MEMLOCK comes from a system call filter (seccomp: the service's
    ``SystemCallFilter=``, or a container's), which no limit raises; ENOMEM and EAGAIN
    mean the limit was reached."""
    soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    limit = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft} bytes"
    if err == errno.EPERM and soft != 0:
        return (f"{os.strerror(err)}: refused by a system call filter (seccomp), not by RLIMIT_MEMLOCK "
                f"({limit}); let mlock through the filter (@memlock)")
    return f"{os.strerror(err)}: over RLIMIT_MEMLOCK ({limit}); raise it (LimitMEMLOCK= in the unit)"
