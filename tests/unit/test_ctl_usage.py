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


def test_daemonctls_own_options_may_follow_the_command():
    from daemon.ctl import AFTER_COMMAND, parse_args

    opts = parse_args(["users", "add", "gina", "--password-file", "/tmp/pw", "--yes", "--json"])
    assert (opts.command, opts.argv) == ("users", ["add", "gina"])
    assert (opts.password_file, opts.yes, opts.json) == ("/tmp/pw", True, True)
    assert parse_args(["users", "add", "gina", "--password-file=/tmp/pw"]).password_file == "/tmp/pw"
    # short options after the command are the command's own (a plugin's may define -t)
    assert parse_args(["echo-args", "-t", "2", "-y"]).argv == ["-t", "2", "-y"]
    assert parse_args(["-t", "0", "-y", "status"]).timeout is None
    # after "--" every word is the command's, even one spelled like daemonctl's options
    assert parse_args(["rooms", "topic", "dev", "--", "-y"]).argv == ["topic", "dev", "--", "-y"]
    # and no core command has an option daemonctl takes for itself
    for command in core_commands(daemon=None):
        for argument in command.args:
            if argument.option or argument.flag:
                assert f"--{argument.name}" not in AFTER_COMMAND and f"-{argument.short}" not in AFTER_COMMAND


def test_a_rest_argument_takes_the_rest_of_the_line_as_it_is():
    from daemon import Argument, ControlCommand

    topic = ControlCommand("topic", "", lambda args: args, args=(
        Argument("room", "the room"), Argument("text", "the topic", rest=True)))
    assert topic.parse_argv(["dev", "ship", "-5", "--", "see", "-x"]) == {"room": "dev", "text": "ship -5 -- see -x"}
    assert topic.usage() == "topic [ROOM] [TEXT...]"
