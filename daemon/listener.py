"""A TCP listener: one socket, one thread accepting on it, one thread per connection.

Which thread serves a connection is the daemon's runtime policy's to decide
(:mod:`daemon.policy`); the listener hands each admitted session to it. The
listener is each of its sessions' host (:class:`~daemon.session.SessionHost`):
it counts them, per address, and their plugins' errors.

The listener enforces its connection limits before a thread exists: a
connection over ``max_connections`` (or over ``max_per_ip`` for its address)
is closed at once, with one ``-ERR`` line on line-based listeners (or what a
plugin's ``daemond_farewell`` says instead: IRC's ``ERROR``), and logged.
On login-gated listeners it also counts, per address, the connections not yet
logged in (``max_unauthenticated_per_ip``, at accept) and the sessions logged in
(``max_logged_in_per_ip``, checked when a session logs in).

Out of file descriptors, the accepting thread neither spins nor floods the
log: each waiting connection is refused with a spare descriptor
(:mod:`daemon.descriptors`), and with no spare it backs off; its log lines
are rate-limited per address (:func:`daemon.logs.limited`).

Pausing uses HAProxy's trick on Linux: ``shutdown()`` on the listening socket
makes new connection attempts fail at once (refused, not left in a backlog)
and wakes the accepting thread; ``listen()`` on the same socket resumes.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING

from daemon.addresses import format_address
from daemon.descriptors import EXHAUSTED, DescriptorReserve
from daemon.logs import limited
from daemon.serving import serve
from daemon.session import Session, farewell, timeval

if TYPE_CHECKING:  # pragma: no cover
    from daemon.loader import Chain
    from daemon.outbox import Flusher
    from daemon.policy import PlainThreads

log = logging.getLogger("daemond.listener")


OUT_OF_DESCRIPTORS = "daemon is out of file descriptors"


class BindError(Exception):
    """The listener's address could not be bound (in use, permission, bad host)."""


