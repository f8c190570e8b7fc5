"""Control commands: one registry for ``daemonctl``, the console and plugins.

The core's commands (``status``, ``pause``, …) and plugins' commands (from the
``daemond_control_commands`` hook) are registered the same way, and both front
doors — the Unix control socket and the console — dispatch through
:meth:`CommandRegistry.prepare`.

A plugin adds one like this::

    from daemon import ControlCommand, CommandError, hookimpl

    @hookimpl
    def daemond_control_commands(daemon):
        def stats(args):
            return {"lines": 42}
        return [ControlCommand("stats", "show my plugin's counters", stats)]
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from daemon.control.render import render_result


class CommandError(Exception):
    """Raise from a command's ``run`` to report failure: daemonctl prints the message and exits 1.

    ``details``: optional JSON-serialisable data for scripts (``--json`` shows it).

    Example::

        def show(args):
            if args["top"] > 100:
                raise CommandError("at most 100", details={"top": args["top"]})
    """

    def __init__(self, message: str, details: Any = None):
        super().__init__(message)
        self.details = details


class UsageError(CommandError):
    """The request's command or arguments are wrong (daemonctl exits 2)."""


class ConfirmationNeeded(CommandError):
    """The command asks a question first (``confirm``); the message is the question."""


class ArgumentNeeded(UsageError):
    """Raise from a command that needs an argument it was not given (a password).

    daemonctl (on a terminal, or from its stdin for a ``secret`` argument) and
    the console ask for it — without echo when the argument is ``secret`` — and
    run the command again with it; elsewhere it is a usage error with ``message``.
    ``confirm=True`` marks a new secret being chosen (a password): on a terminal
    it is asked twice, and nothing is done if the two differ (as ``passwd`` does).
    ``prompt``: what to ask with (default: the argument's name).

    Example::

        def set_password(args):
            if args["password"] is None:
                raise ArgumentNeeded("password", "give the password", prompt=f"password for {args['user']}",
                                     confirm=True)
    """

    def __init__(self, argument: str, message: str, prompt: str | None = None, confirm: bool = False):
        super().__init__(message)
        self.argument = argument
        self.prompt = prompt or argument
        self.confirm = confirm


@dataclass(frozen=True)
class Argument:
    """One argument of a command.

    ``flag=True``: a boolean option (``--yes``); otherwise a value, positional
    unless ``option=True`` (then ``--name VALUE``). ``type`` converts the text
    (raise ``ValueError`` to reject it). ``short``: a one-letter spelling on
    the command line (``short="n"`` is ``-n``). ``secret``: a value asked for
    without echo (see :class:`ArgumentNeeded`), never to be logged. In JSON
    requests arguments go by ``name``. ``required``: the command cannot run
    without it (a usage error, daemonctl exits 2). ``default``: the value
    when not given. ``choices``: the values allowed (after ``type``).
    ``rest=True`` (the last positional only): it takes every remaining word
    of a command line, joined with one space (a topic, a reason: no quotes
    needed).

    Example (``stats [-t TOP] [--all] [NAME]``)::

        (Argument("top", "how many", option=True, short="t", type=int, default=10),
         Argument("all", "every counter", flag=True),
         Argument("name", "one counter"))
    """

    name: str
    help: str = ""
    required: bool = False
    flag: bool = False
    option: bool = False
    type: Callable[[str], Any] = str
    default: Any = None
    choices: tuple[str, ...] | None = None
    short: str | None = None
    secret: bool = False
    rest: bool = False

    @property
    def spellings(self) -> tuple[str, ...]:
        """How the argument is written on a command line (options and flags only)."""
        if not (self.flag or self.option):
            return ()
        long = "--" + self.name.replace("_", "-")
        return (f"-{self.short}", long) if self.short else (long,)

    def usage(self) -> str:
        if self.flag:
            text = self.spellings[0]
        elif self.option:
            text = f"{self.spellings[0]} {self.name.upper()}"
        else:
            text = self.name.upper() + ("..." if self.rest else "")
        return text if self.required else f"[{text}]"


class _HelpRequested(Exception):
    pass


