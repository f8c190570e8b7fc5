"""Spare file descriptors, so that the daemon still answers when connections have used up the rest.

nginx's and HAProxy's trick: a few descriptors (on ``/dev/null``) are held from
the start. When ``accept()`` fails because the process is out of descriptors
(EMFILE, ENFILE), the connection waits in the backlog and ``accept()`` fails
again at once, forever. A listener then gives one spare back, accepts the
waiting connection, closes it (its client sees the connection end rather than
hang) and takes the spare again. The control socket instead *borrows* spares:
one becomes its client's connection, one is left free for the command it runs;
while any is lent out, listeners close each new connection the same way, so
the borrowed descriptors stay free. The Daemon owns one reserve; listeners and
the control server call it at those moments, and at no other.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable

#: Descriptors held in reserve.
SPARES = 8
#: Spares the control socket borrows for one client: its connection, and one for its command.
LEND = 2
#: accept() errors that mean "no descriptor (or kernel memory) for the new connection".
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class DescriptorReserve:
    """Spare descriptors, and the two ways of spending them (:meth:`shed`, :meth:`borrow`)."""

    def __init__(self, size: int = SPARES):
        self.size = size
        # _lock guards _spares, _lent and _replaced: giving a spare back and taking it again is one step
        self._lock = threading.Lock()
        self._spares: list[int] = []
        self._lent = 0
        self._replaced = 0  # lent spares replaced by new ones before their borrower gave them back
        self.shed_count = 0  # connections refused at once for want of descriptors

    def open(self) -> None:
        """Take the spares (at the daemon's start)."""
        if not self.refill():
            raise OSError(errno.EMFILE, f"cannot hold {self.size} spare file descriptors")

    def refill(self) -> bool:
        """Take spares up to the reserve's size (less those lent); False if still short."""
        with self._lock:
            return self._refill()

    def _refill(self) -> bool:
        while len(self._spares) + self._lent < self.size:
            try:
                self._spares.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                return False
        return True

    def tight(self) -> bool:
        """True while spares are lent out or missing: a listener should not keep a new connection.

        Once descriptors are free again, lent spares are replaced by new ones (a client that
        borrowed some, ``daemonctl logs -f``, may stay for hours), and it is False again.
        """
        if not self._lent and len(self._spares) == self.size:  # the common case: no lock, no system call
            return False
        with self._lock:
            while self._lent:
                try:
                    self._spares.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
                except OSError:
                    return True
                self._lent -= 1
                self._replaced += 1
            return not self._refill()

    def shed(self, sock: socket.socket, refuse: Callable[[socket.socket], None]) -> tuple | None:
        """``sock.accept()`` failed for want of descriptors: accept one waiting connection with a
        spare and ``refuse`` it (which closes it) at once. Its address; None if no connection
        waited (Linux fails ``accept()`` with EMFILE before it looks at the queue). OSError if
        no spare was left."""
        with self._lock:
            if not self._spares and not self._refill():
                raise OSError(errno.EMFILE, "no spare file descriptor")
            os.close(self._spares.pop())
            try:
                conn, addr = _accept_now(sock)
            except BlockingIOError:
                return None
            finally:
                self._refill()
            try:
                refuse(conn)
            finally:
                conn.close()
                self._refill()  # the connection's descriptor, freed just now
            self.shed_count += 1
        return addr

    def borrow(self, sock: socket.socket) -> tuple[socket.socket, int]:
        """``sock.accept()`` failed for want of descriptors: accept with borrowed spares. The
        connection and how many spares it took: :meth:`give_back` them once it is closed. OSError
        if none could be had."""
        with self._lock:
            lend = min(LEND, len(self._spares))
            if not lend:
                raise OSError(errno.EMFILE, "no spare file descriptor")
            for _ in range(lend):
                os.close(self._spares.pop())
            self._lent += lend
            try:
                conn, _ = _accept_now(sock)
            except OSError:
                self._lent -= lend
                self._refill()
                raise
        return conn, lend

    def give_back(self, lent: int) -> None:
        """A connection from :meth:`borrow` is closed: the ``lent`` spares it took return to the reserve."""
        if lent:
            with self._lock:
                replaced = min(lent, self._replaced)
                self._replaced -= replaced
                self._lent -= lent - replaced
                self._refill()

    def status(self) -> dict[str, int]:
        with self._lock:
            return {"spare": len(self._spares), "lent": self._lent, "shed": self.shed_count}

    def close(self) -> None:
        with self._lock:
            for fd in self._spares:
                os.close(fd)
            self._spares.clear()
            self.size = 0


def _accept_now(sock: socket.socket) -> tuple[socket.socket, tuple]:
    """accept() without blocking, whatever the socket's own mode (a listener's blocks)."""
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        return sock.accept()
    finally:
        sock.settimeout(timeout)
