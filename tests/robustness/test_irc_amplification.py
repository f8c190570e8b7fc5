"""IRC commands that name many targets in one line: the work one line does is bounded, and chat's
flood control counts what a line does, not lines. Expected: a ``PRIVMSG``/``NOTICE`` reaches at
most ``TARGMAX`` (4) distinct targets, each once; every target past the first spends a flood-control
token as a line of its own would, and so does every room a ``JOIN`` makes past its first; a ``JOIN``
of a room already joined, or named twice, is answered once. Bound: a few hundred lines per test, well under a second of work."""

from __future__ import annotations

import re

from tests.support.irc import SERVER as S
from tests.support.irc import IrcClient, line_user, password, register_user, start


def registered(server, nick: str) -> IrcClient:
    register_user(server, nick)
    client = IrcClient(server.address("irc"))
    client.register(nick, password(nick))
    return client


def test_isupport_says_how_many_targets_a_line_may_name(daemond_factory):
    server = start(daemond_factory)
    register_user(server, "alice")
    with IrcClient(server.address("irc")) as alice:
        isupport = [line for line in alice.register("alice", password("alice")) if " 005 " in line]
    assert "TARGMAX=JOIN:,NAMES:1,NOTICE:4,PART:,PRIVMSG:4,WHOIS:1" in isupport[0].split(" ")


def test_one_privmsg_line_reaches_each_distinct_target_once_and_at_most_four(daemond_factory):
    server = start(daemond_factory)
    bob = line_user(server, "bob")
    with registered(server, "alice") as alice:
        alice.send("JOIN #lobby")
        alice.until(" 366 ")
        assert bob.read_line() == "JOIN alice"
        # the same room and the same user, named 40 times each (and in other cases): once each
        alice.send("PRIVMSG " + ",".join(["#lobby", "#LOBBY", "bob", "BOB"] * 20) + " :once")
        alice.send("NOTICE " + ",".join(["bob"] * 120) + " :once more")
        alice.send("PRIVMSG #lobby :end")
        assert [bob.read_line() for _ in range(4)] == ["MSG alice once", "PRIV alice once", "PRIV alice once more",
                                                     "MSG alice end"]
        # more distinct targets than TARGMAX: the first four get it, the client hears 407 once
        for name in ("u1", "u2", "u3", "u4", "u5"):
            register_user(server, name)
        users = [line_user(server, name) for name in ("u1", "u2", "u3", "u4", "u5")]
        alice.send("PRIVMSG u1,u2,u3,u4,u5 :hello")
        alice.send("PING done")
        assert [line for line in alice.until("PONG") if " JOIN " not in line] == [f":{S} 407 alice u5 :Too many targets: at most 4 per PRIVMSG; not sent",
                                       f":{S} PONG {S} done"]
        alice.send("PRIVMSG u5 :sync")
        for user, expected in zip(users, ["PRIV alice hello"] * 4 + ["PRIV alice sync"]):
            assert next_private(user) == expected


def next_private(client) -> str:
    """The next private message a line client gets (the room's JOINs and messages skipped)."""
    while not (line := client.read_line()).startswith("PRIV"):
        pass
    return line


def test_every_target_of_a_line_spends_flood_control(daemond_factory):
    # a refill so slow that the test's own pace cannot matter: 5 lines at once, then cut
    server = start(daemond_factory, chat={"rate": 0.001, "burst": 5, "on_flood": "cut"})
    for name in ("b1", "b2", "b3", "b4"):
        register_user(server, name)
    for name in ("b1", "b2", "b3", "b4"):
        line_user(server, name)
    with registered(server, "alice") as alice:
        alice.send("PRIVMSG b1,b2,b3,b4 :one line, four messages")
        alice.send("PRIVMSG b1,b2,b3,b4 :and four more")
        lines = alice.closed()
    assert lines[-1] == f"ERROR :Closing Link: {S} (Excess Flood)"
    assert re.search(r"flood: alice from \S+ is over chat's rate; disconnecting", server.config.log_file.read_text())


def test_every_room_a_join_makes_spends_flood_control_and_joining_existing_rooms_does_not(daemond_factory):
    # a client's autojoin of many existing rooms in one line is one line; making rooms (a database
    # write each, and JOIN 0 drops them again) costs a line per room, as /join does
    server = start(daemond_factory, chat={"rate": 0.001, "burst": 5, "on_flood": "cut"})
    existing = [f"#old{i}" for i in range(8)]
    for name in existing:
        assert server.control("rooms", "create", name)["ok"]
    with registered(server, "alice") as alice:
        alice.send("JOIN " + ",".join(existing))
        alice.send("PING joined")
        assert sum(" 366 " in line for line in alice.until("PONG")) == 8
        alice.send("JOIN " + ",".join(f"#new{i}" for i in range(8)))
        lines = alice.closed()
    assert lines[-1] == f"ERROR :Closing Link: {S} (Excess Flood)"
    assert sum(" 366 " in line for line in lines) < 8


def test_a_join_of_a_room_already_joined_is_answered_once(daemond_factory):
    server = start(daemond_factory)
    bob = line_user(server, "bob")
    with registered(server, "alice") as alice:
        alice.send("JOIN " + ",".join(["#lobby", "#LOBBY"] * 30))
        alice.send("JOIN #lobby")
        alice.send("NAMES " + ",".join(["#lobby"] * 60))
        alice.send("PING done")
        lines = alice.until("PONG")
    assert lines == [f":alice!alice@{S} JOIN #lobby", f":{S} 353 alice = #lobby :alice bob",
                     f":{S} 366 alice #lobby :End of /NAMES list",
                     f":{S} 353 alice = #lobby :alice bob", f":{S} 366 alice #lobby :End of /NAMES list",
                     f":{S} PONG {S} done"]
    assert bob.read_line() == "JOIN alice"
