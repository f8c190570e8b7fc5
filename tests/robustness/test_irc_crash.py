"""A bug in the IRC plugin that raises while serving one client ends that client only. Expected:
the client gets ``ERROR :Closing Link: S (Internal error)``; the exception is logged once with its
plugin named; the crashed user leaves its rooms (line users
see PART), its nickname is free again at once; other IRC and line sessions carry on; daemonctl
still answers. Bound: one crash, a handful of lines."""

from __future__ import annotations

import re

from plugins.irc import connection
from tests.support.irc import SERVER as S
from tests.support.irc import IrcClient, line_user, password, register_user, start


def test_an_exception_in_a_command_ends_only_that_connection(daemond_factory, monkeypatch):
    def broken(self, params):
        raise RuntimeError("a bug in WHOIS")

    monkeypatch.setitem(connection._HANDLERS, "WHOIS", broken)
    server = start(daemond_factory)
    for name in ("alice", "carol"):
        register_user(server, name)
    bob = line_user(server, "bob")
    with IrcClient(server.address("irc")) as alice, IrcClient(server.address("irc")) as carol:
        alice.register("alice", password("alice"))
        carol.register("carol", password("carol"))
        for client in (alice, carol):
            client.send("JOIN #lobby")
            client.until(" 366 ")
        alice.send("WHOIS bob")
        assert alice.closed()[-1] == f"ERROR :Closing Link: {S} (Internal error)"  # told, as for any close
        while (line := bob.read_line()) != "PART alice":
            assert line in ("JOIN alice", "JOIN carol"), line
        carol.send("PRIVMSG #lobby :carol carries on")
        assert bob.read_line() == "MSG carol carol carries on"
    with IrcClient(server.address("irc")) as again:  # the nickname is free: no ghost
        assert again.register("alice", password("alice"))[0].startswith(f":{S} 001 alice ")
    assert server.control("status")["ok"]
    log = server.config.log_file.read_text()
    assert len(re.findall(r"plugin irc raised in listener irc", log)) == 1
    assert bob.command("/who")[1] == "+OK bob"
