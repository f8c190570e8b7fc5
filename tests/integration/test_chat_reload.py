"""Chat across a config reload: new settings apply live, the room and its history stay."""

from __future__ import annotations

from tests.support.chat import CHEAP_ARGON2, IN_PROCESS, Room, collect, listener


def rewrite(running, mutate) -> dict:
    return running.reconfigure(mutate)


def test_a_reload_applies_motd_replay_and_limits_live_and_keeps_the_room(chat):
    room = chat(motd="old news")
    alice, bob, carol = room.people("alice", "bob", "carol")
    for i in range(5):
        alice.send_line(f"m{i}")
    collect([bob, carol], lambda i, lines: len(lines) >= 5)
    plugin = room.server.daemon.config.plugins["chat"].obj
    chat_room = plugin.room

    def change(doc):
        doc["plugins"]["chat"].update(motd="fresh news", replay=2, max_history_request=3)

    assert "plugin chat settings changed" in rewrite(room.server, change)["changes"]
    assert plugin.room is chat_room  # same room, same members, same history
    dave = room.connect("dave")
    assert dave.login_lines[0] == "NOTICE fresh news"
    assert [line.split(" ", 3)[3] for line in dave.login_lines[1:]] == ["m3", "m4"]
    for client in (alice, bob, carol):
        assert client.read_line() == "JOIN dave"
    assert bob.command("/history 100")[1] == "+OK 3"  # the new cap, for sessions that were already there
    bob.send_line("still here")
    for client in (alice, carol, dave):
        assert client.read_line() == "MSG bob still here"


def test_chat_named_first_at_a_reload_opens_its_history(daemond_factory):
    running = daemond_factory({"echo": {"plugins": ["echo"]}}, **IN_PROCESS)
    assert not (running.config.state_dir / "chat.db").exists()

    def add_chat(doc):
        doc["listeners"]["chat"] = {"host": "127.0.0.1", "port": 0, **listener()["chat"]}
        doc["plugins"] = {"auth": {"argon2": CHEAP_ARGON2}, "chat": {"rate": 0}}

    report = rewrite(running, add_chat)
    assert "plugin chat loaded" in report["changes"]
    assert (running.config.state_dir / "chat.db").exists()
    room = Room(running)
    alice, bob, carol = room.people("alice", "bob", "carol")
    alice.send_line("the room is open")
    assert bob.read_line() == "MSG alice the room is open"
    assert carol.read_line() == "MSG alice the room is open"
    room.close()
