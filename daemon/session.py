"""One client connection, as plugins see it: what a plugin may do to it.

A :class:`Session` is created by the listener that accepted the connection
(its *host*, seen only through the narrow :class:`SessionHost` interface) and
served on a thread of its own by :func:`daemon.serving.serve`, which runs the
hooks. Here are the methods plugins call: writing (never blocking, from any
thread), sending with back-pressure, writing a long reply as one block,
reading a line during a dialogue, logging in and closing.
"""

from __future__ import annotations

import itertools
import logging
import select
import socket
import struct
import threading
import time
from typing import Any, Protocol

from daemon.addresses import format_address
from daemon.lines import BadEncoding, LineFramer, TooLong
from daemon.outbox import Flusher, Outbox
from daemon.tls import SealingOutbox, TlsConnection, TlsInfo, looks_like_client_hello

log = logging.getLogger("daemond.session")

#: How much a streaming sender may have queued before :meth:`Session.send` waits.
SEND_HIGH_WATER = 256 * 1024
RECV_SIZE = 65536
_ids = itertools.count(1)


def timeval(seconds: float) -> bytes:
    """A ``struct timeval`` for SO_RCVTIMEO (0 = no timeout)."""
    sec = int(seconds)
    usec = int((seconds - sec) * 1_000_000)
    if seconds and not (sec or usec):
        usec = 1
    return struct.pack("ll", sec, usec)


def _bad_line(event: TooLong | BadEncoding) -> tuple[str, str]:
    """The error token and sentence for a line that could not be read."""
    if isinstance(event, TooLong):
        return "line-too-long", f"lines are limited to {event.limit} bytes; line discarded"
    return "bad-encoding", f"lines must be UTF-8 text ({event.reason}); line discarded"


class SessionEnd(Exception):
    """Raise from a session hook to end the connection without a traceback.

    ``reason`` is the short word logged and passed to ``daemond_session_close``
    (default ``quit``). :meth:`Session.read_line` and :meth:`Session.send` raise
    it too when the client goes away (``eof``, ``timeout``, ``reset``): let it
    pass through your hook.

    Example::

        @hookimpl
        def daemond_line_received(session, line):
            if line == "bye":
                session.ok("bye")
                raise SessionEnd("quit")
    """

    def __init__(self, reason: str = "quit"):
        super().__init__(reason)
        self.reason = reason


class SessionHost(Protocol):
    """What a session needs of the listener that accepted it, and all it may call there."""

    name: str
    config: Any  # the listener's ListenerConfig, when the connection was accepted
    chain: Any  # the listener's plugins (daemon.loader.Chain)
    api: Any  # the DaemonAPI
    flusher: Flusher
    rcvtimeo: float  # the receive timeout accepted sockets inherit
    tls_context: Any  # the ssl.SSLContext for new connections, or None: plaintext

    def session_logged_in(self, session: Session) -> str | None:
        """Count ``session`` as logged in; or, over a limit, say why it may not be (nothing counted)."""

    def session_ended(self, session: Session) -> None: ...

    def count_error(self, plugin: str | None) -> None: ...


