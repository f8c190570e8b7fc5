"""``echo``: the RFC 862 TCP echo service.

Every byte received is sent back unchanged and in order — binary-safe, no
framing. ``Session.send`` applies TCP back-pressure: while the client does not
read, the daemon stops reading from it. When the client half-closes, what is
still queued is sent before the connection closes.
"""

from daemon import hookimpl


@hookimpl
def daemond_data_received(session, data):
    session.send(data)
