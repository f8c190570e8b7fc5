"""The chat protocol, line by line, with three or more real clients."""

from __future__ import annotations

import re

import pytest
from tests.support.chat import FAKE_LOGIN, IN_PROCESS, assert_nothing_pending, collect, login, password
from tests.support.robustness import wait_until


HIST = re.compile(r"HIST (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) (.*)")


def hist(line: str) -> tuple[str, str]:
    match = HIST.fullmatch(line)
    assert match, line
    return match.group(2), match.group(3)


def test_a_plain_line_goes_to_every_other_member_and_not_back(chat):
    room = chat()
    alice, bob, carol = room.people("alice", "bob", "carol")
    alice.send_line("hello, room")
    assert bob.read_line() == "MSG alice hello, room"
    assert carol.read_line() == "MSG alice hello, room"
    assert_nothing_pending(alice)
    carol.send_line("hi alice")
    assert alice.read_line() == "MSG carol hi alice"
    assert bob.read_line() == "MSG carol hi alice"
    assert_nothing_pending(carol)


def test_double_slash_sends_a_line_that_starts_with_a_slash(chat):
    room = chat()
    alice, bob, carol = room.people("alice", "bob", "carol")
    alice.send_line("//shrug")
    assert bob.read_line() == "MSG alice /shrug"
    assert carol.read_line() == "MSG alice /shrug"
    # the history shows it the way it is typed, so it cannot pass for a command
    lines, final = carol.command("/history 1")
    assert [hist(x) for x in lines] == [("alice", "//shrug")] and final == "+OK 1"


def test_empty_lines_are_ignored(chat):
    room = chat()
    alice, bob, carol = room.people("alice", "bob", "carol")
    alice.send_line("")
    alice.send_line("   ")
    alice.send_line("after")
    assert bob.read_line() == "MSG alice after"
    assert carol.read_line() == "MSG alice after"
    assert_nothing_pending(alice)


def test_join_is_announced_to_the_others(chat):
    room = chat()
    alice, bob = room.people("alice", "bob")
    carol = room.connect("carol")
    assert alice.read_line() == "JOIN carol"
    assert bob.read_line() == "JOIN carol"
    assert_nothing_pending(carol)


@pytest.mark.parametrize("how", ["quit", "disconnect", "kick"])
def test_part_is_announced_when_a_user_leaves(chat, how):
    room = chat()
    alice, bob, carol, dave = room.people("alice", "bob", "carol", "dave")
    if how == "quit":
        assert bob.command("/quit") == ([], "+OK bye")
        assert bob.expect_closed() == b""
    elif how == "disconnect":
        bob.close()
    else:
        [session] = [s for s in room.server.daemon.sessions() if s.user == "bob"]
        session.close("kicked")
        assert bob.expect_closed() == b""
    for other in (alice, carol, dave):
        assert other.read_line() == "PART bob"
    lines, final = alice.command("/who")
    assert final == "+OK alice carol dave"


def test_who_lists_every_user_sorted(chat):
    room = chat()
    clients = room.people("mallory", "Bob", "alice", "carol")
    for client in clients:
        assert client.command("/who") == ([], "+OK alice Bob carol mallory")  # names are case-insensitive


def test_private_message_reaches_only_its_target(chat):
    room = chat()
    alice, bob, carol = room.people("alice", "bob", "carol")
    assert alice.command("/msg bob meet me at  noon") == ([], "+OK")
    assert bob.read_line() == "PRIV alice meet me at  noon"
    assert_nothing_pending(carol)
    assert_nothing_pending(bob)
    # private messages are not history
    assert carol.command("/history") == ([], "+OK 0")


def test_private_message_errors(chat):
    room = chat()
    alice, bob, carol = room.people("alice", "bob", "carol")
    final = alice.command("/msg nobody hello")[1]
    assert final.startswith("-ERR no-such-user nobody")
    assert alice.command("/msg bob")[1].startswith("-ERR bad-argument")
    assert alice.command("/msg")[1].startswith("-ERR bad-argument")
    assert alice.command("/msg bob \x1b[2J")[1].startswith("-ERR bad-text")
    for client in (bob, carol):
        assert_nothing_pending(client)


def test_me_sends_an_action_to_the_others(chat):
    room = chat()
    alice, bob, carol = room.people("alice", "bob", "carol")
    assert alice.command("/me waves") == ([], "+OK")
    assert bob.read_line() == "ACTION alice waves"
    assert carol.read_line() == "ACTION alice waves"
    assert alice.command("/me")[1].startswith("-ERR bad-argument")
    lines, final = bob.command("/history")
    assert [hist(x) for x in lines] == [("alice", "/me waves")]


