"""A login plugin for tests only: no passwords, the name is all it takes.

The first line is the name (``NAME`` or ``/nick NAME``); the plugin calls
``session.login(name)`` — the core API any login plugin uses — and answers
``+OK`` once the plugins after it have seen the login (as ``auth`` does).
"""

import re

from daemon import SessionEnd, hookimpl

NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")


@hookimpl
def daemond_cluster_ready():
    return True  # it keeps nothing: the name is all it takes, on any node


@hookimpl
def daemond_session_open(session):
    session.ok("fakelogin: your name?")
    while True:
        line = session.read_line()
        if line.lower() == "/quit":
            session.ok("bye")
            raise SessionEnd("quit")
        name = line[len("/nick "):] if line.lower().startswith("/nick ") else line
        if NAME.fullmatch(name):
            break
        session.err("bad-name", "names are 1-32 of A-Z a-z 0-9 _ . -")
    session.login(name)
    session.ok(f"logged in as {name}")
