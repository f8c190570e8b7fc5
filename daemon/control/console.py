"""daemond's main thread while the daemon runs: signals, reloads, and the console.

SIGTERM and SIGINT ask for a graceful stop, SIGHUP for a reload. The signal
handlers only set flags (or interrupt the console's read); the main thread
does the work, so a handler never runs a reload or takes a lock in the middle
of whatever the main thread was doing.

With a console — stdin is a terminal in the foreground, or ``--console`` —
the main thread reads commands at a ``daemond>`` prompt, with line editing,
history and tab completion (readline), and runs them through the same
command registry as the control socket. Ctrl-C at the prompt stops the daemon
(as SIGINT does); during a command (``logs -f``) it ends the command. Ctrl-D
leaves the console; the daemon runs on until stopped.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from daemon.commands import ArgumentNeeded, CommandError, ConfirmationNeeded, UsageError
from daemon.control.secret_input import SecretsDiffer, ask_secret

if TYPE_CHECKING:  # pragma: no cover
    from daemon.server import Daemon

log = logging.getLogger("daemond")

PROMPT = "daemond> "
#: Seconds between checks for a stop or reload request while there is no console.
POLL = 0.2
#: Lines of console history kept in the state directory.
HISTORY_LENGTH = 1000
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


class _Interrupted(Exception):
    """Raised by a signal handler out of the console's read: check for stop and reload."""


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

    def __init__(self, daemon: Daemon, console: bool, stdout=None):
        self.daemon = daemon
        self.console = console
        self.out = stdout or sys.stdout
        self._reload_requested = False
        self._stop_signal: str | None = None
        self._reading = False  # inside the console's input(): a signal may interrupt it
        self._running = False  # a console command runs: Ctrl-C ends it instead of stopping the daemon
        self._saved: dict[int, Any] = {}
        self._readline = None

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
        self._stop_signal = "SIGINT" if signum == signal.SIGINT else "SIGTERM"

    def _on_reload_signal(self, signum, frame) -> None:
        self._reload_requested = True

    def _on_tick(self, signum, frame) -> None:
        if self._reading and (self._stop_signal or self._reload_requested or self.daemon.stop_requested):
            raise _Interrupted

    # -- the main loop -------------------------------------------------------------------

    def run(self) -> None:
        """Return once a stop is requested (the caller then stops the daemon)."""
        if self.console:
            self._console_loop()
        while not self._stop_due():
            time.sleep(POLL)

    def _stop_due(self) -> bool:
        """Handle what the signal handlers flagged; True once the daemon should stop."""
        if self._stop_signal:
            log.info("%s received: stopping", self._stop_signal)
            self._stop_signal = None
            self.daemon.request_stop()
        if self._reload_requested and not self.daemon.stop_requested:
            self._reload_requested = False
            self._reload()
        return self.daemon.stop_requested

    def _reload(self) -> None:
        log.info("SIGHUP received: reloading")
        self.daemon.request_reload()  # on the reload thread; it logs the outcome

    # -- the console ---------------------------------------------------------------------

    def _console_loop(self) -> None:
        self._setup_readline()
        self._print("daemond console: `help` lists the commands; `stop` or Ctrl-C stops the daemon; "
                    "Ctrl-D leaves the console")
        try:
            while not self._stop_due():
                try:
                    line = self._read(PROMPT)
                except _Interrupted:
                    self._print("")
                    continue
                except KeyboardInterrupt:  # a SIGINT as a command ended: treat it as at the prompt
                    self._stop_signal = "SIGINT"
                    continue
                except EOFError:
                    self._print("\nconsole closed; daemond runs on (stop it with daemonctl stop or SIGTERM)")
                    return
                try:
                    self.execute(line)
                except KeyboardInterrupt:
                    self._print("")
        finally:
            self._save_history()

    def _read(self, prompt: str) -> str:
        self._reading = True
        signal.setitimer(signal.ITIMER_REAL, TICK, TICK)
        try:
            if self._stop_signal or self._reload_requested or self.daemon.stop_requested:
                raise _Interrupted  # the signal came just before we started reading
            self._show_prompt_after_logs(prompt)
            return input(prompt)
        finally:
            self._show_prompt_after_logs(None)
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._reading = False

    def _show_prompt_after_logs(self, prompt: str | None) -> None:
        """While reading, log lines on stderr redraw the prompt and the half-typed line."""
        handler = self.daemon.logs.stderr_handler
        if handler is None:
            return
        if prompt is None:
            handler.prompt = None
            return
        readline, daemon = self._readline, self.daemon

        def redraw() -> str:
            if daemon.stop_requested:  # stopped from elsewhere (daemonctl): the prompt is not coming back
                return ""
            return prompt + (readline.get_line_buffer() if readline is not None else "")

        handler.prompt = redraw

    def execute(self, line: str) -> None:
        """Run one console line through the command registry and print the outcome."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self._print(f"error: {exc}")
            return
        if not words:
            return
        name, argv = words[0], words[1:]
        yes = "--yes" in argv[: argv.index("--") if "--" in argv else len(argv)]
        if yes:
            argv.remove("--yes")
        asked: dict[str, str] = {}  # arguments the command asked for (a password)
        while True:
            try:
                self._run(name, argv, asked, yes)
                return
            except ArgumentNeeded as exc:
                try:
                    given = exc.argument not in asked and self._ask_argument(name, exc, asked)
                except CommandError as differ:
                    self._print(f"error: {differ}")
                    return
                if not given:
                    self._print(f"usage error: {exc}")
                    return
            except UsageError as exc:
                self._print(f"usage error: {exc}")
                return
            except CommandError as exc:
                self._print(f"error: {exc}")
                return
            except Exception as exc:
                log.exception("console command %s failed", name)
                self._print(f"error: {name} failed: {exc.__class__.__name__}: {exc}")
                return

    def _run(self, name: str, argv: list[str], asked: dict[str, str], yes: bool) -> None:
        registry = self.daemon.commands
        try:
            call = registry.prepare(name, argv=argv, args=asked, confirmed=yes)
        except ConfirmationNeeded as exc:
            if not self._confirm(str(exc)):
                self._print(f"{name}: not confirmed; nothing done")
                return
            call = registry.prepare(name, argv=argv, args=asked, confirmed=True)
        self._running = True
        try:
            result = call.run()
            if isinstance(result, Iterator):
                self._stream(result)
            else:
                text = call.text(result)
                if text:
                    self._print(text)
        finally:
            self._running = False

    def _ask_argument(self, name: str, exc: ArgumentNeeded, asked: dict[str, str]) -> bool:
        """Ask for what the command needs (a secret without echo; a new one twice, raising
        CommandError if the two differ); False if nothing was given."""
        argument = self.daemon.commands.get(name).argument(exc.argument)
        try:
            if argument is not None and argument.secret:
                value = ask_secret(f"{exc.prompt}: ", exc.confirm)  # not echoed, not in the history
            else:
                value = self._read(f"{exc.prompt}: ")
        except SecretsDiffer:
            raise CommandError(f"the {exc.argument}s you typed differ; nothing done") from None
        except (_Interrupted, EOFError, KeyboardInterrupt):
            self._print("")
            return False
        if not value:
            return False
        asked[exc.argument] = value
        return True

    def _stream(self, items: Iterator) -> None:
        try:
            for item in items:
                if self.daemon.stop_requested:
                    break
                if item is not None:
                    self._print(item)
        except KeyboardInterrupt:
            self._print("")  # the terminal has echoed ^C
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def _confirm(self, question: str) -> bool:
        try:
            answer = self._read(f"{question} [y/N] ")
        except (_Interrupted, EOFError, KeyboardInterrupt):
            self._print("")
            return False
        return answer.strip().lower() in ("y", "yes")

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # -- readline: history and completion -------------------------------------------------

    def _history_file(self) -> str:
        return str(self.daemon.config.state_dir / "console_history")

    def _setup_readline(self) -> None:
        try:
            import readline
        except ImportError:  # pragma: no cover - Python built without readline
            return
        self._readline = readline
        readline.set_completer(self._complete)
        readline.set_completer_delims(" \t")
        if "libedit" in (readline.__doc__ or ""):  # pragma: no cover - macOS
            readline.parse_and_bind("bind ^I rl_complete")
        else:
            readline.parse_and_bind("tab: complete")
        readline.set_history_length(HISTORY_LENGTH)
        try:
            readline.read_history_file(self._history_file())
        except OSError:
            pass

    def _save_history(self) -> None:
        if self._readline is None:
            return
        path = self._history_file()
        old = os.umask(0o077)
        try:
            self._readline.write_history_file(path)
        except OSError as exc:
            log.warning("cannot save console history to %s: %s", path, exc.strerror or exc)
        finally:
            os.umask(old)

    def _complete(self, text: str, state: int) -> str | None:
        readline = self._readline
        before = readline.get_line_buffer()[: readline.get_begidx()].split()
        registry = self.daemon.commands
        if not before:
            options = [c.name + " " for c in registry if c.name.startswith(text)]
        else:
            try:
                command = registry.get(before[0])
            except UsageError:
                return None
            spellings = [s for a in command.args for s in a.spellings]
            if command.confirm:
                spellings.append("--yes")
            options = [s + " " for s in spellings if s.startswith(text)]
        return options[state] if state < len(options) else None
