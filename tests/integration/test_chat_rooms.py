"""Chat rooms (issue 23), line by line over real sockets: every command, every error, order per room."""

from __future__ import annotations

import re

from tests.support.chat import assert_nothing_pending, collect, messages_at_least

HIST = re.compile(r"HIST (#\S+ )?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (\S+) (.*)")


def hist(line: str) -> tuple[str | None, str, str]:
    match = HIST.fullmatch(line)
    assert match, line
    return (match.group(1) or "").strip() or None, match.group(2), match.group(3)


def test_join_makes_a_room_and_its_events_carry_its_name(chat):
    room = chat()
    alice, bob, carol = room.people("alice", "bob", "carol")
    assert alice.command("/join #Dev") == ([], "+OK")
    assert bob.command("/join #dev") == ([], "+OK")  # not case-sensitive
    assert alice.read_line() == "JOIN #Dev bob"  # shown as created
    bob.send_line("in dev")  # the current room is now #Dev
    assert alice.read_line() == "MSG #Dev bob in dev"
    assert bob.command("/me waves") == ([], "+OK")
    assert alice.read_line() == "ACTION #Dev bob waves"
    assert_nothing_pending(carol)  # not in #Dev: hears nothing of it
    # the default room keeps today's form, for everyone in it
    carol.send_line("in the lobby")
    assert alice.read_line() == "MSG carol in the lobby"
    assert bob.read_line() == "MSG carol in the lobby"


def test_join_replays_the_rooms_history_as_data_lines(chat):
    room = chat(replay=3)
    alice, bob = room.people("alice", "bob")
    assert alice.command("/join #dev") == ([], "+OK")
    for i in range(5):
        alice.send_line(f"m{i}")
    assert alice.command("/me done") == ([], "+OK")
    lines, final = bob.command("/join #dev")
    assert final == "+OK"
    assert [hist(x) for x in lines] == [("#dev", "alice", "m3"), ("#dev", "alice", "m4"), ("#dev", "alice", "/me done")]
    assert alice.read_line() == "JOIN #dev bob"
    assert bob.command("/join #dev") == ([], "+OK")  # already in: no replay, no JOIN
    assert_nothing_pending(alice)


def test_part_room_say_who_and_rooms(chat):
    room = chat()
    alice, bob, carol = room.people("alice", "bob", "carol")
    for client in (alice, bob):
        assert client.command("/join #dev") == ([], "+OK")
    assert alice.read_line() == "JOIN #dev bob"
    assert alice.command("/room #lobby") == ([], "+OK")
    alice.send_line("back in the lobby")
    assert bob.read_line() == "MSG alice back in the lobby"
    assert carol.read_line() == "MSG alice back in the lobby"
    assert alice.command("/say #dev only dev") == ([], "+OK")
    assert bob.read_line() == "MSG #dev alice only dev"
    assert alice.command("/who #dev") == ([], "+OK alice bob")
    assert alice.command("/who") == ([], "+OK alice bob carol")  # the current room
    assert carol.command("/rooms") == (["ROOM #dev 2", "ROOM #lobby 3"], "+OK")
    assert bob.command("/part") == ([], "+OK")  # bob's current room: #dev
    assert alice.read_line() == "PART #dev bob"
    assert bob.command("/part #lobby") == ([], "+OK")  # parting the default room is allowed
    assert alice.read_line() == "PART bob"
    assert carol.read_line() == "PART bob"
    assert bob.command("hello?")[1].startswith("-ERR not-in-room")
    assert bob.command("/join #lobby")[1] == "+OK"
    for client in (alice, carol):
        assert client.read_line() == "JOIN bob"


def test_topic_is_shown_set_and_announced(chat):
    room = chat()
    alice, bob, carol = room.people("alice", "bob", "carol")
    assert alice.command("/join #dev") == ([], "+OK")
    assert bob.command("/join #dev") == ([], "+OK")
    assert alice.read_line() == "JOIN #dev bob"
    assert alice.command("/topic") == ([], "+OK")
    assert alice.command("/topic #dev release \x1b[31mfriday") == ([], "+OK")
    assert bob.read_line() == "TOPIC #dev alice release friday"
    assert carol.command("/topic #dev") == ([], "+OK release friday")  # anyone may read it
    assert carol.command("/topic #dev mine now")[1].startswith("-ERR not-in-room")
    assert carol.command("/topic lobby talk") == ([], "+OK")  # the default room: today's form
    for client in (alice, bob):
        assert client.read_line() == "TOPIC carol lobby talk"
    assert carol.command("/rooms") == (["ROOM #dev 2 release friday", "ROOM #lobby 3 lobby talk"], "+OK")


