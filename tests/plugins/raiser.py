"""Raises in the hook named by the first word a client sends (for isolation tests)."""

from daemon import hookimpl


class Boom(Exception):
    pass


@hookimpl
def daemond_line_received(session, line):
    if line == "boom":
        raise Boom("raised on purpose")
    session.ok(line)
    return True
