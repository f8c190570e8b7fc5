"""Raises in one chosen hook for connections from BOMB_HOST only (robustness item 22).

Line mode: after a login plugin (fakelogin), answers ``+OK <line>``. The test sets
``HOOK`` to the hook that raises.
"""

from daemon import hookimpl

BOMB_HOST = "127.0.0.9"
HOOK: str | None = None


class Boom(Exception):
    pass


def _maybe(session, hook):
    if HOOK == hook and session.peer[0] == BOMB_HOST:
        raise Boom(f"raised on purpose in {hook}")


@hookimpl
def daemond_session_open(session):
    _maybe(session, "daemond_session_open")


@hookimpl
def daemond_session_login(session, user):
    _maybe(session, "daemond_session_login")


@hookimpl
def daemond_line_received(session, line):
    _maybe(session, "daemond_line_received")
    if line.startswith("/"):
        return None  # /help and /quit are the core's
    session.ok(line)
    return True


@hookimpl
def daemond_line_commands(session):
    _maybe(session, "daemond_line_commands")
    return [("/bomb", "nothing")]


@hookimpl
def daemond_session_close(session, reason):
    _maybe(session, "daemond_session_close")
