"""daemond's main thread while the daemon runs: signals, reloads, and (if wanted) the console.

SIGTERM and SIGINT ask for a graceful stop, SIGHUP for a reload. The signal
handlers only set flags (or interrupt the console's read); the main thread
does the work, so a handler never runs a reload or takes a lock in the middle
of whatever the main thread was doing.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from daemon.control.console import Console, Interrupted, LineCleared
from daemon.control.facade import DaemonControl

log = logging.getLogger("daemond")

#: Seconds between checks for a stop or reload request while there is no console.
POLL = 0.2
#: Seconds between the console's ticks (SIGALRM) while it waits for a line: readline blocks
#: in C, and a tick brings it back to Python to run a signal handler that came at a bad
#: moment, or to notice a stop requested by another thread (`daemonctl stop`).
TICK = 0.2
#: The signals the main thread handles; every other thread blocks them (see block_signals).
SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM}


def block_signals() -> None:
    """Block SIGNALS in the calling (main) thread; threads it starts from now on inherit the mask.

    The kernel delivers a process signal to any thread that does not block it; the
    console's read wakes up only for a signal delivered to the main thread. Call
    before the daemon starts its threads; Foreground unblocks the main thread.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)


def want_console(flag: bool | None, stdin=None) -> bool:
    """``--console``/``--no-console``, else: stdin is a terminal and we are its foreground job."""
    if flag is not None:
        return flag
    stdin = stdin or sys.stdin
    try:
        fd = stdin.fileno()
        return os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


class Foreground:
    """Run the main thread until a stop is requested. Use as a context manager:
    the signal handlers are installed on enter and restored on exit."""

    def __init__(self, daemon: DaemonControl, console: bool, stdout=None):
        self.daemon = daemon
        self.console = console
        self.out = stdout or sys.stdout
        self._reload_requested = False
        self._stop_signal: str | None = None
        self._reading = False  # inside the console's input(): a signal may interrupt it
        self._running = False  # a console command runs: Ctrl-C ends it instead of stopping the daemon
        self._saved: dict[int, Any] = {}
        self._console: Console | None = None
        self._clear_line = False  # a Ctrl-C came on a half-typed line: the tick drops it

    def __enter__(self) -> Foreground:
        for signum, handler in ((signal.SIGTERM, self._on_stop_signal), (signal.SIGINT, self._on_stop_signal),
                                (signal.SIGHUP, self._on_reload_signal), (signal.SIGALRM, self._on_tick)):
            self._saved[signum] = signal.signal(signum, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)  # handlers are in place: deliver what is pending
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)

    # -- signal handlers: flags only ---------------------------------------------------

    # A handler may run nested in another (at any bytecode of it), so only the tick raises
    # out of the console's read; the others just set flags for the main loop.

    def _on_stop_signal(self, signum, frame) -> None:
        if signum == signal.SIGINT and self._running:
            raise KeyboardInterrupt  # ends the console's command, not the daemon (no tick runs then)
        if signum == signal.SIGINT and self._reading and self._console is not None and self._console.half_typed():
            self._clear_line = True  # as in a shell: Ctrl-C drops the half-typed line; on an empty one it stops
            return
        self._stop_signal = "SIGINT" if signum == signal.SIGINT else "SIGTERM"

    def _on_reload_signal(self, signum, frame) -> None:
        self._reload_requested = True

    def _on_tick(self, signum, frame) -> None:
        if self._reading and self._clear_line:
            self._clear_line = False
            raise LineCleared
        if self._reading and self._pending():
            raise Interrupted

    # -- the main loop -------------------------------------------------------------------

    def run(self) -> None:
        """Return once a stop is requested (the caller then stops the daemon)."""
        if self.console:
            self._console = Console(self.daemon, self, self.out)
            self._console.run()
        while not self.stop_due():
            time.sleep(POLL)

    def _pending(self) -> bool:
        return bool(self._stop_signal or self._reload_requested or self.daemon.stop_requested)

    def stop_due(self) -> bool:
        """Handle what the signal handlers flagged; True once the daemon should stop."""
        if self._stop_signal:
            log.info("%s received: stopping", self._stop_signal)
            self._stop_signal = None
            self.daemon.request_stop()
        if self._reload_requested and not self.daemon.stop_requested:
            self._reload_requested = False
            log.info("SIGHUP received: reloading")
            self.daemon.request_reload()  # on the reload thread; it logs the outcome
        return self.daemon.stop_requested

    # -- what the console marks ----------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Around the console's read: a stop or reload flagged meanwhile raises Interrupted out of it."""
        self._reading = True
        self._clear_line = False
        signal.setitimer(signal.ITIMER_REAL, TICK, TICK)
        try:
            if self._pending():
                raise Interrupted  # the signal came just before we started reading
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._reading = False

    @contextmanager
    def running(self) -> Iterator[None]:
        """Around a console command: Ctrl-C raises KeyboardInterrupt in it instead of stopping the daemon."""
        self._running = True
        try:
            yield
        finally:
            self._running = False

    def interrupt(self) -> None:
        """A Ctrl-C that reached the console's prompt: stop, as SIGINT does."""
        self._stop_signal = "SIGINT"
