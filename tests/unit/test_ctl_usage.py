"""daemonctl's offline --help names every core command as the daemon's registry defines it.

daemonctl cannot ask the registry without a daemon (and must not import it: it starts
fast), so its summary is kept in step here instead.
"""

from __future__ import annotations

import re

from daemon.control.core_commands import core_commands
from daemon.ctl import USAGE


def test_every_core_command_and_its_options_are_in_daemonctl_help():
    listed = {}
    for line in USAGE.split("commands of every daemond", 1)[1].split("options:", 1)[0].splitlines()[1:]:
        words = re.split(r"\s{2,}", line.strip())[0]
        names = re.match(r"[a-z-]+(?:\s*\|\s*[a-z-]+)*", words) if words else None
        for name in re.split(r"\s*\|\s*", names.group()) if names else ():
            listed[name] = words
    registry = {command.name: command for command in core_commands(daemon=None)}
    assert sorted(listed) == sorted(registry)
    for name, command in registry.items():
        for argument in command.args:
            if argument.option or argument.flag:
                spelled = f"-{argument.short}" if argument.short else f"--{argument.name}"
                assert spelled in listed[name], (name, argument.name)
            if argument.option and argument.short:
                assert argument.name.upper() in listed[name], (name, argument.name)