@dataclass
class ControlCommand:
    """A command of ``daemonctl`` and the daemon's console: return a list of them
    from ``daemond_control_commands``.

    * ``name``: the command's word (``daemonctl NAME``); a name already taken,
      by the core or another plugin, stops the daemon at start.
    * ``help``: one line for ``daemonctl help``.
    * ``run(args) -> result``: called on the control thread (or the console's)
      with a dict of the arguments by name (every argument present: ``None``,
      ``False`` or its default when not given). It returns a string for
      people, or JSON-serialisable data (a dict or list: daemonctl prints it
      as ``key: value`` lines; ``--json`` passes it on). A generator result
      streams: each yielded string is sent as it comes, until the client
      goes away (``logs -f``); yield ``None`` at least once a second while
      there is nothing to send, so that the front door can notice a client
      that left or a daemon that stops (it then closes the generator). Raise
      :class:`CommandError` for a failure (daemonctl prints its message and
      exits 1), :class:`ArgumentNeeded` to have an argument asked for.
    * ``args``: a sequence of :class:`Argument`.
    * ``confirm``: a question daemonctl and the console ask before running
      (``--yes`` skips it; a JSON request must carry ``"confirmed": true``),
      or a function ``confirm(args) -> str | None`` of the bound arguments
      that returns the question or ``None`` (``rooms delete`` asks,
      ``rooms list`` does not).
    * ``render(result) -> str``: the human-readable text of a (non-streamed)
      result, in the daemon, for daemonctl without ``--json`` and the console;
      default: ``render_result``, which prints a string as it is and a
      mapping or list as indented ``key: value`` / ``- item`` lines.
    * ``plugin``: who provided it (set by the daemon; leave it out).

    Example::

        def stats(args):
            return {"lines": 42, "top": args["top"]}

        ControlCommand("stats", "show the counters", stats,
                       args=(Argument("top", "how many", option=True, short="t", type=int, default=10),),
                       render=lambda result: f"{result['lines']} lines")
    """

    name: str
    help: str
    run: Callable[[dict[str, Any]], Any]
    args: tuple[Argument, ...] | list[Argument] = ()
    confirm: str | Callable[[dict[str, Any]], str | None] | None = None
    plugin: str | None = None
    render: Callable[[Any], str] | None = None

    def usage(self) -> str:
        """``logs [-n LINES] [-f]``"""
        return " ".join([self.name, *(a.usage() for a in self.args)])

    def help_text(self) -> str:
        """The usage line, the help, and one line per argument."""
        lines = [f"usage: {self.usage()}", "", self.help]
        for arg in self.args:
            spelled = ", ".join(arg.spellings) or arg.name.upper()
            extra = f" (one of {', '.join(arg.choices)})" if arg.choices else ""
            if arg.default not in (None, False):
                extra += f" (default: {arg.default})"
            if arg.secret:
                extra += " (asked for if needed, without echo)"
            lines.append(f"  {spelled:<18} {arg.help}{extra}")
        return "\n".join(lines)

    def argument(self, name: str) -> Argument | None:
        """The argument called ``name``, if the command has one."""
        return next((arg for arg in self.args if arg.name == name), None)

    def text(self, result: Any) -> str:
        """The human-readable text of a result of this command."""
        return (self.render or render_result)(result)

    def parse_argv(self, argv: list[str]) -> dict[str, Any]:
        """Command-line words (``["-n", "5", "-f"]``) as raw arguments for :meth:`bind`.

        ``-h``/``--help`` anywhere asks for the command's help instead.
        """
        by_spelling = {s: a for a in self.args for s in a.spellings}
        positionals = [a for a in self.args if not (a.flag or a.option)]
        raw: dict[str, Any] = {}
        words = list(argv)
        only_positionals = False
        rest: Argument | None = None
        while words:
            word = words.pop(0)
            if not only_positionals and word == "--":
                only_positionals = True
                continue
            if not only_positionals and word in ("-h", "--help"):
                raise _HelpRequested
            if not only_positionals and word.startswith("-") and len(word) > 1:
                spelling, eq, value = word.partition("=")
                arg = by_spelling.get(spelling)
                if arg is None:
                    raise UsageError(f"{self.name}: unknown option {spelling} (usage: {self.usage()})")
                if arg.flag:
                    if eq:
                        raise UsageError(f"{self.name}: {spelling} takes no value")
                    raw[arg.name] = True
                    continue
                if not eq:
                    if not words:
                        raise UsageError(f"{self.name}: {spelling} needs a value")
                    value = words.pop(0)
                raw[arg.name] = value
                continue
            if not positionals:
                if rest is not None:  # the rest of the line, unquoted
                    raw[rest.name] += " " + word
                    continue
                raise UsageError(f"{self.name}: unexpected argument {word!r} (usage: {self.usage()})")
            arg = positionals.pop(0)
            raw[arg.name] = word
            if arg.rest:  # the rest of the line is its words, even ones that look like options
                rest, only_positionals = arg, True
        return raw

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "help": self.help,
            "plugin": self.plugin,
            "confirm": "depends on the arguments" if callable(self.confirm) else self.confirm,
            "args": [
                {"name": a.name, "help": a.help, "required": a.required, "flag": a.flag,
                 "option": a.option, "choices": list(a.choices) if a.choices else None,
                 "short": a.short, "spellings": list(a.spellings), "secret": a.secret}
                for a in self.args
            ],
            "usage": self.usage(),
        }

    def bind(self, raw: dict[str, Any] | None) -> dict[str, Any]:
        """Check and convert raw arguments (from JSON or the console) against ``args``."""
        raw = dict(raw or {})
        values: dict[str, Any] = {}
        for arg in self.args:
            if arg.name not in raw or raw[arg.name] is None:
                if arg.required:
                    raise UsageError(f"{self.name}: missing argument {arg.name!r}")
                values[arg.name] = False if arg.flag else arg.default
                continue
            value = raw.pop(arg.name)
            if arg.flag:
                if not isinstance(value, bool):
                    raise UsageError(f"{self.name}: {arg.name} is a flag (true or false)")
            else:
                try:
                    value = arg.type(value)
                except (TypeError, ValueError):
                    raise UsageError(f"{self.name}: bad value for {arg.name}: {value!r}") from None
                if arg.choices and value not in arg.choices:
                    raise UsageError(f"{self.name}: {arg.name} must be one of {', '.join(arg.choices)}")
            values[arg.name] = value
        if raw:
            raise UsageError(f"{self.name}: unknown argument(s): {', '.join(sorted(map(str, raw)))}")
        return values


