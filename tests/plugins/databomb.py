"""Echoes bytes, but raises in daemond_data_received for connections from 127.0.0.9 (robustness item 22)."""

from daemon import hookimpl


@hookimpl
def daemond_data_received(session, data):
    if session.peer[0] == "127.0.0.9":
        raise RuntimeError("raised on purpose in daemond_data_received")
    session.send(data)