def test_history_of_a_room(chat):
    room = chat()
    alice, bob = room.people("alice", "bob")
    assert alice.command("/join #dev") == ([], "+OK")
    for i in range(4):
        alice.send_line(f"d{i}")
    assert alice.command("/room #lobby") == ([], "+OK")
    alice.send_line("lobby line")
    assert bob.read_line() == "MSG alice lobby line"
    lines, final = bob.command("/history #dev 2")
    assert [hist(x) for x in lines] == [("#dev", "alice", "d2"), ("#dev", "alice", "d3")] and final == "+OK 2"
    lines, final = bob.command("/history")
    assert [hist(x) for x in lines] == [(None, "alice", "lobby line")] and final == "+OK 1"
    assert bob.command("/history #dev many")[1].startswith("-ERR bad-argument")
    assert bob.command("/history #nope")[1].startswith("-ERR no-such-room")


def test_every_room_error(chat):
    room = chat(rooms={"max_rooms": 3, "max_joined": 2})
    alice, bob = room.people("alice", "bob")
    for bad in ("dev", "#", "#" + "x" * 33, "#no!pe", "#a b"):
        assert alice.command(f"/join {bad}")[1].startswith("-ERR bad-room"), bad
    assert alice.command("/join")[1].startswith("-ERR bad-argument")
    assert alice.command("/who #nope")[1].startswith("-ERR no-such-room")
    assert alice.command("/topic #nope")[1].startswith("-ERR no-such-room")
    assert alice.command("/part #nope")[1].startswith("-ERR not-in-room")
    assert alice.command("/room #lobby2")[1].startswith("-ERR not-in-room")
    assert alice.command("/say #other hi")[1].startswith("-ERR not-in-room")
    assert alice.command("/say #lobby")[1].startswith("-ERR bad-argument")
    assert alice.command("/room")[1].startswith("-ERR bad-argument")
    assert alice.command("/join #one") == ([], "+OK")  # alice: #lobby and #one, the most (max_joined 2)
    assert alice.command("/join #two")[1].startswith("-ERR room-limit")
    assert bob.command("/join #two") == ([], "+OK")  # three rooms now, the most (max_rooms 3)
    assert bob.command("/part #lobby") == ([], "+OK")
    assert alice.read_line() == "PART bob"
    assert bob.command("/join #three")[1].startswith("-ERR room-limit")
    assert bob.command("/say #two \x1b[2J")[1].startswith("-ERR bad-text")


def test_a_room_with_no_members_and_no_history_disappears(chat):
    room = chat()
    alice, bob = room.people("alice", "bob")
    assert alice.command("/join #empty") == ([], "+OK")
    assert alice.command("/join #talked") == ([], "+OK")
    alice.send_line("something")
    assert alice.command("/topic #empty a topic alone keeps nothing") == ([], "+OK")
    assert bob.command("/rooms")[0] == ["ROOM #empty 1 a topic alone keeps nothing", "ROOM #lobby 2",
                                        "ROOM #talked 1"]
    assert alice.command("/part #empty") == ([], "+OK")
    assert alice.command("/part #talked") == ([], "+OK")
    assert bob.command("/rooms")[0] == ["ROOM #lobby 2", "ROOM #talked 0"]
    lines, final = bob.command("/join #talked")
    assert [hist(x) for x in lines] == [("#talked", "alice", "something")]


def test_create_nobody_lets_users_join_only_the_operators_rooms(chat):
    room = chat(rooms={"create": "nobody"})
    alice, bob = room.people("alice", "bob")
    assert alice.command("/join #new")[1].startswith("-ERR no-such-room")
    assert room.server.control("rooms", "create", "#new")["ok"]
    assert alice.command("/join #new") == ([], "+OK")
    assert alice.command("/part") == ([], "+OK")
    assert bob.command("/rooms")[0] == ["ROOM #lobby 2", "ROOM #new 0"]  # made by the operator: it stays
    assert bob.command("/join #new") == ([], "+OK")


def test_a_session_that_leaves_parts_every_room(chat):
    room = chat()
    alice, bob, carol = room.people("alice", "bob", "carol")
    for client in (alice, bob):
        assert client.command("/join #dev") == ([], "+OK")
    assert alice.read_line() == "JOIN #dev bob"
    bob.close()
    got = collect([alice], lambda i, lines: len(lines) >= 2)[0]
    assert sorted(got) == ["PART #dev bob", "PART bob"]
    assert carol.read_line() == "PART bob"


