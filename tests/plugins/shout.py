"""Answers plain lines in upper case and leaves /commands to others."""

from daemon import hookimpl
from daemon.lines import plain_text, split_command


@hookimpl
def daemond_line_received(session, line):
    if split_command(line) is not None:
        return None
    session.ok(plain_text(line).upper())
    return True


@hookimpl
def daemond_line_commands(session):
    return [("TEXT", "any plain line is shouted back")]