@dataclass
class CommandRegistry:
    """Every command by name. Registration and lookup may come from different threads."""

    _commands: dict[str, ControlCommand] = field(default_factory=dict)
    # _lock guards _commands (a reload re-registers plugins' commands while status runs)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, command: ControlCommand) -> None:
        with self._lock:
            if command.name in self._commands:
                other = self._commands[command.name].plugin or "the core"
                raise ValueError(f"control command {command.name!r} is already provided by {other}")
            self._commands[command.name] = command

    def unregister_plugin(self, plugin: str) -> None:
        with self._lock:
            for name in [n for n, c in self._commands.items() if c.plugin == plugin]:
                del self._commands[name]

    def get(self, name: str) -> ControlCommand:
        with self._lock:
            command = self._commands.get(name)
        if command is None:
            raise UsageError(f"unknown command {name!r} (try help)")
        return command

    def __iter__(self) -> Iterator[ControlCommand]:
        with self._lock:
            return iter(sorted(self._commands.values(), key=lambda c: c.name))

    def prepare(self, name: str, *, args: dict[str, Any] | None = None, argv: list[str] | None = None,
                confirmed: bool = False) -> Call:
        """Check a request before running it — the one path both front doors take.

        Arguments come as a dict by name (JSON requests), as command-line
        words (the console, daemonctl), or both (words, plus what was asked
        for after an :class:`ArgumentNeeded`). Raises :class:`UsageError`, or
        :class:`ConfirmationNeeded` for a command with ``confirm`` unless
        ``confirmed``. ``-h`` in ``argv`` prepares a call that returns the
        command's help.
        """
        command = self.get(name)
        if argv is not None:
            try:
                from_words = command.parse_argv(argv)
            except _HelpRequested:
                return Call(command, {}, help=True)
            both = set(from_words) & set(args or {})
            if both:
                raise UsageError(f"{name}: {', '.join(sorted(both))} given both by name and as words")
            args = {**from_words, **(args or {})}
        bound = command.bind(args)
        question = command.confirm(bound) if callable(command.confirm) else command.confirm
        if question and not confirmed:
            raise ConfirmationNeeded(question)
        return Call(command, bound)


@dataclass
class Call:
    """A checked request: run it (on the front door's thread), then render its result."""

    command: ControlCommand
    args: dict[str, Any]
    help: bool = False

    def run(self) -> Any:
        if self.help:
            return self.command.help_text()
        return self.command.run(self.args)

    def text(self, result: Any) -> str:
        if self.help:
            return result
        return self.command.text(result)
