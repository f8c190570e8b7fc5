"""Two plugins that record the order in which the listener calls them."""

from daemon import hookimpl


class First:
    @hookimpl
    def daemond_session_open(self, session):
        session.send_line("OPEN first")


class Second:
    @hookimpl
    def daemond_session_open(self, session):
        session.send_line("OPEN second")

    @hookimpl
    def daemond_line_received(self, session, line):
        session.ok(f"second saw {line}")
        return True
