"""An IRC client the listener refuses — over ``max_unauthenticated_per_ip``, ``max_per_ip`` or
``max_logged_in_per_ip`` — is told so in IRC (``ERROR :Closing Link: S (WHY)``, as docs/irc.md
promises for every close the client did not ask for), never with the line protocol's ``-ERR``.
Bound: three connections per test."""

from __future__ import annotations

from tests.support.irc import SERVER as S
from tests.support.irc import IrcClient, password, register_user, start


def test_a_connection_over_max_unauthenticated_per_ip_gets_an_irc_error(daemond_factory):
    server = start(daemond_factory, listener={"max_unauthenticated_per_ip": 1})
    with IrcClient(server.address("irc")) as first, IrcClient(server.address("irc")) as second:
        first.send("PING one")
        assert first.read() == f":{S} PONG {S} one"
        assert second.closed() == [
            f"ERROR :Closing Link: {S} (too many connections not logged in from 127.0.0.1 (1))"]


def test_a_login_over_max_logged_in_per_ip_gets_an_irc_error(daemond_factory):
    server = start(daemond_factory, listener={"max_logged_in_per_ip": 1})
    for name in ("alice", "bob"):
        register_user(server, name)
    with IrcClient(server.address("irc")) as alice, IrcClient(server.address("irc")) as bob:
        alice.register("alice", password("alice"))
        bob.send(f"PASS {password('bob')}")
        bob.send("NICK bob")
        bob.send("USER bob 0 * :bob")
        assert bob.closed() == [f"ERROR :Closing Link: {S} (too many sessions logged in from 127.0.0.1 (1))"]
