"""The public room API (daemond_chat_rooms), through a second front end that uses only it."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.chat import FAKE_LOGIN, IN_PROCESS, Room, listener, settings

FRONT = "tests.plugins.roomfront:RoomFront"


def start(daemond_factory, **chat):
    listeners = {**listener(), "front": {"plugins": [FAKE_LOGIN, FRONT]}}
    return daemond_factory(listeners, settings(**chat), **IN_PROCESS)


def front(d, name):
    client = d.client("front")
    assert client.read_line().startswith("+OK")
    assert client.command(name) == ([], f"+OK logged in as {name}")
    return client


def test_hook_daemond_chat_rooms(daemond_factory):
    d = start(daemond_factory, replay=2)
    room = Room(d)
    alice, bob = room.people("alice", "bob")
    assert alice.command("/join #dev") == ([], "+OK")
    alice.send_line("before irc")
    assert alice.command("/who") == ([], "+OK alice")  # the plain line (no reply) is in before the front end joins
    irc = front(d, "ivan")
    lines, final = irc.command("join #DEV")
    assert lines == ["EV msg #dev alice before irc"] and final == "+OK"  # the replay
    assert alice.read_line() == "JOIN #dev ivan"  # chat's clients see a front end's user like any other
    assert irc.command("say #dev hello from irc") == ([], "+OK 2")  # its number in the room's history
    assert alice.read_line() == "MSG #dev ivan hello from irc"
    assert irc.command("act #dev waves") == ([], "+OK 3")
    assert alice.read_line() == "ACTION #dev ivan waves"
    alice.send_line("hi ivan")  # events reach the front end through its callback
    assert irc.read_line() == "EV msg #dev alice hi ivan"
    assert alice.command("/topic #dev api") == ([], "+OK")
    assert irc.read_line() == "EV topic #dev alice api"
    assert irc.command("topic #dev") == ([], "+OK api")
    assert irc.command("topic #dev from irc") == ([], "+OK from irc")
    assert alice.read_line() == "TOPIC #dev ivan from irc"
    assert irc.command("members #dev") == ([], "+OK alice ivan")
    assert irc.command("joined") == ([], "+OK #dev")
    assert irc.command("history #dev 2") == (["EV action #dev ivan waves", "EV msg #dev alice hi ivan"], "+OK")
    assert irc.command("list") == ([], "+OK #dev=2/4/from irc #lobby=2/0/")
    bob.send_line("lobby only")
    assert alice.read_line() == "MSG bob lobby only"
    # errors come as the protocol's tokens
    assert irc.command("say #nope x")[1].startswith("-ERR not-in-room")
    assert irc.command("join nope")[1].startswith("-ERR bad-room")
    assert irc.command("members #nope")[1].startswith("-ERR no-such-room")
    assert irc.command("say #dev \x1b[0m")[1].startswith("-ERR bad-text")
    assert irc.command("join #lobby") == (["EV msg #lobby bob lobby only"], "+OK")  # the replay
    for client in (alice, bob):
        assert client.read_line() == "JOIN ivan"
    # a chat login of a name the front end has in the default room is refused, as a second login is
    other = d.client("chat")
    other.read_line()
    assert other.command("/register ivan pw-of-ivan")[1].startswith("-ERR already-connected")
    other.close()
    irc.close()  # the front end parts its sessions from every room
    assert sorted(alice.read_line() for _ in range(2)) == ["PART #dev ivan", "PART ivan"]
    assert bob.read_line() == "PART ivan"


def test_deleting_a_room_tells_a_front_end(daemond_factory):
    d = start(daemond_factory)
    irc = front(d, "ivan")
    assert irc.command("join #gone") == ([], "+OK")
    assert d.control("rooms", "delete", "#gone", confirmed=True)["ok"]
    assert irc.read_line() == "EV deleted #gone None #gone was deleted by the operator"
    assert irc.command("joined") == ([], "+OK")


def test_the_test_front_end_imports_nothing_but_the_public_api():
    tree = ast.parse((Path(__file__).parents[1] / "plugins" / "roomfront.py").read_text())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert imported == ["daemon"]
