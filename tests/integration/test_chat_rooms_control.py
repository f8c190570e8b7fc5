"""daemonctl rooms: list, create, delete (asks first), topic — over the control socket."""

from __future__ import annotations

from tests.support.chat import assert_nothing_pending


def test_rooms_lists_name_members_messages_and_topic(chat):
    room = chat()
    alice, bob = room.people("alice", "bob")
    assert alice.command("/join #Dev") == ([], "+OK")
    alice.send_line("one")
    assert alice.command("/topic #dev the topic") == ([], "+OK")
    reply = room.server.control("rooms")
    assert reply["ok"] and reply["result"] == [
        {"name": "#Dev", "members": 1, "messages": 1, "topic": "the topic"},
        {"name": "#lobby", "members": 2, "messages": 0, "topic": ""}]
    assert room.server.control("rooms", "list")["result"] == reply["result"]


def test_rooms_create_makes_a_room_that_stays_and_takes_names_without_the_hash(chat):
    room = chat()
    (alice,) = room.people("alice")
    assert room.server.control("rooms", "create", "ops")["result"] == "created #ops"
    assert room.server.control("rooms", "create", "#bad!")["ok"] is False
    assert alice.command("/rooms") == (["ROOM #lobby 1", "ROOM #ops 0"], "+OK")


def test_rooms_delete_asks_first_then_parts_the_members_and_drops_the_history(chat):
    room = chat()
    alice, bob = room.people("alice", "bob")
    for client in (alice, bob):
        assert client.command("/join #dev") == ([], "+OK")
    assert alice.read_line() == "JOIN #dev bob"
    alice.send_line("doomed")
    assert bob.read_line() == "MSG #dev alice doomed"
    asked = room.server.control("rooms", "delete", "#dev")
    assert asked["ok"] is False and asked["error"]["code"] == "confirm" and "#dev" in asked["error"]["message"]
    assert room.server.control("rooms")["ok"]  # list asks nothing
    reply = room.server.control("rooms", "delete", "#dev", confirmed=True)
    assert reply["ok"] and reply["result"] == "deleted #dev; 2 members parted"
    for client in (alice, bob):
        assert client.read_line() == "NOTICE #dev was deleted by the operator"
        assert client.read_line().startswith("PART #dev ")
    alice.send_line("now in the lobby again")  # the current room falls back to the default room
    assert bob.read_line() == "MSG alice now in the lobby again"
    assert room.server.control("rooms", "delete", "#lobby", confirmed=True)["ok"] is False  # the default room stays
    assert room.server.control("rooms", "delete", "#dev", confirmed=True)["ok"] is False  # no such room now
    assert alice.command("/join #dev") == ([], "+OK")  # a new room: the old history is gone
    assert alice.command("/history") == ([], "+OK 0")


def test_rooms_topic_sets_and_announces(chat):
    room = chat()
    alice, bob = room.people("alice", "bob")
    assert alice.command("/join #dev") == ([], "+OK")
    assert room.server.control("rooms", "topic", "#dev", "set by ops")["result"] == "topic of #dev: set by ops"
    assert alice.read_line() == "TOPIC #dev * set by ops"
    assert room.server.control("rooms", "topic", "#dev")["result"] == "set by ops"
    assert_nothing_pending(bob)
    assert room.server.control("rooms", "topic", "#nope", "x")["ok"] is False
