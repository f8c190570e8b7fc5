"""``echo``: the RFC 862 TCP echo service.

Every byte received is sent back unchanged and in order — binary-safe, no
framing. ``Session.send`` applies TCP back-pressure: while the client does not
read, the daemon stops reading from it. When the client half-closes, what is
still queued is sent before the connection closes. It keeps no state, so it
works the same on every node of a cluster (docs/cluster.md).
"""

from daemon import hookimpl


@hookimpl
def daemond_data_received(session, data):
    session.send(data)


@hookimpl
def daemond_cluster_ready():
    return True
