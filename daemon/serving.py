"""Serving one session on its thread: ``setup → handle → finish``, the hooks in order.

The shape of ``socketserver.BaseRequestHandler``: :func:`serve` calls
``daemond_session_open`` for the listener's plugins in order, then frames
input into lines (``daemond_line_received``) or passes raw bytes on
(``daemond_data_received``), and always ends, in a ``finally``, with every
``daemond_session_close``, the last queued bytes sent, the socket closed, the
host told and one log line (connect and disconnect lines are rate-limited per address). An exception from a plugin ends only this session.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from daemon.lines import shown, split_command
from daemon.logs import limited
from daemon.session import RECV_SIZE, Session, SessionEnd
from daemon.tls import HandshakeFailed

log = logging.getLogger("daemond.session")

#: ends a client can make repeat at will: their disconnect lines are rate-limited with the connects
_ROUTINE_ENDS = frozenset({"eof", "quit", "reset", "timeout", "shutdown"})


def serve(session: Session) -> None:
    """Serve ``session`` to its end, on the calling thread."""
    session.thread = threading.current_thread()
    if session.tls_connection is not None and not _handshake(session):
        return
    reason = "eof"
    try:
        if session.tls is None:
            log.info("connect %s %s", session.listener, session.peer_str,
                     extra=limited(f"from {session.peer[0]}", "connections"))
        else:
            log.info("connect %s %s %s %s", session.listener, session.peer_str, session.tls.version, session.tls.cipher,
                     extra=limited(f"from {session.peer[0]}", "connections"))
        session.chain.hook.daemond_session_open(session=session)
        if session.chain.line_mode:
            _serve_lines(session)
        else:
            _serve_bytes(session)
    except SessionEnd as end:
        reason = end.reason
    except BlockingIOError:  # SO_RCVTIMEO expired
        reason = "timeout"
    except (ConnectionError, OSError) as exc:
        reason = "reset" if session.end_reason is None else session.end_reason
        log.debug("session %s %s: %s", session.listener, session.peer_str, exc,
                  extra=limited(f"from {session.peer[0]}"))
    except Exception as exc:
        reason = "error"
        plugin = session.chain.blame(exc)
        session.host.count_error(plugin)
        log.error("plugin %s raised in listener %s (%s); closing this connection",
                  plugin or "?", session.listener, session.peer_str, exc_info=True)
    finally:
        _finish(session, session.end_reason or reason)


def _serve_bytes(session: Session) -> None:
    on_data = session.chain.on_data
    rest = session.framer.take_rest()
    if rest:
        session.bytes_in += len(rest)
        on_data(session, rest)
    size = session.recv_size
    data = session.recv(size)  # a plaintext session's first read looks for a TLS ClientHello
    if not data:
        return
    recv = session.recv  # from now on the socket's own recv (plaintext) or TLS's
    while True:
        received = len(data)
        session.bytes_in += received
        if received == size:  # small reads until one fills the buffer (idle connections stay small)
            size = session.recv_size = RECV_SIZE
        on_data(session, data)
        data = recv(size)
        if not data:
            return


def _serve_lines(session: Session) -> None:
    on_line = session.chain.on_line
    while True:
        event = session.next_event(None)
        if isinstance(event, str):
            if on_line(session=session, line=event) is None:
                _unhandled(session, event)
        else:
            session.report(event)


def _unhandled(session: Session, line: str) -> None:
    """A line no plugin took: the core's own ``/help`` and ``/quit``, else ``unknown-command``."""
    command = split_command(line)
    if command is None:
        session.err("unknown-command", "nothing on this listener handles plain text")
        return
    name, _ = command
    if name == "/quit":
        session.ok("bye")
        raise SessionEnd("quit")
    if name == "/help":
        entries = [("/help", "list commands"), ("/quit", "close the connection")]
        for result in session.chain.hook.daemond_line_commands(session=session):
            entries.extend(result or [])
        seen = set()
        for usage, text in entries:
            if usage not in seen:
                seen.add(usage)
                session.send_line(f"HELP {usage} - {text}")
        session.ok(f"{len(seen)} commands")
        return
    session.err("unknown-command", f"{shown(name)} (try /help)")  # never an escape back to a terminal


def _handshake(session: Session) -> bool:
    """The TLS handshake, on the session's thread, within the listener's handshake_timeout.
    False: it failed; the connection is closed with one log line and no hook ever saw it."""
    deadline = time.monotonic() + session.settings.tls.handshake_timeout
    sock = session.sock

    def recv_before_deadline() -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BlockingIOError
        session._set_rcvtimeo(left)
        return sock.recv(RECV_SIZE)

    try:
        session.tls = session.tls_connection.handshake(recv_before_deadline)
        session._set_rcvtimeo(session.host.rcvtimeo)  # back to what plaintext sockets inherit
        return True
    except HandshakeFailed as exc:
        why = str(exc)
    except OSError as exc:
        why = f"connection lost during the TLS handshake ({exc.strerror or exc})"
    log.info("%s %s: %s; closed", session.listener, session.peer_str, why)
    session.outbox.close()
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
    session.host.session_ended(session)
    session.thread = None
    return False


def _finish(session: Session, reason: str) -> None:
    try:
        _call_close_hooks(session, reason)
        if session.tls_connection is not None and reason not in ("overflow", "reset", "error"):
            session.tls_connection.close_notify()
        if reason not in ("overflow", "reset", "error") and session.outbox.queued:
            _drain(session, 1.0 if reason == "shutdown" else 5.0)
    finally:
        session.outbox.close()
        try:
            session.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        session.sock.close()
        session.host.session_ended(session)
        log.info("disconnect %s %s user=%s reason=%s in=%d out=%d duration=%.3fs",
                 session.listener, session.peer_str, session.user or "-", reason, session.bytes_in,
                 session.outbox.bytes_sent, time.monotonic() - session.started,
                 # counted with its connect; an unusual end (overflow, error, kicked …) is always said
                 extra=limited(f"from {session.peer[0]}") if reason in _ROUTINE_ENDS else None)
        session.thread = None  # it may serve another connection now


def _drain(session: Session, stall: float) -> None:
    """Let the flusher send what is queued while the client keeps reading."""
    outbox = session.outbox
    last = outbox.queued
    while last and not outbox.wait_empty(stall):
        now = outbox.queued
        if outbox.closed or now >= last:
            return
        last = now


def _call_close_hooks(session: Session, reason: str) -> None:
    # Every implementation is called even if one raises (pluggy would stop at the first).
    for impl in reversed(session.chain.hook.daemond_session_close.get_hookimpls()):
        kwargs = {"session": session, "reason": reason}
        try:
            impl.function(*[kwargs[a] for a in impl.argnames])
        except Exception:
            session.host.count_error(impl.plugin_name)
            log.error("plugin %s raised in daemond_session_close (%s %s)",
                      impl.plugin_name, session.listener, session.peer_str, exc_info=True)