class Listener:
    #: Longest pause of the accepting thread when out of descriptors with none spare (it doubles up to this).
    MAX_BACKOFF = 1.0

    def __init__(self, config, chain: Chain, api, flusher: Flusher, policy: PlainThreads,
                 descriptors: DescriptorReserve | None = None):
        self.name = config.name
        self._descriptors = descriptors if descriptors is not None else DescriptorReserve(0)
        #: for new connections (a ListenerConfig); a reload may replace both, sessions keep what they started with
        self.config = config
        self.chain = chain
        self.api = api
        self.flusher = flusher
        self._policy = policy
        self._sock: socket.socket | None = None
        self.rcvtimeo = 0.0  # the idle timeout accepted sockets inherit
        #: the ssl.SSLContext new connections get (None: plaintext); a session keeps the one it began with
        self.tls_context = None
        #: the certificate new connections get (daemon.tls.certificate_facts), and the last failure to load a new one
        self.tls_certificate: dict | None = None
        self.tls_error: str | None = None
        self._tls_files: tuple | None = None  # the TLS settings the context was built from
        self._expiry_warned: float | None = None  # when (monotonic) the certificate's expiry was last warned of
        self.address: tuple[str, int] | None = None
        # _lock guards _sessions, _per_ip, _unauth_per_ip, _logged_in_per_ip, _paused, _stopping and the error counts;
        # _state (a Condition on it) wakes the accepting thread out of a pause, _emptied wakes
        # join_sessions() when the last session has ended.
        self._lock = threading.Lock()
        self._state = threading.Condition(self._lock)
        self._emptied = threading.Condition(self._lock)
        self._sessions: dict[int, Session] = {}
        self._per_ip: Counter[str] = Counter()
        self._unauth_per_ip: Counter[str] = Counter()  # sessions not yet logged in, on login-gated chains
        self._logged_in_per_ip: Counter[str] = Counter()  # sessions logged in
        self._paused = False
        self._stopping = False
        self.errors: Counter[str] = Counter()
        self.accepted = 0
        self.refused = 0
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------

    def bind(self) -> None:
        """Bind and listen now, so that failures surface before anything runs."""
        if self.load_tls(self.config) is not None:
            raise BindError(f"listener {self.name!r}: {self.tls_error}")
        self._sock = self._open(self.config)
        self.address = self._sock.getsockname()[:2]

    def _open(self, config) -> socket.socket:
        host, port = config.host, config.port
        try:
            infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise BindError(f"listener {self.name!r}: cannot resolve host {host!r}: {exc.strerror}") from None
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if config.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host in ("::", "") else 1)
            sock.bind(sockaddr)
            if port == 0:
                sock = _pin_port(sock, family, config.reuse_port)
            self._set_inherited_options(sock, config)
            sock.listen(config.backlog)
        except OSError as exc:
            sock.close()
            why = {errno.EADDRINUSE: "address already in use", errno.EACCES: "permission denied (ports below 1024 need privileges)",
                   errno.EADDRNOTAVAIL: "address not available on this machine"}.get(exc.errno, exc.strerror or str(exc))
            raise BindError(f"listener {self.name!r}: cannot listen on {format_address(host, port)}: {why}") from None
        return sock

    def _set_inherited_options(self, sock: socket.socket, config) -> None:
        """Options Linux copies from a listening socket to each accepted one."""
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1 if config.keepalive else 0)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(config.idle_timeout))
        self.rcvtimeo = config.idle_timeout

    def load_tls(self, config=None) -> str | None:
        """Build the TLS context for new connections from ``config`` (default: the current one)
        and its files as they are now. If the pair cannot be used, the context in use stays,
        and the reason is logged, kept in ``tls_error`` (status) and returned."""
        tls = (config or self.config).tls
        if tls is None:
            self.tls_context, self.tls_certificate, self.tls_error, self._tls_files = None, None, None, None
            return None
        from daemon.tls import TlsSetupError, build_context, certificate_facts, check_files
        try:
            for _, message in check_files(tls.cert, tls.key, tls.client_ca)[:1]:
                raise TlsSetupError("cert", message)
            context = build_context(tls.cert, tls.key, tls.min_version, tls.client_ca, tls.client_cert)
            facts = certificate_facts(tls.cert)
        except TlsSetupError as exc:
            kept = "; new connections keep the certificate loaded before" if self.tls_context is not None else ""
            self.tls_error = f"TLS certificate not loaded: {exc}{kept}"
            log.error("listener %s: %s", self.name, self.tls_error)
            return self.tls_error
        changed = self.tls_certificate is None or facts["sha256"] != self.tls_certificate["sha256"]
        self.tls_context, self.tls_certificate, self.tls_error, self._tls_files = context, facts, None, tls
        if changed:
            self._expiry_warned = None
            log.info("listener %s: TLS certificate %s (issuer %s, sha256 %s, until %s)", self.name,
                     facts["subject"], facts["issuer"], facts["sha256"], facts["not_after"])
        self.warn_if_expiring()
        return None

    #: from how many days before its notAfter a certificate is warned of, once a day
    EXPIRY_WARNING_DAYS = 14

    def warn_if_expiring(self, force: bool = False) -> None:
        """Log a warning if the certificate in use expires within EXPIRY_WARNING_DAYS; unless
        ``force``, at most once a day."""
        facts = self.tls_certificate
        if facts is None:
            return
        days = (facts["not_after_epoch"] - time.time()) / 86400
        if days > self.EXPIRY_WARNING_DAYS:
            return
        now = time.monotonic()
        if not force and self._expiry_warned is not None and now - self._expiry_warned < 86400:
            return
        self._expiry_warned = now
        log.warning("listener %s: the TLS certificate %s expires on %s (%s); renew it (the new files are "
                    "picked up by themselves)", self.name, facts["subject"], facts["not_after"],
                    f"in {days:.1f} days" if days >= 0 else "already expired")

    def update(self, config) -> None:
        """New settings for new connections (a reload); the address is changed with rebind()."""
        self.load_tls(config)
        if self._sock is not None and (config.keepalive, config.idle_timeout) != (self.config.keepalive, self.config.idle_timeout):
            self._set_inherited_options(self._sock, config)
        self.config = config

    def rebind(self, config) -> None:
        """Move to a new address (a reload): bind the new socket first, then retire the old one.

        Sessions carry on; if the new address cannot be bound, BindError is
        raised and nothing changes.
        """
        new_sock = self._open(config)
        self.load_tls(config)
        old_sock, old_thread = self._sock, self._thread
        old_sock.shutdown(socket.SHUT_RDWR)  # the accepting thread sees its socket replaced and exits
        with self._lock:
            self._sock = new_sock
            self.address = new_sock.getsockname()[:2]
            self.config = config
            self._state.notify_all()
        if old_thread is not None:
            old_thread.join(5)
        old_sock.close()
        if self._paused:
            new_sock.shutdown(socket.SHUT_RD)
        self.start()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._accept_loop, args=(self._sock,), name=f"listener-{self.name}", daemon=True)
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def use_chain(self, chain: Chain) -> None:
        """Serve new connections with ``chain`` (a reload); sessions keep the one they started with."""
        self.chain = chain
        self.policy_changed()

    def policy_changed(self) -> None:
        """Tell the policy again about the accepting thread (whether a login gates it may have changed)."""
        with self._lock:  # one caller at a time
            self._policy.listener_started(self._thread, self.chain.login_gated)

    def stop_accepting(self) -> None:
        """Close the listening socket and join the accepting thread; sessions carry on."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self._state.notify_all()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

    def pause(self) -> bool:
        """Refuse new connections at once; False if already paused."""
        with self._lock:
            if self._paused or self._stopping:
                return False
            self._paused = True
        try:
            self._sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass
        return True

    def resume(self) -> bool:
        """Accept again on the same address; False if not paused."""
        with self._lock:
            if not self._paused or self._stopping:
                return False
            self._sock.listen(self.config.backlog)
            self._paused = False
            self._state.notify_all()
        return True

    @property
    def paused(self) -> bool:
        return self._paused

    # -- sessions -------------------------------------------------------------

    def sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    def connection_count(self) -> int:
        return len(self._sessions)

    def session_ended(self, session: Session) -> None:
        with self._lock:
            if self._sessions.pop(session.id, None) is not None:
                if not self._sessions:
                    self._emptied.notify_all()
                host = session.peer[0]
                _decrement(self._per_ip, host)
                if session.counted_unauthenticated:
                    session.counted_unauthenticated = False
                    _decrement(self._unauth_per_ip, host)
                if session.counted_logged_in:
                    session.counted_logged_in = False
                    _decrement(self._logged_in_per_ip, host)

    def session_logged_in(self, session: Session) -> str | None:
        """A logged-in session counts against max_logged_in_per_ip, no longer against
        max_unauthenticated_per_ip (and the policy may serve it differently from now on).
        Over max_logged_in_per_ip, nothing changes and the reason is returned."""
        host, limit = session.peer[0], self.config.max_logged_in_per_ip
        with self._lock:
            if session.counted_logged_in:
                return None
            if limit is not None and self._logged_in_per_ip[host] >= limit:
                self.refused += 1
                return f"too many sessions logged in from {host} ({limit})"
            session.counted_logged_in = True
            self._logged_in_per_ip[host] += 1
            if session.counted_unauthenticated:
                session.counted_unauthenticated = False
                _decrement(self._unauth_per_ip, host)
        self._policy.logged_in(session.thread)
        return None

    def count_error(self, plugin: str | None) -> None:
        with self._lock:
            self.errors[plugin or "?"] += 1

    def join_sessions(self, deadline: float) -> list[Session]:
        """Wait for every session to end until ``deadline`` (monotonic); return those still running."""
        with self._lock:
            self._emptied.wait_for(lambda: not self._sessions, max(0.0, deadline - time.monotonic()))
            return list(self._sessions.values())

    # -- the accepting thread ---------------------------------------------------

    def _accept_loop(self, sock: socket.socket) -> None:
        self._policy.thread_started()
        self.policy_changed()
        backoff = 0.0
        while True:
            try:
                conn, addr = sock.accept()
            except OSError as exc:
                with self._lock:
                    if self._stopping or sock is not self._sock:
                        return
                    if self._paused:
                        self._state.wait_for(lambda: self._stopping or not self._paused or sock is not self._sock)
                        continue
                if exc.errno in EXHAUSTED:
                    backoff = self._out_of_descriptors(sock, exc, backoff)
                continue
            backoff = 0.0
            if self._descriptors.tight():  # the control socket has borrowed spares: keep them free
                with self._lock:
                    self.refused += 1
                self._refuse(conn, OUT_OF_DESCRIPTORS)
                self._log_refused(addr, OUT_OF_DESCRIPTORS)
                continue
            self._admit(conn, addr)

    def _out_of_descriptors(self, sock: socket.socket, exc: OSError, backoff: float) -> float:
        """accept() failed for want of descriptors: refuse the waiting connection with a spare,
        or wait for one to arrive; with no spare, wait a while (doubling). The next wait."""
        try:
            addr = self._descriptors.shed(sock, lambda conn: self._refuse(conn, OUT_OF_DESCRIPTORS))
        except OSError:
            backoff = min(self.MAX_BACKOFF, max(0.01, backoff * 2))
            log.error("listener %s: cannot accept: %s; retrying in %gs", self.name, exc.strerror, backoff,
                      extra=limited(f"on listener {self.name}", "failed accepts"))
            with self._lock:
                self._state.wait_for(lambda: self._stopping or sock is not self._sock, backoff)
            return backoff
        if addr is None:  # nobody waits: sleep until someone does (stop and pause wake it too)
            poller = select.poll()  # not epoll: poll needs no descriptor of its own
            poller.register(sock, select.POLLIN)
            poller.poll(self.MAX_BACKOFF * 1000)
            return backoff
        with self._lock:
            self.refused += 1
        self._log_refused(addr, OUT_OF_DESCRIPTORS)
        return 0.0

    def _log_refused(self, addr, why: str) -> None:
        log.warning("refused %s %s: %s", self.name, format_address(*addr[:2]), why,
                    extra=limited(f"from {addr[0]}", "refused connections"))

    def _admit(self, conn: socket.socket, addr) -> None:
        config = self.config
        host = addr[0]
        gated = self.chain.login_gated and config.max_unauthenticated_per_ip is not None
        with self._lock:
            why = None
            if len(self._sessions) >= config.max_connections:
                why = f"listener is full ({config.max_connections} connections)"
            elif config.max_per_ip is not None and self._per_ip[host] >= config.max_per_ip:
                why = f"too many connections from {host} ({config.max_per_ip})"
            elif gated and self._unauth_per_ip[host] >= config.max_unauthenticated_per_ip:
                why = f"too many connections not logged in from {host} ({config.max_unauthenticated_per_ip})"
            if why is None:
                session = Session(conn, addr, self)
                self._sessions[session.id] = session
                self._per_ip[host] += 1
                if gated:
                    session.counted_unauthenticated = True
                    self._unauth_per_ip[host] += 1
                self.accepted += 1
            else:
                self.refused += 1
        if why is not None:
            self._log_refused(addr, why)
            self._refuse(conn, why)
            return
        try:
            self._policy.serve(lambda: serve(session), f"conn-{self.name}-{session.peer_str}", self.chain.login_gated)
        except RuntimeError as exc:  # cannot start a new thread: out of memory or a thread limit
            log.error("listener %s: cannot start a thread for %s: %s", self.name, session.peer_str, exc)
            self.session_ended(session)
            conn.close()

    def _refuse(self, conn: socket.socket, why: str) -> None:
        data = farewell(self.chain, "too-many-connections", why)
        if data is None and (self.chain.line_mode or self.chain.login_gated):  # a login dialogue is in lines
            data = f"-ERR too-many-connections {why}\n".encode()
        if data:
            try:
                conn.send(data, socket.MSG_DONTWAIT)
            except OSError:
                pass
        conn.close()


def _pin_port(sock: socket.socket, family: int, reuse_port: bool = False) -> socket.socket:
    """A socket bound by number to the port the kernel just picked for ``sock`` (which is closed).

    Linux releases an ephemeral port when a listening socket is shut down (pause), so
    listen() again (resume) would pick another one; a port bound by number is kept.
    Both sockets are bound at once (SO_REUSEADDR, neither listening): the port is never free.
    """
    pinned = socket.socket(family, socket.SOCK_STREAM)
    try:
        pinned.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            pinned.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            v6only = sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
            pinned.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        pinned.bind(sock.getsockname())
    except OSError:
        pinned.close()
        raise
    finally:
        sock.close()
    return pinned


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]