def test_msg_reaches_a_user_in_another_room(chat):
    room = chat()
    alice, bob = room.people("alice", "bob")
    assert bob.command("/join #dev") == ([], "+OK")
    assert bob.command("/part #lobby") == ([], "+OK")
    assert alice.read_line() == "PART bob"
    assert alice.command("/msg BOB psst") == ([], "+OK")
    assert bob.read_line() == "PRIV alice psst"


def test_help_lists_the_room_commands(chat):
    room = chat()
    (alice,) = room.people("alice")
    lines, final = alice.command("/help")
    usages = [line.split(" - ")[0] for line in lines]
    for usage in ("/join #room", "/part [#room]", "/room #room", "/say #room TEXT", "/rooms", "/topic [#room] [TEXT]"):
        assert f"HELP {usage}" in usages


SENDERS = 8
PER_SENDER = 150
ROOMS = ("#a", "#b", "#c")


def test_each_room_has_one_order_under_8_senders_in_3_rooms(chat):
    room = chat(max_history_request=SENDERS * PER_SENDER)
    senders = room.people(*[f"s{i}" for i in range(SENDERS)])
    watchers = [room.connect(f"w{r}") for r in range(len(ROOMS) * 2)]  # two per room, in that room only
    for i, sender in enumerate(senders):
        for name in ROOMS:
            assert sender.command(f"/join {name}")[1] == "+OK"
    for w, watcher in enumerate(watchers):
        assert watcher.command(f"/join {ROOMS[w // 2]}")[1] == "+OK"
        assert watcher.command("/part #lobby")[1] == "+OK"
    for client in senders + watchers:  # forget the JOIN and PART lines so far
        client.command("/who")
        collect([client], lambda i, lines: True)
    # each sender interleaves its lines across the three rooms, all senders at once
    for chunk in range(0, PER_SENDER, 25):
        for i, sender in enumerate(senders):
            sender.send(b"".join(f"/say {ROOMS[n % 3]} s{i} {n}\n".encode() for n in range(chunk, chunk + 25)))
    per_room = {name: sum(1 for n in range(PER_SENDER) if n % 3 == ROOMS.index(name)) * SENDERS for name in ROOMS}
    seen = collect(watchers, lambda w, lines: sum(x.startswith("MSG ") for x in lines) >= per_room[ROOMS[w // 2]],
                   timeout=60)
    for w in range(0, len(watchers), 2):
        name = ROOMS[w // 2]
        first = [x for x in seen[w] if x.startswith("MSG ")]
        assert [x for x in seen[w + 1] if x.startswith("MSG ")] == first  # one order per room
        assert len(first) == per_room[name] and all(x.startswith(f"MSG {name} ") for x in first)
        for i in range(SENDERS):  # each sender's lines in the order it sent them
            assert [x for x in first if x.startswith(f"MSG {name} s{i} ")] == \
                [f"MSG {name} s{i} s{i} {n}" for n in range(PER_SENDER) if n % 3 == ROOMS.index(name)]
        lines, final = watchers[w].command(f"/history {SENDERS * PER_SENDER}")
        assert final == f"+OK {per_room[name]}"
        assert [re.sub(r"^HIST (#\S+) \S+ ", r"MSG \1 ", x) for x in lines] == first  # the history's order
    # the senders: every other sender's lines of every room, each room in that room's order
    got = collect(senders, messages_at_least(sum(per_room.values()) * (SENDERS - 1) // SENDERS), timeout=60)
    for i, lines in enumerate(got):
        for w in range(0, len(watchers), 2):
            name = ROOMS[w // 2]
            order = [x for x in seen[w] if x.startswith("MSG ") and not x.startswith(f"MSG {name} s{i} ")]
            assert [x for x in lines if x.startswith(f"MSG {name} ")] == order


def test_every_room_error_token_is_documented():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = "\n".join(p.read_text() for p in (root / "plugins" / "chat").glob("*.py"))
    raised = set(re.findall(r'RoomError\(\s*"([a-z-]+)"', code))
    assert {"bad-room", "no-such-room", "not-in-room", "room-limit"} <= raised
    doc = (root / "docs" / "chat.md").read_text()
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", doc, re.MULTILINE))
    assert raised <= documented, raised - documented
