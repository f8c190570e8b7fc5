"""One client connection, served by a thread of its own.

A :class:`Session` runs ``setup → handle → finish`` on its thread (the shape
of ``socketserver.BaseRequestHandler``): it calls ``daemond_session_open`` for
the listener's plugins in order, then frames input into lines or passes raw
bytes on, and always ends with ``daemond_session_close`` and a log line, in a
``finally``. Everything a plugin does to a connection goes through the
methods here.
"""

from __future__ import annotations

import itertools
import logging
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING, Any

from daemon.lines import BadEncoding, LineFramer, TooLong, shown, split_command
from daemon.outbox import Outbox
from daemon.tuning import restore_priority, settle_priority

if TYPE_CHECKING:  # pragma: no cover
    from daemon.listener import Listener

log = logging.getLogger("daemond.session")

#: How much a streaming sender may have queued before :meth:`Session.send` waits.
SEND_HIGH_WATER = 256 * 1024
_RECV_SIZE = 65536
_ids = itertools.count(1)


def timeval(seconds: float) -> bytes:
    """A ``struct timeval`` for SO_RCVTIMEO (0 = no timeout)."""
    sec = int(seconds)
    usec = int((seconds - sec) * 1_000_000)
    if seconds and not (sec or usec):
        usec = 1
    return struct.pack("ll", sec, usec)


class SessionEnd(Exception):
    """Raise from a session hook to end the connection without a traceback.

    ``reason`` is the short word logged and passed to ``daemond_session_close``.
    """

    def __init__(self, reason: str = "quit"):
        super().__init__(reason)
        self.reason = reason


