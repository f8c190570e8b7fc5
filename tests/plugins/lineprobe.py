"""A line plugin to list after auth: shows what it sees of a login (session.user, daemond_session_login)."""

from daemon import hookimpl


@hookimpl
def daemond_session_login(session, user):
    session.send_line(f"EVENT login {user} {session.user}")


@hookimpl
def daemond_session_open(session):
    session.send_line(f"EVENT open {session.user}")


@hookimpl
def daemond_line_received(session, line):
    session.ok(f"{session.user} said {line}")
    return True