def test_history_command(chat):
    room = chat(max_history_request=30)
    alice, bob, carol = room.people("alice", "bob", "carol")
    for i in range(40):
        alice.send_line(f"message {i}")
    collect([bob, carol], lambda i, lines: len(lines) >= 40)
    lines, final = carol.command("/history")
    assert final == "+OK 20"
    assert [hist(x) for x in lines] == [("alice", f"message {i}") for i in range(20, 40)]
    lines, final = bob.command("/history 3")
    assert [hist(x) for x in lines] == [("alice", f"message {i}") for i in range(37, 40)] and final == "+OK 3"
    assert alice.command("/history 0") == ([], "+OK 0")
    lines, final = alice.command("/history 1000")  # more than max_history_request: capped
    assert final == "+OK 30" and hist(lines[0]) == ("alice", "message 10")
    for bad in ("-1", "many", "1 2", "99999999999"):
        assert alice.command(f"/history {bad}")[1].startswith("-ERR bad-argument"), bad
    # timestamps are UTC and never go back
    stamps = [HIST.fullmatch(x).group(1) for x in lines]
    assert stamps == sorted(stamps)


def test_replay_after_login_is_the_last_messages_oldest_first(chat):
    room = chat()
    alice, bob, carol = room.people("alice", "bob", "carol")
    for i in range(25):
        (alice if i % 2 else bob).send_line(f"line {i}")
    [seen] = collect([carol], lambda i, lines: len(lines) >= 25)  # alice and bob raced: carol saw the order
    dave = room.connect("dave")
    assert ["MSG {} {}".format(*hist(x)) for x in dave.login_lines] == seen[5:]
    assert carol.read_line() == "JOIN dave"
    alice_saw, bob_saw = collect([alice, bob], lambda i, lines: "JOIN dave" in lines)
    assert alice_saw == [line for line in seen if line.startswith("MSG bob ")] + ["JOIN dave"]
    assert bob_saw == [line for line in seen if line.startswith("MSG alice ")] + ["JOIN dave"]


def test_replay_count_is_configurable(chat):
    room = chat(replay=0)
    alice, bob, carol = room.people("alice", "bob", "carol")
    alice.send_line("before")
    assert bob.read_line() == "MSG alice before"
    assert room.connect("dave").login_lines == []


def test_motd_is_sent_after_login(chat):
    room = chat(motd="Welcome to the room.\n\nBe nice.")
    alice, bob, carol = room.people("alice", "bob", "carol")
    for client in (alice, bob, carol):
        assert client.login_lines == ["NOTICE Welcome to the room.", "NOTICE Be nice."]


def test_help_lists_the_chat_commands(chat):
    room = chat()
    alice, bob, carol = room.people("alice", "bob", "carol")
    lines, final = alice.command("/help")
    usages = [line.split(" - ")[0] for line in lines]
    for usage in ("HELP /who", "HELP /history [N]", "HELP /msg NAME TEXT", "HELP /me TEXT", "HELP /quit", "HELP /help"):
        assert usage in usages
    assert final.startswith("+OK")
    for client in (bob, carol):
        assert_nothing_pending(client)


def test_unknown_commands_get_an_error_and_the_connection_lives(chat):
    room = chat()
    alice, bob, carol = room.people("alice", "bob", "carol")
    assert alice.command("/frobnicate now")[1].startswith("-ERR unknown-command /frobnicate")
    alice.send_line("still here")
    assert bob.read_line() == "MSG alice still here"
    assert carol.read_line() == "MSG alice still here"


def test_bad_lines_are_answered_and_the_connection_lives(chat):
    room = chat({"max_line": 64})
    alice, bob, carol = room.people("alice", "bob", "carol")
    alice.send(b"x" * 100 + b"\n")
    assert alice.read_line().startswith("-ERR line-too-long")
    alice.send(b"\xff\xfe bad\n")
    assert alice.read_line().startswith("-ERR bad-encoding")
    alice.send_line("fine")
    assert bob.read_line() == "MSG alice fine"
    assert carol.read_line() == "MSG alice fine"


def test_a_second_login_of_a_connected_name_is_refused(chat):
    room = chat()
    alice, bob, carol = room.people("alice", "bob", "carol")
    logins = room.server.daemon.status()["plugins"]["auth"]["logins"]
    store = room.server.daemon.config.plugins["auth"].obj.store
    recorded = store.user("alice"), store.counts(0)
    intruder = room.server.client("chat")
    intruder.read_line()
    # chat refuses the login before auth answers it: the one reply is the -ERR, then the close
    assert intruder.command(f"/login ALICE {password('alice')}") == (
        [], "-ERR already-connected alice is already connected; closing")
    assert intruder.expect_closed() == b""
    assert room.server.daemon.status()["plugins"]["auth"]["logins"] == logins  # not counted as a login
    # nor recorded: no token issued, alice's last login and address as they were
    assert (store.user("alice"), store.counts(0)) == recorded
    # nor logged as a login: only its refusal and its end
    port = intruder.sock.getsockname()[1]
    log = "\n".join(room.server.daemon.logs.tail(1000))
    assert f"refused a second session for alice from 127.0.0.1:{port}" in log
    assert f"login chat 127.0.0.1:{port} " not in log
    # the first alice is untouched, and nobody saw a JOIN or a PART
    alice.send_line("still me")
    assert bob.read_line() == "MSG alice still me"
    assert carol.read_line() == "MSG alice still me"
    assert bob.command("/who") == ([], "+OK alice bob carol")


