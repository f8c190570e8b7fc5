"""TLS for a listener: its context, its certificate's checks and facts, and one connection's
encryption.

A TLS connection is an :class:`ssl.SSLObject` over two memory BIOs, never an
``SSLSocket``: the session's own thread reads ciphertext from the socket and
decrypts it (:meth:`TlsConnection.recv`), and any thread that writes encrypts
and hands the ciphertext to the session's ordinary outbox
(:class:`SealingOutbox`), which sends it without blocking like any other bytes.
One short lock per connection (``TlsConnection.lock``) keeps two threads from
ever being inside the ``SSLObject`` at once and keeps records in the order they
were sealed; nobody holds it while waiting on the network, so a slow TLS reader
never blocks a broadcaster and the send-queue bound cuts it as it would a
plaintext one.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from daemon.outbox import Flusher, Outbox

VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
CLIENT_CERT_MODES = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


class TlsSetupError(Exception):
    """A certificate/key pair (or client CA) that cannot be used; ``which`` names the key at fault."""

    def __init__(self, which: str, message: str):
        super().__init__(message)
        self.which = which


# -- the listener's side: checking a pair and building a context ----------------------------

def check_files(cert: str, key: str, client_ca: str | None = None) -> list[tuple[str, str]]:
    """Problems with the files a listener's ``tls:`` names, as ``[(key, message)]``: missing or
    unreadable files, a private key others may read, an expired certificate, a key that does not
    match the certificate. Empty when :func:`build_context` will succeed."""
    problems: list[tuple[str, str]] = []
    for which, path in (("cert", cert), ("key", key), ("client_ca", client_ca)):
        if path is None:
            continue
        try:
            st = os.stat(path)
            with open(path, "rb"):
                pass
        except FileNotFoundError:
            problems.append((which, f"{path}: no such file"))
            continue
        except OSError as exc:
            problems.append((which, f"{path}: cannot read: {exc.strerror or exc}"))
            continue
        if which == "key" and st.st_mode & 0o007:
            problems.append((which, f"{path}: the private key may be read by others (mode {st.st_mode & 0o777:o}); "
                                    f"chmod o-rwx it"))
    if problems:
        return problems
    try:
        facts = certificate_facts(cert)
    except TlsSetupError as exc:
        return [(exc.which, str(exc))]
    if facts["days_left"] < 0:
        problems.append(("cert", f"{cert}: the certificate expired on {facts['not_after']}"))
    try:
        build_context(cert, key, "TLSv1.2", client_ca, "none")
    except TlsSetupError as exc:
        problems.append((exc.which, str(exc)))
    return problems


def build_context(cert: str, key: str, min_version: str = "TLSv1.2", client_ca: str | None = None,
                  client_cert: str = "none") -> ssl.SSLContext:
    """A server context for new connections; raises :class:`TlsSetupError` with a one-line reason."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = VERSIONS[min_version]
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in str(exc) or reason == "KEY_VALUES_MISMATCH":
            raise TlsSetupError("key", f"{key}: this private key does not match the certificate {cert}") from None
        raise TlsSetupError("cert", f"{cert} / {key}: not a usable PEM certificate and key ({reason})") from None
    except OSError as exc:
        raise TlsSetupError("cert", f"{cert} / {key}: cannot read: {exc.strerror or exc}") from None
    if client_ca:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (ssl.SSLError, OSError) as exc:
            raise TlsSetupError("client_ca", f"{client_ca}: not a usable CA bundle ({getattr(exc, 'reason', None) or exc})") from None
    context.verify_mode = CLIENT_CERT_MODES[client_cert]
    return context


def certificate_facts(cert: str) -> dict[str, Any]:
    """The first certificate of a PEM file: subject, issuer, SHA-256 fingerprint, notAfter, days left."""
    try:
        with open(cert, encoding="ascii", errors="replace") as f:
            pem = f.read()
        begin = pem.index("-----BEGIN CERTIFICATE-----")
        end = pem.index("-----END CERTIFICATE-----", begin) + len("-----END CERTIFICATE-----")
        der = ssl.PEM_cert_to_DER_cert(pem[begin:end])
        decoded = ssl._ssl._test_decode_cert(cert)  # the stdlib's own decoder (no extra dependency)
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise TlsSetupError("cert", f"{cert}: not a PEM certificate ({exc})") from None
    not_after = _dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(decoded["notAfter"]), _dt.timezone.utc)
    days_left = (not_after - _dt.datetime.now(_dt.timezone.utc)).total_seconds() / 86400
    return {
        "subject": _name(decoded.get("subject", ())),
        "issuer": _name(decoded.get("issuer", ())),
        "sha256": ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest()),
        "not_after": not_after.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "not_after_epoch": not_after.timestamp(),
        "days_left": int(days_left // 1),
    }


def _name(rdns) -> str:
    return ", ".join(f"{k}={v}" for rdn in rdns for k, v in rdn)


def subject_cn(peer_cert: dict | None) -> str | None:
    """The commonName of a verified peer certificate (as ``SSLObject.getpeercert()`` returns it)."""
    for rdn in (peer_cert or {}).get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


