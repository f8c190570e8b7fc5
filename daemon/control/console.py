"""The console: a ``daemond>`` prompt on the daemon's terminal.

With a console — stdin is a terminal in the foreground, or ``--console`` —
the main thread reads commands at a ``daemond>`` prompt, with line editing,
history and tab completion (readline), and runs them through the same
command registry as the control socket. Ctrl-C at an empty prompt stops the
daemon (as SIGINT does); on a half-typed line it drops the line, as a shell
does; during a command (``logs -f``) it ends the command. Ctrl-D
leaves the console; the daemon runs on until stopped.

The console knows nothing of signals: the main loop
(:class:`~daemon.control.foreground.Foreground`) owns them, and the console
only marks, through :class:`MainLoop`, when it waits for input and when a
command runs.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

from daemon.commands import ArgumentNeeded, CommandError, ConfirmationNeeded, UsageError
from daemon.control.secret_input import SecretsDiffer, ask_secret

if TYPE_CHECKING:  # pragma: no cover
    from daemon.control.facade import DaemonControl

log = logging.getLogger("daemond")

PROMPT = "daemond> "
#: What the console says first.
BANNER = ("daemond console: `help` lists the commands; `stop` or Ctrl-C on an empty line stops the daemon; "
          "Ctrl-D leaves the console")
#: Lines of console history kept in the state directory.
HISTORY_LENGTH = 1000


class Interrupted(Exception):
    """Raised out of the console's read: the main loop has a stop or reload to handle."""


class LineCleared(Interrupted):
    """Raised out of the console's read by a Ctrl-C on a half-typed line: the line is dropped."""


class MainLoop(Protocol):
    """What the console needs of the main thread's loop."""

    def stop_due(self) -> bool:
        """Handle a flagged stop or reload; True once the daemon should stop."""

    def reading(self) -> AbstractContextManager[None]:
        """Around a read: raises :class:`Interrupted` out of it when a stop or reload is flagged."""

    def running(self) -> AbstractContextManager[None]:
        """Around a command: Ctrl-C raises KeyboardInterrupt in it."""

    def interrupt(self) -> None:
        """Treat a Ctrl-C as one at the prompt: stop the daemon."""


class Console:
    """Read and run commands on the main thread until a stop is due or the console is closed."""

    def __init__(self, daemon: DaemonControl, loop: MainLoop, out):
        self.daemon = daemon
        self.loop = loop
        self.out = out
        self._readline = None

    def run(self) -> None:
        self._setup_readline()
        self._print(BANNER)
        try:
            while not self.loop.stop_due():
                try:
                    line = self._read(PROMPT)
                except Interrupted:
                    self._print("")
                    continue
                except KeyboardInterrupt:  # a SIGINT as a command ended: treat it as at the prompt
                    self.loop.interrupt()
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
        with self.loop.reading():
            self._show_prompt_after_logs(prompt)
            try:
                return input(prompt)
            finally:
                self._show_prompt_after_logs(None)

    def half_typed(self) -> bool:
        """Whether something is typed at the prompt (called from the SIGINT handler)."""
        readline = self._readline
        return readline is not None and bool(readline.get_line_buffer())

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
        with self.loop.running():
            result = call.run()
            if isinstance(result, Iterator):
                self._stream(result)
            else:
                text = call.text(result)
                if text:
                    self._print(text)

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
        except (Interrupted, EOFError, KeyboardInterrupt):
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
        except (Interrupted, EOFError, KeyboardInterrupt):
            self._print("")
            return False
        return answer.strip().lower() in ("y", "yes")

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # -- readline: history and completion -------------------------------------------------

    def _history_file(self) -> str:
        return str(self.daemon.state_dir / "console_history")

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
        options = [w + " " for w in self.completions(before, text)]
        return options[state] if state < len(options) else None

    def completions(self, before: list[str], text: str) -> list[str]:
        """What may follow the words ``before`` and starts with ``text``: a command's name first;
        then its positional argument's choices (command names for ``help``), or an option not given yet."""
        registry = self.daemon.commands
        names = [c.name for c in registry]
        if not before:
            return [n for n in names if n.startswith(text)]
        try:
            command = registry.get(before[0])
        except UsageError:
            return []
        by_spelling = {s: a for a in command.args for s in a.spellings}
        given: set[str] = set()
        positionals = [a for a in command.args if not (a.flag or a.option)]
        words = before[1:]
        if words and words[-1] in by_spelling and not by_spelling[words[-1]].flag:
            return []  # an option's value: nothing to offer
        while words:
            word = words.pop(0)
            arg = by_spelling.get(word.partition("=")[0])
            if arg is not None:
                given.add(arg.name)
                if not (arg.flag or "=" in word) and words:
                    words.pop(0)
            elif positionals:
                positionals.pop(0)
        if text.startswith("-") or not positionals:
            spellings = [s for a in command.args if a.name not in given for s in a.spellings]
            if command.confirm and "--yes" not in before:
                spellings.append("--yes")
            return [s for s in spellings if s.startswith(text)]
        nxt = positionals[0]
        if command.name == "help" and nxt.name == "command":
            choices = names
        else:
            choices = list(nxt.choices or ())
        return [c for c in choices if c.startswith(text)]