class Session:
    """A connected client, as plugins see it: the ``session`` argument of session hooks.

    Created by the listener that accepted the connection and served on a
    thread of its own; every session hook of one connection runs on that
    thread, in the order the listener lists its plugins. :meth:`write`,
    :meth:`close` and :meth:`abort` may be called from any thread (a
    broadcast, a kick); the other methods belong to the session's own thread.

    Example (a plugin answering each line)::

        @hookimpl
        def daemond_line_received(session, line):
            if split_command(line) is not None:
                return None                      # a /command: not ours
            session.state["count"] = session.state.get("count", 0) + 1
            session.ok(f"{session.user or 'anonymous'} from {session.peer[0]}: {plain_text(line)}")
            return True
    """

    id: int
    """A number unique among this daemon's sessions (for logs)."""
    peer: tuple[str, int]
    """The client's address: a ``(host, port)`` tuple, e.g. ``("127.0.0.1", 51234)``
    (an IPv6 host without brackets)."""
    listener: str
    """The name of the listener that accepted the connection (its key under ``listeners:``)."""
    settings: Any
    """The listener's settings when the connection was accepted, read-only: ``host``,
    ``port``, ``plugins``, ``max_line``, ``idle_timeout``, ``send_queue`` and the other
    keys of a listener in docs/configuration.md, as attributes."""
    daemon: DaemonAPI
    """The running daemon (:class:`DaemonAPI`), as hooks' ``daemon`` argument."""
    user: str | None
    """The logged-in user, or ``None`` until a login plugin calls :meth:`login`."""
    state: dict[str, Any]
    """Per-connection data for plugins, empty at first: key it with your plugin's name."""
    connected_at: float
    """When the connection was accepted (epoch seconds, ``time.time()``)."""
    thread: threading.Thread | None
    """The thread serving the session while it runs, else ``None`` (threads outlive
    connections: the daemon may keep one to serve a later connection)."""
    tls: TlsInfo | None
    """``None`` on a plaintext connection; on a TLS listener (set before
    ``daemond_session_open``) the handshake's outcome: ``version`` (``"TLSv1.3"``),
    ``cipher``, and ``peer_cert``/``peer_cn`` of a verified client certificate (else None)."""

    def __init__(self, sock: socket.socket, peer: tuple, host: SessionHost):
        self.id = next(_ids)
        self.sock = sock
        self.peer = (peer[0], peer[1])
        self.listener = host.name
        self.settings = host.config
        self.daemon = host.api
        self.chain = host.chain
        self.user = None
        self.state = {}
        self.connected_at = time.time()
        self.bytes_in = 0
        self.tls = None
        # The transport is chosen here, once: ``recv`` (the session's thread) and ``outbox.write``
        # (any thread) are the socket's own for plaintext, TLS's for a TLS listener.
        context = host.tls_context
        if context is None:
            self.tls_connection: TlsConnection | None = None
            self.outbox = Outbox(sock, host.flusher, self.settings.send_queue, on_overflow=self._overflowed)
            self.recv = self._first_recv
        else:
            self.tls_connection = TlsConnection(context, sock)
            self.outbox = SealingOutbox(self.tls_connection, sock, host.flusher, self.settings.send_queue,
                                        on_overflow=self._overflowed)
            self.recv = self.tls_connection.recv
        #: send() waits while this much is queued: SEND_HIGH_WATER, or half a smaller send queue
        self.high_water = min(SEND_HIGH_WATER, self.settings.send_queue // 2)
        self.host = host
        self.framer = LineFramer(self.settings.max_line)
        self.rcvtimeo: float = host.rcvtimeo  # the socket's SO_RCVTIMEO now
        self.end_reason: str | None = None  # set by close() from any thread
        self.started = time.monotonic()
        self.thread = None  # set by the serving loop (daemon/threads.py)
        #: counted in the host's not-logged-in count per address (guarded by the host's lock)
        self.counted_unauthenticated = False
        #: counted in the host's logged-in count per address (guarded by the host's lock)
        self.counted_logged_in = False

    # -- what plugins call -------------------------------------------------

    @property
    def peer_str(self) -> str:
        """The peer as ``host:port`` (``[host]:port`` for IPv6), for logs and notices."""
        return format_address(*self.peer)

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
        high = self.high_water
        if len(data) <= high:  # the common case, kept short: it is echo's hot path
            if not outbox.write(data):
                raise SessionEnd(self.end_reason or "reset")
            if outbox.queued >= high:
                self._wait_below_high_water()
            return
        view = memoryview(data)
        for start in range(0, len(view), high):
            if not outbox.write(view[start : start + high]):
                raise SessionEnd(self.end_reason or "reset")
            if outbox.queued >= high:
                self._wait_below_high_water()

    def write_block(self, data: bytes) -> bool:
        """Queue a reply of any size as one unbroken block, never blocking; for the client's own request.

        Nothing another thread writes lands inside the block, and the block
        may take the send queue past ``send_queue`` by its own size (a
        ``/history 1000`` or a room's replay is larger than the queue). The
        client that asked pays for it: its session's thread reads its next
        line only once the block has drained below the high-water mark, as in
        :meth:`send`. Call it on the session's own thread, or under a lock
        that must not wait (chat writes a room's replay under the room's lock).
        Returns False like :meth:`write`.
        """
        return self.outbox.write_block(data)

    def settle(self) -> None:
        """Wait until the blocks written have drained below the high-water mark (the session's own
        thread; the serving loop does it before reading each line). Raises :class:`SessionEnd`
        like :meth:`send`."""
        if self.outbox.in_block and not self.outbox.settle(self.high_water, self.settings.idle_timeout or None):
            raise SessionEnd(self.end_reason or ("reset" if self.outbox.closed else "timeout"))

    def _wait_below_high_water(self) -> None:
        if not self.outbox.wait_below(self.high_water, self.settings.idle_timeout or None):
            raise SessionEnd(self.end_reason or ("reset" if self.outbox.closed else "timeout"))

    def send_line(self, text: str) -> bool:
        """Queue one line of text, UTF-8 encoded, with ``\\n`` added; never blocks.

        Returns what :meth:`write` returns (``False``: the client is gone).
        """
        return self.outbox.write(text.encode("utf-8") + b"\n")

    def ok(self, text: str = "") -> bool:
        """Send the final success line of a reply: ``+OK text`` (``+OK`` alone without text).

        Returns what :meth:`write` returns.
        """
        return self.send_line(f"+OK {text}" if text else "+OK")

    def err(self, token: str, text: str = "") -> bool:
        """Send the final failure line of a reply: ``-ERR token text``.

        ``token`` is one word a program can test (``unknown-command``,
        ``bad-room``); ``text`` a sentence for people. Returns what
        :meth:`write` returns.
        """
        return self.send_line(f"-ERR {token} {text}" if text else f"-ERR {token}")

    def peer_closed(self) -> bool:
        """Whether the client is gone: it closed its side (lines it sent may still be
        waiting unread), the connection failed, or the session is closing. Never blocks.

        For a plugin that holds a client's input back (chat's flood control): lines
        deferred for a client that has left need not be processed.
        """
        if self.end_reason is not None or self.outbox.closed:
            return True
        poller = select.poll()
        poller.register(self.sock, select.POLLRDHUP)
        try:
            events = poller.poll(0)
        except OSError:
            return True
        return any(mask & (select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL)
                   for _, mask in events)

    def read_line(self, timeout: float | None = None, on_bad_line: Any = None) -> str:
        """Wait for the client's next line (for dialogues in ``daemond_session_open``).

        Over-long and badly encoded lines are skipped and answered with the
        line protocol's ``-ERR line-too-long …`` or ``-ERR bad-encoding …``;
        a plugin that speaks another protocol passes ``on_bad_line(token, text)``
        to answer them itself (``token`` is ``line-too-long`` or ``bad-encoding``).
        ``timeout`` (seconds) bounds the wait; without it the listener's idle
        timeout applies. Raises :class:`SessionEnd` with reason ``eof`` or
        ``timeout``.
        """
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            event = self.next_event(deadline)
            if isinstance(event, str):
                return event
            if on_bad_line is None:
                self.report(event)
            else:
                on_bad_line(*_bad_line(event))

    def login(self, user: str) -> None:
        """Record that ``user`` has logged in and tell the plugins (``daemond_session_login``).

        Called by a login plugin (the built-in ``auth``) after it verified the user,
        on the session's thread; sets :attr:`user` first. If the client's address has the
        listener's ``max_logged_in_per_ip`` sessions logged in already, it sends
        ``-ERR too-many-connections`` (or what a plugin's ``daemond_farewell`` gives instead)
        and raises :class:`SessionEnd` instead (the login plugin takes the login back). If a
        plugin's ``daemond_session_login`` refuses the login, the :class:`SessionEnd` it raised
        comes out of this call.
        """
        why = self.host.session_logged_in(self)
        if why is not None:
            log.warning("login %s %s user=%s refused: %s", self.listener, self.peer_str, user, why)
            self.notice_end("too-many-connections", why, f"-ERR too-many-connections {why}")
            raise SessionEnd("too-many-connections")
        self.user = user
        self.chain.hook.daemond_session_login(session=self, user=user)
        log.info("login %s %s user=%s", self.listener, self.peer_str, user)  # after: a plugin may refuse it

    def notice_end(self, reason: str, text: str, line: str | None) -> None:
        """Tell the client why the daemon ends this session (the daemon's own, not for plugins):
        what a plugin's ``daemond_farewell`` gives, else ``line`` (None: nothing)."""
        data = farewell(self.chain, reason, text)
        if data is not None:
            self.write(data)
        elif line is not None:
            self.send_line(line)

    def close(self, reason: str = "kicked") -> None:
        """End the session from any thread; what is already queued is still sent.

        Returns at once; the session's thread ends it, and ``daemond_session_close``
        gets ``reason`` (the first reason given wins).
        """
        if self.end_reason is None:
            self.end_reason = reason
        self.outbox.interrupt()  # wakes the session's thread out of send()'s back-pressure wait
        try:
            self.sock.shutdown(socket.SHUT_RD)  # wakes the session's thread out of recv()
        except OSError:
            pass

    def abort(self, reason: str) -> None:
        """End the session at once, dropping anything queued (from any thread).

        ``daemond_session_close`` gets ``reason``.
        """
        if self.end_reason is None:
            self.end_reason = reason
        self.outbox.close()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- input, for read_line() and the serving loop ------------------------------------

    def _set_rcvtimeo(self, seconds: float) -> None:
        # A kernel receive timeout keeps the socket blocking (one syscall per
        # recv) where socket.settimeout() would add a poll() before each one.
        if seconds != self.rcvtimeo:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(seconds))
            self.rcvtimeo = seconds

    def next_event(self, deadline: float | None):
        """The next input event (a line, or a :class:`~daemon.lines.TooLong` or
        :class:`~daemon.lines.BadEncoding` to :meth:`report`), reading as needed until
        ``deadline`` (monotonic; None: the idle timeout). Raises SessionEnd at EOF or timeout."""
        if self.outbox.in_block:  # the client that asked for a long reply waits for it to drain
            self.settle()
        framer = self.framer
        while True:
            if self.end_reason is not None:  # closed (kicked, replaced…): lines still buffered are not served
                raise SessionEnd(self.end_reason)
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
                data = self.recv(RECV_SIZE)
            except BlockingIOError:
                raise SessionEnd("timeout") from None
            if not data:
                if framer.has_pending():  # a last line without its LF still counts
                    framer.feed(b"\n")
                    continue
                raise SessionEnd("eof")
            self.bytes_in += len(data)
            framer.feed(data)

    def _first_recv(self, size: int) -> bytes:
        """A plaintext connection's first read: a TLS ClientHello here is a client that
        expected TLS; later reads are the socket's own ``recv``."""
        self.recv = self.sock.recv
        data = self.sock.recv(size)
        if looks_like_client_hello(data):
            log.info("TLS handshake on a plaintext listener: %s %s; closing", self.listener, self.peer_str)
            raise SessionEnd("tls-on-plaintext")
        return data

    def report(self, event) -> None:
        """Answer an input event that is not a line with its ``-ERR``."""
        if isinstance(event, (TooLong, BadEncoding)):
            self.err(*_bad_line(event))

    def _overflowed(self) -> None:
        log.warning("send queue exceeded: %s %s user=%s has more than %d bytes unread; disconnecting",
                    self.listener, self.peer_str, self.user or "-", self.settings.send_queue)
        self.abort("overflow")


def farewell(chain: Any, reason: str, text: str) -> bytes | None:
    """What a listener's plugins send a client the daemon refuses or ends for ``reason``
    (``daemond_farewell``), or None: the line protocol's form. Never raises (a plugin that
    does is logged)."""
    try:
        return chain.hook.daemond_farewell(reason=reason, text=text)
    except Exception:
        log.exception("daemond_farewell raised; sending the line protocol's form instead")
        return None