def looks_like_client_hello(data: bytes) -> bool:
    """Whether ``data`` starts a TLS handshake record carrying a ClientHello."""
    return len(data) >= 6 and data[0] == 0x16 and data[1] == 0x03 and data[2] <= 0x04 and data[5] == 0x01


# -- one connection ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TlsInfo:
    """What a session knows of its TLS connection (``Session.tls``)."""

    version: str
    cipher: str
    #: the client's verified certificate (``ssl.SSLObject.getpeercert()``'s dict), or None
    peer_cert: dict | None = field(default=None, compare=False)

    @property
    def peer_cn(self) -> str | None:
        """The commonName of the client's verified certificate, or None."""
        return subject_cn(self.peer_cert)


class HandshakeFailed(Exception):
    """The TLS handshake did not complete; the message is the one log line."""


class TlsConnection:
    """One connection's TLS state: an SSLObject over memory BIOs, guarded by ``lock``."""

    def __init__(self, context: ssl.SSLContext, sock):
        self._sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        # lock guards obj and both BIOs: one thread inside the TLS state at a time, and
        # records reach the outbox in the order they were sealed.
        self.lock = threading.Lock()
        self.outbox: SealingOutbox | None = None  # set by the SealingOutbox it belongs to
        self._filled = False  # the last read filled its size: the SSLObject may hold more plaintext

    def handshake(self, recv_timed: Callable[[], bytes]) -> TlsInfo:
        """Complete the handshake, reading with ``recv_timed`` (raises BlockingIOError at the
        deadline); raises :class:`HandshakeFailed` with the reason."""
        first = True
        while True:
            with self.lock:
                try:
                    self.obj.do_handshake()
                    done = True
                except ssl.SSLWantReadError:
                    done = False
                except ssl.SSLError as exc:
                    self._push_locked()  # the alert, if any
                    raise HandshakeFailed(f"TLS handshake failed: {exc.reason or exc}") from None
                self._push_locked()
            if done:
                return TlsInfo(self.obj.version() or "?", (self.obj.cipher() or ("?",))[0], self.obj.getpeercert() or None)
            try:
                data = recv_timed()
            except BlockingIOError:
                raise HandshakeFailed("TLS handshake timed out") from None
            if not data:
                raise HandshakeFailed("closed during the TLS handshake")
            if first and data[0] != 0x16:
                raise HandshakeFailed("not TLS (plaintext bytes on a TLS listener)")
            first = False
            with self.lock:
                self.incoming.write(data)

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes of plaintext; b"" at the end (close_notify or TCP FIN). The session's thread only."""
        # The SSLObject is asked only when it may have something: each of its calls (pending()
        # too) lets go of the GIL, which costs a thread switch when other sessions wait for it.
        # It holds plaintext back only when the last read filled ``size`` (OpenSSL's SSL_read
        # returns what one record has buffered, never waiting for the next one).
        sock_recv = self._sock.recv
        incoming, obj = self.incoming, self.obj
        cipher = None
        while True:
            with self.lock:
                if cipher is not None:
                    incoming.write(cipher)
                if incoming.pending or self._filled:
                    try:
                        data = obj.read(size)
                    except ssl.SSLWantReadError:
                        data = None  # a record not complete yet
                    except ssl.SSLZeroReturnError:
                        return b""
                    except ssl.SSLError as exc:
                        raise ConnectionResetError(f"TLS error: {exc.reason or exc}") from None
                    if self.outgoing.pending:  # a key update or a session ticket to answer
                        self._push_locked()
                    self._filled = data is not None and len(data) == size
                    if data is not None:
                        return data  # b"": the peer's close_notify (SSLObject.read returns it rather than raise)
            cipher = sock_recv(65536)
            if not cipher:
                return b""

    def close_notify(self) -> None:
        """Queue our close_notify (the session is ending); the TCP FIN follows it."""
        with self.lock:
            try:
                self.obj.unwrap()
            except ssl.SSLError:
                pass  # the peer's close_notify is not awaited
            self._push_locked()

    def _push_locked(self) -> None:
        if self.outgoing.pending and self.outbox is not None:
            self.outbox.write_sealed(self.outgoing.read())


class SealingOutbox(Outbox):
    """An :class:`~daemon.outbox.Outbox` that encrypts what it is given (a TLS session's)."""

    def __init__(self, tls: TlsConnection, sock, flusher: Flusher, limit: int,
                 on_overflow: Callable[[], None] | None = None):
        super().__init__(sock, flusher, limit, on_overflow)
        self._tls = tls
        tls.outbox = self

    def write(self, data: bytes, block: bool = False) -> bool:
        # every write (write() and write_block() alike) is sealed under the connection's lock,
        # so records reach the queue in the order they were made
        tls = self._tls
        with tls.lock:
            if self.closed:
                return False
            try:
                tls.obj.write(data)
            except ssl.SSLError:
                return False  # before the handshake, or after close_notify
            return Outbox.write(self, tls.outgoing.read(), block)

    def write_sealed(self, records: bytes) -> bool:
        """Queue bytes that are TLS records already (the handshake's, close_notify); with the lock held."""
        return Outbox.write(self, records)
