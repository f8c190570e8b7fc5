"""Bench-only control plugin: each line costs ~25 ms of pure-Python CPU time, holding the GIL.

``auth_bench.py --control`` storms it exactly like the login listener, to show
what echo latency would look like if password hashing held the GIL.
"""

import time

from daemon import hookimpl

#: About one argon2id verify at OWASP's minimum on the machine the bench was written on.
WORK_SECONDS = 0.025


@hookimpl
def daemond_session_open(session):
    session.ok("hog")


@hookimpl
def daemond_line_received(session, line):
    end = time.thread_time() + WORK_SECONDS  # CPU time, like a hash's cost, however busy the machine
    while time.thread_time() < end:  # bytecode all the way: the GIL is only handed over every 5 ms
        pass
    session.ok("done")
    return True