class Session:
    """A connected client, as plugins see it.

    Attributes plugins read: ``id``, ``peer`` (host, port), ``listener`` (its
    name), ``settings`` (the listener's :class:`~daemon.config.ListenerConfig`),
    ``daemon`` (the :class:`~daemon.api.DaemonAPI`), ``user`` (the logged-in
    name or ``None``), ``state`` (a dict for plugins' per-connection data — use
    your plugin's name as the key), ``connected_at`` (epoch seconds).
    """

    def __init__(self, sock: socket.socket, peer: tuple, listener: Listener):
        self.id = next(_ids)
        self.sock = sock
        self.peer = (peer[0], peer[1])
        self.listener = listener.name
        self.settings = listener.config
        self.daemon = listener.daemon_api
        self.chain = listener.chain
        self.user: str | None = None
        self.state: dict[str, Any] = {}
        self.connected_at = time.time()
        self.bytes_in = 0
        self.outbox = Outbox(sock, listener.flusher, self.settings.send_queue, on_overflow=self._overflowed)
        self._listener = listener
        self._framer = LineFramer(self.settings.max_line)
        self._rcvtimeo: float = 0.0
        self._end_reason: str | None = None  # set by close() from any thread
        self._started = time.monotonic()
        #: the thread serving it while it runs (threads outlive connections: daemon/threads.py)
        self.thread: threading.Thread | None = None
        #: counted in the listener's not-logged-in count per address (guarded by the listener's lock)
        self.counted_unauthenticated = False
        #: its thread runs at tuning.login_nice until login
        self.low_priority = False

    # -- what plugins call -------------------------------------------------

    @property
    def peer_str(self) -> str:
        host, port = self.peer
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def write(self, data: bytes) -> bool:
        """Queue ``data`` for the client without ever blocking; any thread may call it.

        Returns False when the connection is closing or its send queue
        overflowed (the client is not reading; it is then disconnected).
        """
        return self.outbox.write(data)

    def send(self, data: bytes) -> None:
        """Send ``data`` with back-pressure: waits while too much is queued.

        For streaming plugins on the session's own thread. Raises
        :class:`SessionEnd` if the client goes away or stops reading for
        longer than the idle timeout.
        """
        outbox = self.outbox
        if len(data) <= SEND_HIGH_WATER:  # the common case, kept short: it is echo's hot path
            if not outbox.write(data):
                raise SessionEnd(self._end_reason or "reset")
            if outbox.queued >= SEND_HIGH_WATER:
                self._wait_below_high_water()
            return
        view = memoryview(data)
        for start in range(0, len(view), SEND_HIGH_WATER):
            if not outbox.write(view[start : start + SEND_HIGH_WATER]):
                raise SessionEnd(self._end_reason or "reset")
            if outbox.queued >= SEND_HIGH_WATER:
                self._wait_below_high_water()

    def _wait_below_high_water(self) -> None:
        if not self.outbox.wait_below(SEND_HIGH_WATER, self.settings.idle_timeout or None):
            raise SessionEnd(self._end_reason or ("reset" if self.outbox.closed else "timeout"))

    def send_line(self, text: str) -> bool:
        """Queue one line of text (a line ending is added)."""
        return self.outbox.write(text.encode("utf-8") + b"\n")

    def ok(self, text: str = "") -> bool:
        """Send the final success line of a reply: ``+OK text``."""
        return self.send_line(f"+OK {text}" if text else "+OK")

    def err(self, token: str, text: str = "") -> bool:
        """Send the final failure line of a reply: ``-ERR token text``."""
        return self.send_line(f"-ERR {token} {text}" if text else f"-ERR {token}")

    def read_line(self, timeout: float | None = None) -> str:
        """Wait for the client's next line (for dialogues in ``daemond_session_open``).

        Over-long and badly encoded lines are answered with ``-ERR`` and
        skipped. ``timeout`` (seconds) bounds the wait; without it the
        listener's idle timeout applies. Raises :class:`SessionEnd` with
        reason ``eof`` or ``timeout``.
        """
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            event = self._next_event(deadline)
            if isinstance(event, str):
                return event
            self._report(event)

    def login(self, user: str) -> None:
        """Record that ``user`` has logged in and tell the plugins (``daemond_session_login``).

        Called by a login plugin (the built-in ``auth``) after it verified the user.
        """
        self.user = user
        if self.low_priority:  # served from now on: back to the daemon's own priority
            self.low_priority = False
            restore_priority(self.thread)
        self._listener.session_logged_in(self)
        self.chain.hook.daemond_session_login(session=self, user=user)
        log.info("login %s %s user=%s", self.listener, self.peer_str, user)  # after: a plugin may refuse it

    def close(self, reason: str = "kicked") -> None:
        """End the session from any thread; what is already queued is still sent."""
        if self._end_reason is None:
            self._end_reason = reason
        self.outbox.interrupt()  # wakes the session's thread out of send()'s back-pressure wait
        try:
            self.sock.shutdown(socket.SHUT_RD)  # wakes the session's thread out of recv()
        except OSError:
            pass

    def abort(self, reason: str) -> None:
        """End the session at once, dropping anything queued (from any thread)."""
        if self._end_reason is None:
            self._end_reason = reason
        self.outbox.close()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- the thread --------------------------------------------------------

    def run(self) -> None:
        """Serve the connection to its end, on the calling thread."""
        self.thread = threading.current_thread()
        reason = "eof"
        try:
            self._setup()
            self.chain.hook.daemond_session_open(session=self)
            if self.chain.line_mode:
                self._serve_lines()
            else:
                self._serve_bytes()
        except SessionEnd as end:
            reason = end.reason
        except BlockingIOError:  # SO_RCVTIMEO expired
            reason = "timeout"
        except (ConnectionError, OSError) as exc:
            reason = "reset" if self._end_reason is None else self._end_reason
            log.debug("session %s %s: %s", self.listener, self.peer_str, exc)
        except Exception as exc:
            reason = "error"
            plugin = self.chain.blame(exc)
            self._listener.count_error(plugin)
            log.error("plugin %s raised in listener %s (%s); closing this connection",
                      plugin or "?", self.listener, self.peer_str, exc_info=True)
        finally:
            self._finish(self._end_reason or reason)

    def _setup(self) -> None:
        # Keepalive, TCP_NODELAY and the idle timeout (SO_RCVTIMEO) were set on the
        # listening socket and Linux copies them to accepted ones, so a new session
        # makes no socket call before its first recv() (its priority costs one getpriority()).
        self._rcvtimeo = self._listener.socket_rcvtimeo
        self.low_priority = settle_priority(self.chain.login_gated)
        log.info("connect %s %s", self.listener, self.peer_str)

    def _set_rcvtimeo(self, seconds: float) -> None:
        # A kernel receive timeout keeps the socket blocking (one syscall per
        # recv) where socket.settimeout() would add a poll() before each one.
        if seconds != self._rcvtimeo:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(seconds))
            self._rcvtimeo = seconds

    def _serve_bytes(self) -> None:
        on_data = self.chain.on_data
        rest = self._framer.take_rest()
        if rest:
            self.bytes_in += len(rest)
            on_data(self, rest)
        recv = self.sock.recv
        while True:
            data = recv(_RECV_SIZE)
            if not data:
                return
            self.bytes_in += len(data)
            on_data(self, data)

    def _serve_lines(self) -> None:
        on_line = self.chain.on_line
        while True:
            event = self._next_event(None)
            if isinstance(event, str):
                if on_line(session=self, line=event) is None:
                    self._unhandled(event)
            else:
                self._report(event)

    def _next_event(self, deadline: float | None):
        framer = self._framer
        while True:
            event = framer.next()
            if event is not None:
                return event
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SessionEnd("timeout")
                idle = self.settings.idle_timeout
                self._set_rcvtimeo(min(left, idle) if idle else left)
            else:
                self._set_rcvtimeo(self.settings.idle_timeout)
            try:
                data = self.sock.recv(_RECV_SIZE)
            except BlockingIOError:
                raise SessionEnd("timeout") from None
            if not data:
                if framer.has_pending():  # a last line without its LF still counts
                    framer.feed(b"\n")
                    continue
                raise SessionEnd("eof")
            self.bytes_in += len(data)
            framer.feed(data)

    def _report(self, event) -> None:
        if isinstance(event, TooLong):
            self.err("line-too-long", f"lines are limited to {event.limit} bytes; line discarded")
        elif isinstance(event, BadEncoding):
            self.err("bad-encoding", f"lines must be UTF-8 text ({event.reason}); line discarded")

    def _unhandled(self, line: str) -> None:
        command = split_command(line)
        if command is None:
            self.err("unknown-command", "nothing on this listener handles plain text")
            return
        name, _ = command
        if name == "/quit":
            self.ok("bye")
            raise SessionEnd("quit")
        if name == "/help":
            entries = [("/help", "list commands"), ("/quit", "close the connection")]
            for result in self.chain.hook.daemond_line_commands(session=self):
                entries.extend(result or [])
            seen = set()
            for usage, text in entries:
                if usage not in seen:
                    seen.add(usage)
                    self.send_line(f"HELP {usage} - {text}")
            self.ok(f"{len(seen)} commands")
            return
        self.err("unknown-command", f"{shown(name)} (try /help)")  # never an escape back to a terminal

    def _overflowed(self) -> None:
        log.warning("send queue exceeded: %s %s user=%s has more than %d bytes unread; disconnecting",
                    self.listener, self.peer_str, self.user or "-", self.settings.send_queue)
        self.abort("overflow")

    def _finish(self, reason: str) -> None:
        try:
            self._call_close_hooks(reason)
            if reason not in ("overflow", "reset", "error") and self.outbox.queued:
                self._drain(1.0 if reason == "shutdown" else 5.0)
        finally:
            self.outbox.close()
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
            self._listener.session_ended(self)
            log.info("disconnect %s %s user=%s reason=%s in=%d out=%d duration=%.3fs",
                     self.listener, self.peer_str, self.user or "-", reason, self.bytes_in,
                     self.outbox.bytes_sent, time.monotonic() - self._started)
            if self.low_priority:  # never logged in: the thread waits for its next connection
                self.low_priority = False  # at the daemon's own priority, whichever listener that is
                restore_priority(self.thread)
            self.thread = None  # it may serve another connection now

    def _drain(self, stall: float) -> None:
        """Let the flusher send what is queued while the client keeps reading."""
        last = self.outbox.queued
        while last and not self.outbox.wait_empty(stall):
            now = self.outbox.queued
            if self.outbox.closed or now >= last:
                return
            last = now

    def _call_close_hooks(self, reason: str) -> None:
        # Every implementation is called even if one raises (pluggy would stop at the first).
        for impl in reversed(self.chain.hook.daemond_session_close.get_hookimpls()):
            kwargs = {"session": self, "reason": reason}
            try:
                impl.function(*[kwargs[a] for a in impl.argnames])
            except Exception:
                self._listener.count_error(impl.plugin_name)
                log.error("plugin %s raised in daemond_session_close (%s %s)",
                          impl.plugin_name, self.listener, self.peer_str, exc_info=True)
