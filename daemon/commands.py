"""Control commands: one registry for ``daemonctl``, the console and plugins.

The core's commands (``status``, ``pause``, …) and plugins' commands (from the
``daemond_control_commands`` hook) are registered the same way, and both front
doors — the Unix control socket and the console — dispatch through
:meth:`CommandRegistry.run`.

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


class CommandError(Exception):
    """Raise from a command to report failure: daemonctl prints the message and exits 1."""


class UsageError(CommandError):
    """The request's command or arguments are wrong (daemonctl exits 2)."""


@dataclass(frozen=True)
class Argument:
    """One argument of a command.

    ``flag=True``: a boolean option (``--yes``); otherwise a value, positional
    unless ``option=True`` (then ``--name VALUE``). ``type`` converts the text.
    """

    name: str
    help: str = ""
    required: bool = False
    flag: bool = False
    option: bool = False
    type: Callable[[str], Any] = str
    default: Any = None
    choices: tuple[str, ...] | None = None


@dataclass
class ControlCommand:
    """A command of the control interface.

    ``run(args)`` is called on the control thread (or the console's) with a
    dict of the arguments by name and returns the result: a string for people,
    or a JSON-serialisable dict/list (daemonctl prints it; ``--json`` passes it
    on). A generator result streams: each yielded string is sent as it comes,
    until the client goes away (``logs -f``). Raise :class:`CommandError` for a
    failure. ``confirm``: a question daemonctl asks on a terminal before
    running (skipped with ``--yes``). ``plugin``: who provided it (set by the
    daemon).
    """

    name: str
    help: str
    run: Callable[[dict[str, Any]], Any]
    args: tuple[Argument, ...] | list[Argument] = ()
    confirm: str | None = None
    plugin: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "help": self.help,
            "plugin": self.plugin,
            "confirm": self.confirm,
            "args": [
                {"name": a.name, "help": a.help, "required": a.required, "flag": a.flag,
                 "option": a.option, "choices": list(a.choices) if a.choices else None}
                for a in self.args
            ],
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

    def run(self, name: str, raw_args: dict[str, Any] | None = None) -> Any:
        command = self.get(name)
        return command.run(command.bind(raw_args))
