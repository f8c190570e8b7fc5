"""The IRC front end driven by a third-party IRC client library (jaraco's ``irc`` from PyPI).

Registration with PASS and with SASL PLAIN, rooms, private messages and the mapping to
line-protocol users, as a client we did not write parses them — also over TLS.
"""

from __future__ import annotations

import ssl
import time

import irc.client
import irc.connection
import pytest

from tests.support.irc import line_user, password, register_user, start
from tests.support.tls import Certs, tls_settings


class Client:
    """One ``irc.client`` connection and the events it received, in order."""

    def __init__(self, server_address, nick: str, *, sasl: bool = False, secret: str | None = None,
                 context: ssl.SSLContext | None = None):
        self.reactor = irc.client.Reactor()
        self.events: list[irc.client.Event] = []
        self.reactor.add_global_handler("all_events", lambda conn, event: self.events.append(event), -10)
        factory = irc.connection.Factory(wrapper=lambda sock: context.wrap_socket(sock, server_hostname="localhost")) \
            if context is not None else irc.connection.Factory()
        host, port = server_address
        self.connection = self.reactor.server().connect(
            host, port, nick, password=secret, connect_factory=factory, sasl_login=nick if sasl else None)

    def wait(self, predicate, timeout: float = 10.0) -> irc.client.Event:
        """Process input until an event satisfies ``predicate``; that event."""
        seen = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events[seen:]:
                if predicate(event):
                    self.events = self.events[self.events.index(event) + 1:]
                    return event
            seen = len(self.events)
            self.reactor.process_once(0.05)
        raise AssertionError(f"no such event; got {[(e.type, e.source, e.target, e.arguments) for e in self.events]}")

    def wait_type(self, kind: str, **kwargs) -> irc.client.Event:
        return self.wait(lambda e: e.type == kind and all(getattr(e, k) == v for k, v in kwargs.items()))

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def server(daemond_factory):
    return start(daemond_factory)


def test_registration_with_pass(server):
    register_user(server, "alice")
    client = Client(server.address("irc"), "alice", secret=password("alice"))
    welcome = client.wait_type("welcome")
    assert welcome.target == "alice"
    client.wait_type("featurelist")
    assert client.connection.features.network == "daemond"
    assert client.connection.features.casemapping == "ascii"
    assert client.connection.features.nicklen == 32
    assert client.connection.features.chantypes == "#"
    client.wait_type("nomotd")
    assert client.connection.get_nickname() == "alice"
    client.close()


def test_registration_with_sasl_plain(server):
    register_user(server, "alice")
    client = Client(server.address("irc"), "alice", secret=password("alice"), sasl=True)
    client.wait_type("saslsuccess")
    client.wait_type("welcome")
    client.close()


def test_a_wrong_password_fails_sasl_and_pass(server):
    register_user(server, "alice")
    sasl = Client(server.address("irc"), "alice", secret="not the password", sasl=True)
    failed = sasl.wait_type("saslfail")
    assert failed.arguments == ["SASL authentication failed: wrong name or password"]
    assert sasl.wait_type("passwdmismatch").arguments == ["Password required: log in with SASL PLAIN or PASS"]
    sasl.close()
    plain = Client(server.address("irc"), "alice", secret="not the password")
    assert plain.wait_type("passwdmismatch").arguments == ["wrong name or password"]
    plain.close()


def test_rooms_private_messages_and_the_mapping(server):
    register_user(server, "alice")
    bob = line_user(server, "bob")
    client = Client(server.address("irc"), "alice", secret=password("alice"), sasl=True)
    client.wait_type("welcome")
    client.connection.join("#lobby")
    client.wait_type("join", target="#lobby")
    names = client.wait_type("namreply")
    assert names.arguments == ["=", "#lobby", "alice bob"]
    assert bob.read_line() == "JOIN alice"

    bob.send_line("hello alice")
    message = client.wait_type("pubmsg")
    assert (message.source.nick, message.target, message.arguments) == ("bob", "#lobby", ["hello alice"])
    bob.send_line("/me waves")
    action = client.wait_type("action")
    assert (action.source.nick, action.target, action.arguments) == ("bob", "#lobby", ["waves"])
    # read before alice speaks: the +OK and alice's line would come from two threads, in either order
    assert bob.read_line() == "+OK"  # the /me's

    client.connection.privmsg("#lobby", "hello bob")
    client.connection.action("#lobby", "nods")
    assert [bob.read_line(), bob.read_line()] == ["MSG alice hello bob", "ACTION alice nods"]

    client.connection.privmsg("bob", "just you")
    assert bob.read_line() == "PRIV alice just you"
    bob.command("/msg alice and you")
    private = client.wait_type("privmsg")
    assert (private.source.nick, private.target, private.arguments) == ("bob", "alice", ["and you"])

    client.connection.topic("#lobby", "irc and lines")
    assert bob.read_line() == "TOPIC alice irc and lines"
    bob.command("/join #dev")
    bob.command("/part #lobby")
    part = client.wait_type("part")
    assert (part.source.nick, part.target) == ("bob", "#lobby")
    client.connection.list()
    listed = client.wait(lambda e: e.type == "list" and e.arguments[0] == "#dev")
    assert listed.arguments == ["#dev", "1", ""]
    client.connection.whois(["bob"])
    assert client.wait_type("whoischannels").arguments == ["bob", "#dev"]
    client.connection.part(["#lobby"])
    client.wait_type("part", target="#lobby")
    client.connection.quit("bye")
    client.wait_type("error")
    client.close()


def test_over_tls(daemond_factory, tmp_path):
    certs = Certs(tmp_path / "tls")
    crt, key = certs.issue()
    server = start(daemond_factory, tls=tls_settings(crt, key))
    register_user(server, "alice")
    client = Client(server.address("irc"), "alice", secret=password("alice"), sasl=True,
                    context=certs.client_context())
    client.wait_type("saslsuccess")
    client.wait_type("welcome")
    client.connection.join("#lobby")
    client.wait_type("join")
    bob = line_user(server, "bob")
    bob.send_line("secure hello")
    assert client.wait_type("pubmsg").arguments == ["secure hello"]
    client.close()
