"""Sending without blocking: a bounded queue per connection, one flusher thread for all.

Any thread may write to any session (a chat broadcast writes to a thousand of
them from the sender's thread). A write first tries the socket directly with
``MSG_DONTWAIT``; what the kernel does not take at once is queued on that
session's :class:`Outbox`, and the single :class:`Flusher` thread drains every
non-empty queue when its socket becomes writable. So one event wakes one
thread: a broadcast never wakes the receivers' threads, and a client that
stops reading costs its queue's bytes, up to a bound, and nothing else.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import threading
from collections import deque
from collections.abc import Callable

log = logging.getLogger("daemond.outbox")

_DONTWAIT = socket.MSG_DONTWAIT | getattr(socket, "MSG_NOSIGNAL", 0)


class Outbox:
    """What is waiting to be sent on one socket, bounded by ``limit`` bytes.

    When the queue would pass ``limit`` the outbox closes itself and calls
    ``on_overflow`` (the session then ends with reason ``overflow``). A block
    (:meth:`write_block`, a reply to the client's own request) raises that
    bound by its own size until :meth:`settle` sees the queue drained.
    """

    def __init__(self, sock: socket.socket, flusher: Flusher, limit: int,
                 on_overflow: Callable[[], None] | None = None):
        self._sock = sock
        self._flusher = flusher
        self._limit = limit
        self._on_overflow = on_overflow
        # _lock guards _queue, _queued, _closed and the order of sends on the socket:
        # whoever holds it is the only one sending, so bytes never interleave.
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)  # signalled when the queue shrinks or closes
        self._queue: deque[memoryview] | None = None  # made when first needed: most outboxes never queue
        self._queued = 0
        self._closed = False
        self._interrupted = False  # wait_below() gives up (the session is being closed)
        self._handed_over = False  # ever given to the flusher (so close() must take it back)
        self._allowance = 0  # bytes of blocks written past the limit, until settle() sees them drained
        self.bytes_sent = 0
        self.error: OSError | None = None

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        return self._sock.fileno()

    @property
    def in_block(self) -> bool:
        """Whether a block was written that :meth:`settle` has not yet seen drained."""
        return self._allowance > 0

    def write_block(self, data: bytes) -> bool:
        """Like :meth:`write`, for a block of any size that the limit must not cut: the
        limit grows by ``len(data)`` until :meth:`settle`. Nothing else lands inside it."""
        return self.write(data, True)

    def settle(self, threshold: int, timeout: float | None = None) -> bool:
        """Wait like :meth:`wait_below`, then drop the allowance of the blocks written so far."""
        ok = self.wait_below(threshold, timeout)
        with self._lock:
            self._allowance = 0
        return ok

    def write(self, data: bytes, block: bool = False) -> bool:
        """Send ``data`` or queue it; never blocks. False if the outbox is closed or overflowed.
        ``block``: see :meth:`write_block`. (One method for both: it is every delivery's hot path.)"""
        overflow = False
        with self._lock:
            if self._closed:
                return False
            if block:
                self._allowance += len(data)
            if not self._queue:
                try:
                    sent = self._sock.send(data, _DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError as exc:
                    self._fail(exc)
                    return False
                self.bytes_sent += sent
                if sent == len(data):
                    return True
                data = memoryview(data)[sent:]
            else:
                data = memoryview(data)
            if self._queued + len(data) > self._limit + self._allowance:
                self._closed = True
                self._queue = None
                self._queued = 0
                self._drained.notify_all()
                overflow = True
            else:
                first = not self._queue
                if self._queue is None:
                    self._queue = deque()
                self._queue.append(data)
                self._queued += len(data)
        if overflow:
            if self._on_overflow is not None:
                self._on_overflow()
            return False
        if first:
            self._handed_over = True
            self._flusher.watch(self)
        return True

    def wait_below(self, threshold: int, timeout: float | None = None) -> bool:
        """Block until fewer than ``threshold`` bytes are queued (back-pressure for
        streaming plugins). False if the outbox closed or ``timeout`` passed."""
        with self._lock:
            ok = self._drained.wait_for(
                lambda: self._closed or self._interrupted or self._queued < threshold, timeout)
            return bool(ok) and not self._closed and not self._interrupted

    def wait_empty(self, timeout: float) -> bool:
        """Block until everything queued is sent (used while a session finishes)."""
        with self._lock:
            return bool(self._drained.wait_for(lambda: self._closed or not self._queue, timeout)) and not self._queue

    def interrupt(self) -> None:
        """Make :meth:`wait_below` return False now and from now on; queued bytes stay queued."""
        with self._lock:
            self._interrupted = True
            self._drained.notify_all()

    def flush(self) -> bool:
        """Send what the socket takes now (flusher thread). True when the queue is empty."""
        with self._lock:
            while self._queue and not self._closed:
                chunk = self._queue[0]
                try:
                    sent = self._sock.send(chunk, _DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    self._fail(exc)
                    break
                self.bytes_sent += sent
                self._queued -= sent
                if sent == len(chunk):
                    self._queue.popleft()
                else:
                    self._queue[0] = chunk[sent:]
                    break
            self._drained.notify_all()
            return not self._queue or self._closed

    def close(self) -> None:
        """Drop whatever is queued and refuse further writes."""
        with self._lock:
            self._closed = True
            self._queue = None
            self._queued = 0
            self._drained.notify_all()
        if self._handed_over:  # most sessions never queue: closing them costs the flusher nothing
            self._flusher.forget(self)

    def _fail(self, exc: OSError) -> None:  # with _lock held
        self.error = exc
        self._closed = True
        self._queue = None
        self._queued = 0
        self._drained.notify_all()


class Flusher:
    """The one thread that drains every outbox the kernel could not take at once."""

    def __init__(self, name: str = "flusher", on_start: Callable[[], None] | None = None):
        self._on_start = on_start  # called first on the flusher thread (the daemon's runtime policy)
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        # _lock guards _incoming and _stopping: outboxes handed over by other threads;
        # the selector itself is touched only by the flusher thread.
        self._lock = threading.Lock()
        self._incoming: list[tuple[bool, Outbox]] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def watch(self, outbox: Outbox) -> None:
        self._hand_over(True, outbox)

    def forget(self, outbox: Outbox) -> None:
        self._hand_over(False, outbox)

    def _hand_over(self, add: bool, outbox: Outbox) -> None:
        with self._lock:
            if self._stopping:
                return
            wake = not self._incoming
            self._incoming.append((add, outbox))
        if wake:
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # the pipe is full: the flusher is awake already

    def stop(self, timeout: float = 2.0) -> None:
        with self._lock:
            self._stopping = True
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run(self) -> None:
        if self._on_start is not None:
            self._on_start()
        watched: dict[int, Outbox] = {}
        while True:
            with self._lock:
                if self._stopping:
                    return
                incoming, self._incoming = self._incoming, []
            for add, outbox in incoming:
                self._apply(watched, add, outbox)
            for key, _ in self._selector.select():
                if key.data is None:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                outbox = key.data
                if outbox.flush():
                    self._apply(watched, False, outbox)

    def _apply(self, watched: dict[int, Outbox], add: bool, outbox: Outbox) -> None:
        try:
            fd = outbox.fileno()
        except OSError:
            fd = -1
        if add:
            if fd < 0 or outbox.closed:
                return
            current = watched.get(fd)
            if current is outbox:
                return
            if current is not None:  # fd reused by a new connection: drop the stale entry
                self._selector.unregister(fd)
            self._selector.register(fd, selectors.EVENT_WRITE, outbox)
            watched[fd] = outbox
        else:
            for wfd, w in list(watched.items()):
                if w is outbox:
                    try:
                        self._selector.unregister(wfd)
                    except (KeyError, ValueError, OSError):
                        pass
                    del watched[wfd]
