"""A front end for tests that logs its sessions in through the account hooks, and nothing else.

One command per line: ``login NAME PASSWORD`` answers ``+OK <token> <text>`` with what
``daemond_account_login`` returned (``+OK none`` when no login plugin is loaded);
``exists NAME`` answers ``+OK True``/``False``/``None``; ``whoami`` answers ``+OK <session.user>``.
Its sessions are logged out (``daemond_account_logout``) when they close.
"""

from daemon import hookimpl


@hookimpl
def daemond_line_received(session, line):
    word, _, rest = line.partition(" ")
    hook = session.daemon.hook
    if word == "login":
        name, _, password = rest.partition(" ")
        result = hook.daemond_account_login(session=session, name=name, password=password)
        session.ok("none" if result is None else f"{result[0]} {result[1]}")
    elif word == "exists":
        session.ok(str(hook.daemond_account_exists(name=rest)))
    elif word == "whoami":
        session.ok(str(session.user))
    else:
        return None
    return True


@hookimpl
def daemond_session_close(session):
    session.daemon.hook.daemond_account_logout(session=session)