def test_a_second_login_can_replace_the_first_session(chat):
    room = chat(on_duplicate_login="replace")
    alice, bob, carol = room.people("alice", "bob", "carol")
    bob.send_line("for alice")
    assert alice.read_line() == "MSG bob for alice"
    assert carol.read_line() == "MSG bob for alice"
    new_alice = room.server.client("chat")
    lines = login(new_alice, "alice")
    assert [hist(x) for x in lines] == [("bob", "for alice")]
    old = alice.expect_closed().decode()
    assert old.startswith("NOTICE replaced") and old.count("\n") == 1
    # the others keep alice: no PART, no JOIN; her messages go to the new session
    carol.send_line("hello again")
    assert new_alice.read_line() == "MSG carol hello again"
    assert bob.read_line() == "MSG carol hello again"
    assert bob.command("/who") == ([], "+OK alice bob carol")
    new_alice.send_line("it's me")
    assert bob.read_line() == "MSG alice it's me"
    assert carol.read_line() == "MSG alice it's me"


def test_lines_before_login_are_refused_by_chat_alone(daemond_factory):
    running = daemond_factory({"chat": {"plugins": ["chat"]}}, {"chat": {"rate": 0}}, **IN_PROCESS)
    clients = [running.client("chat") for _ in range(3)]
    try:
        for client in clients:
            assert client.command("hello")[1].startswith("-ERR auth-required")
            assert client.command("/who")[1].startswith("-ERR auth-required")
            assert client.command("/quit") == ([], "+OK bye")
    finally:
        for client in clients:
            client.close()


def test_stop_sends_every_client_a_last_notice(chat):
    room = chat()
    clients = room.people("alice", "bob", "carol")
    newcomer = room.server.client("chat")  # still at the login prompt
    room.clients["newcomer"] = newcomer
    assert newcomer.read_line().startswith("+OK")
    room.server.stop()
    for client in clients + [newcomer]:
        assert client.expect_closed().decode() == "NOTICE server shutting down, bye\n"


def test_status_reports_users_and_messages(chat):
    room = chat()
    alice, bob, carol = room.people("alice", "bob", "carol")
    alice.send_line("one")
    assert bob.read_line() == "MSG alice one"
    status = room.server.daemon.status()["plugins"]["chat"]
    assert status["users"] == 3 and status["last_message"] == 1


def test_chat_works_behind_any_login_plugin(chat):
    """Chat needs only the core's login API (session.login, daemond_session_login), not auth."""
    room = chat(plugins=[FAKE_LOGIN, "chat"])
    clients = []
    for name in ("alice", "bob", "carol"):
        client = room.server.client("chat")
        room.clients[name] = client
        assert client.read_line().startswith("+OK")
        assert client.command(f"/nick {name}") == ([], f"+OK logged in as {name}")
        for earlier in clients:
            assert earlier.read_line() == f"JOIN {name}"
        clients.append(client)
    alice, bob, carol = clients
    alice.send_line("no passwords here")
    assert bob.read_line() == "MSG alice no passwords here"
    assert carol.read_line() == "MSG alice no passwords here"
    assert bob.command("/who") == ([], "+OK alice bob carol")
    carol.close()
    assert alice.read_line() == "PART carol"
    assert bob.read_line() == "PART carol"


def test_joins_and_parts_can_be_limited_to_small_rooms(chat):
    room = chat(announce_limit=2)
    alice, bob = room.people("alice", "bob")  # a room of two: JOIN bob is sent
    carol = room.connect("carol")  # three: silence
    assert carol.login_lines == []
    assert_nothing_pending(alice)
    carol.close()  # the room had three: silence
    # her session leaves the room (close hooks) before it leaves the daemon's list
    assert wait_until(lambda: not [s for s in room.server.daemon.sessions() if s.user == "carol"], 10)
    bob.send_line("after carol left")
    assert alice.read_line() == "MSG bob after carol left"
    assert bob.command("/who") == ([], "+OK alice bob")
    bob.close()  # the room had two: PART bob
    assert alice.read_line() == "PART bob"
