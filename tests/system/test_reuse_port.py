"""listeners.NAME.reuse_port: two daemond processes share one port, and the kernel spreads
connections over both (cluster nodes on one host, docs/cluster.md)."""

from __future__ import annotations

from daemon.testing import LineClient


def connections_served(proc) -> int:
    return next(lst["accepted"] for lst in proc.status()["listeners"] if lst["name"] == "e")


def test_two_daemond_processes_share_a_port_and_both_serve(daemond_process):
    first = daemond_process({"e": {"plugins": ["echo"], "reuse_port": True}})
    port = first.ports["e"]
    second = daemond_process({"e": {"plugins": ["echo"], "reuse_port": True, "port": port}})
    assert second.ports["e"] == port
    for i in range(64):  # the kernel hashes each connection's address pair to one of the two
        with LineClient("127.0.0.1", port) as c:
            c.send_line(f"hello {i}")
            assert c.read_line() == f"hello {i}"
    served = connections_served(first), connections_served(second)
    assert sum(served) == 64 and min(served) > 0, served


def test_without_reuse_port_on_both_the_second_cannot_bind(daemond_process):
    first = daemond_process({"e": {"plugins": ["echo"], "reuse_port": True}})
    port = first.ports["e"]
    second = daemond_process({"e": {"plugins": ["echo"], "port": port}}, ready=False)
    assert second.proc.wait(15) == 1
    assert second.stderr().strip().splitlines()[-1] == \
        f"daemond: listener 'e': cannot listen on 127.0.0.1:{port}: address already in use"
