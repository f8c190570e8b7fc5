"""sd_notify client: tell systemd about readiness, reloads, shutdown and health.

Speaks the sd_notify(3) datagram protocol directly (stdlib only, no libsystemd):
one AF_UNIX SOCK_DGRAM socket is opened for the notifier's life and each
message is a single datagram of ``KEY=VALUE`` lines.

Everything here is a no-op when ``$NOTIFY_SOCKET`` is not set, so the daemon
can call it unconditionally whether or not it runs under systemd.

Environment read (from the mapping given, default ``os.environ``):

``NOTIFY_SOCKET``
    Path of the manager's socket; a leading ``@`` means an abstract socket.
``WATCHDOG_USEC``
    Watchdog interval in microseconds (``WatchdogSec=`` in the unit); we ping
    at half of it.
``WATCHDOG_PID``
    If set, only that process may ping; we ping only when it is ours.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


def _socket_address(value: str) -> str | bytes:
    """Turn $NOTIFY_SOCKET into an address for AF_UNIX ``sendto``."""
    if value.startswith("@"):
        # Abstract namespace: leading NUL, no trailing NUL.
        return b"\0" + value[1:].encode()
    return value


class Notifier:
    """sd_notify client. A no-op when $NOTIFY_SOCKET is absent."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        notify_socket = env.get("NOTIFY_SOCKET", "")
        # systemd only hands out absolute paths or abstract names; anything
        # else (e.g. a stray relative value) is ignored rather than guessed at.
        if notify_socket and not notify_socket.startswith(("/", "@")):
            log.debug("ignoring NOTIFY_SOCKET=%r: not a path or abstract name", notify_socket)
            notify_socket = ""
        self._address: str | bytes | None = (
            _socket_address(notify_socket) if notify_socket else None
        )
        self.enabled: bool = self._address is not None
        self._watchdog_interval = self._parse_watchdog(env)

        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._watchdog_thread: threading.Thread | None = None
        self._watchdog_stop = threading.Event()
        self._status_sent: str | None = None  # the last STATUS= line sent, to send a changed one only
        self._status_lock = threading.Lock()  # the watchdog's refresh and ready()/status() take turns

    # -- environment -------------------------------------------------------

    @staticmethod
    def _parse_watchdog(env: Mapping[str, str]) -> float | None:
        """Seconds between pings (half of WATCHDOG_USEC), or None if no watchdog for us."""
        raw = env.get("WATCHDOG_USEC", "")
        if not raw:
            return None
        try:
            usec = int(raw)
        except ValueError:
            log.debug("ignoring unparsable WATCHDOG_USEC=%r", raw)
            return None
        if usec <= 0:
            return None
        pid = env.get("WATCHDOG_PID", "")
        if pid:
            try:
                if int(pid) != os.getpid():
                    return None  # the watchdog belongs to another process
            except ValueError:
                log.debug("ignoring watchdog: unparsable WATCHDOG_PID=%r", pid)
                return None
        return usec / 2 / 1_000_000

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings, or None if the watchdog is not ours/not on."""
        return self._watchdog_interval if self.enabled else None

    # -- sending -----------------------------------------------------------

    def send(self, *lines: str) -> bool:
        """Send ``lines`` as one datagram ("A=1\\nB=2"). Never raises.

        Returns True when the datagram was handed to the kernel, False when
        disabled, given nothing, or on any error (logged at debug level).
        """
        if not self.enabled or not lines:
            return False
        payload = "\n".join(lines).encode("utf-8", "replace")
        try:
            with self._lock:
                if self._sock is None:
                    self._sock = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    )
                # never wait: a notify socket nobody reads must not stall a reload or the watchdog
                self._sock.sendto(payload, socket.MSG_DONTWAIT, self._address)
            return True
        except Exception as exc:  # noqa: BLE001 - notification must never break the daemon
            log.debug("sd_notify %r failed: %s", payload[:80], exc)
            return False

    def ready(self, status: str | None = None) -> bool:
        """READY=1 (with STATUS= if given): every listener is bound, or a reload is done."""
        if status is None:
            return self.send("READY=1")
        with self._status_lock:
            self._status_sent = _status_line(status)
            return self.send("READY=1", self._status_sent)

    def reloading(self) -> bool:
        """RELOADING=1 and MONOTONIC_USEC=<now> in one datagram; follow with ready()."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """STOPPING=1: shutdown has begun."""
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        """STATUS=<text>: the one-line status shown by ``systemctl status``."""
        with self._status_lock:
            self._status_sent = _status_line(text)
            return self.send(self._status_sent)

    # -- watchdog ----------------------------------------------------------

    def start_watchdog(self, is_healthy: Callable[[], bool], status: Callable[[], str] | None = None) -> None:
        """Ping WATCHDOG=1 every WATCHDOG_USEC/2 from thread "sd-watchdog".

        A ping is sent only when ``is_healthy()`` returns True; a False (or an
        exception from it) skips that ping so systemd's watchdog fires if the
        daemon stays unhealthy. With each ping, ``status()`` is asked for the
        STATUS= text, sent only when it differs from the last one sent (so
        ``systemctl status`` follows the connections). Does nothing when
        NOTIFY_SOCKET or WATCHDOG_USEC is absent, when WATCHDOG_PID names
        another process, or when the thread is already running.
        """
        interval = self.watchdog_interval
        if interval is None:
            return
        if self._watchdog_thread is not None and self._watchdog_thread.is_alive():
            return
        self._watchdog_stop.clear()
        thread = threading.Thread(
            target=self._watchdog_loop,
            args=(interval, is_healthy, status),
            name="sd-watchdog",
            daemon=True,
        )
        self._watchdog_thread = thread
        thread.start()

    def _watchdog_loop(self, interval: float, is_healthy: Callable[[], bool],
                       status: Callable[[], str] | None) -> None:
        stop = self._watchdog_stop
        while True:
            try:
                healthy = bool(is_healthy())
            except Exception:  # noqa: BLE001 - a broken probe means unhealthy
                log.debug("watchdog health check raised; skipping ping", exc_info=True)
                healthy = False
            if stop.is_set():
                return
            if healthy:
                self.send("WATCHDOG=1")
                self._refresh_status(status)
            else:
                log.debug("daemon unhealthy; skipping watchdog ping")
            if stop.wait(interval):
                return

    def _refresh_status(self, status: Callable[[], str] | None) -> None:
        if status is None:
            return
        with self._status_lock:  # read the daemon's state after any ready() in flight: never a stale line
            try:
                text = _status_line(status())
            except Exception:  # noqa: BLE001 - a broken status text must not stop the pings
                log.debug("status text for STATUS= raised; not sent", exc_info=True)
                return
            if text != self._status_sent:
                self._status_sent = text
                self.send(text)

    def stop_watchdog(self) -> None:
        """Stop the watchdog thread and wait for it; safe to call any time."""
        self._watchdog_stop.set()
        thread = self._watchdog_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._watchdog_thread = None

    # -- lifetime ----------------------------------------------------------

    def close(self) -> None:
        """Stop the watchdog and close the socket. Later sends reopen it."""
        self.stop_watchdog()
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _status_line(text: str) -> str:
    """STATUS=<text> on one line (a newline would start a new assignment)."""
    return "STATUS=" + " ".join(str(text).splitlines())
