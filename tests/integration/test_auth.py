"""The auth plugin's login dialogue, over real sockets (issue 3, "Must have" 1-5, 8, 9)."""

from __future__ import annotations

import argon2
import pytest

from plugins.auth.hashing.helper import Channel

from tests.support.auth import TOKEN, connect, logged_in_as, plugin_of, register, session_of, start

# -- 1. the greeting -------------------------------------------------------------------


def test_greeting_is_ok_and_names_the_last_user_of_the_address_as_a_hint_only(daemond_factory):
    d = start(daemond_factory)
    client, greeting = connect(d)
    assert greeting.startswith("+OK welcome; log in: /login NAME PASSWORD")
    client.close()
    register(d, "alice", "password-1")[0].close()

    again, greeting = connect(d)
    assert greeting.startswith("+OK hello again, alice; log in:")
    # a hint only: the client is not logged in, nothing reaches echo
    _, final = again.command("/anything")
    assert final.startswith("-ERR auth-required ")
    assert session_of(d, again).user is None

    other, greeting = connect(d, source="127.0.0.2")
    assert greeting.startswith("+OK welcome;")
    again.close()
    other.close()


# -- 2. /register ------------------------------------------------------------------------


def test_register_creates_the_user_logs_in_and_echo_starts(daemond_factory):
    d = start(daemond_factory)
    client, token = register(d, "Alice", "correct horse")
    assert len(token) >= 40
    assert logged_in_as(d, client) == "Alice"
    client.send(b"ping\n")
    assert client.read_line() == "ping"
    client.close()


@pytest.mark.parametrize("line, token", [
    ("/register alice other-password", "name-taken"),
    ("/register ALICE other-password", "name-taken"),  # names are case-insensitive
    ("/register bad!name password-1", "bad-name"),
    ("/register " + "a" * 33 + " password-1", "bad-name"),
    ("/register caf\u00e9 password-1", "bad-name"),
    ("/register bob short", "weak-password"),
    ("/register bob 1234567", "weak-password"),
    ("/register bob " + "x" * 1025, "bad-password"),
    ("/register bob", "usage"),
    ("/register", "usage"),
])
def test_register_refusals_keep_the_connection(daemond_factory, line, token):
    d = start(daemond_factory)
    register(d, "alice", "password-1")[0].close()
    client, _ = connect(d)
    lines, final = client.command(line)
    assert lines == []
    assert final.split()[:2] == ["-ERR", token]
    # the connection lives on, still not logged in
    assert client.command("/register bob password-2")[1].startswith("+OK registered and logged in as bob")
    client.close()


def test_minimum_password_length_is_configurable(daemond_factory):
    d = start(daemond_factory, min_password=12)
    client, _ = connect(d)
    assert client.command("/register bob elevenchars")[1].startswith("-ERR weak-password passwords need at least 12")
    assert client.command("/register bob twelve-chars")[1].startswith("+OK registered")
    client.close()


def test_registration_can_be_closed(daemond_factory):
    d = start(daemond_factory, allow_register=False)
    client, greeting = connect(d)
    assert "/register" not in greeting
    assert client.command("/register bob password-1")[1].startswith("-ERR registration-closed ")
    lines, _ = client.command("/help")
    assert not any("/register" in line for line in lines)
    # the prompt flow does not offer registration, and does not tell unknown names from known ones
    assert client.command("bob")[1] == "+OK password for bob?"
    assert client.command("password-1")[1].startswith("-ERR bad-credentials ")
    client.close()


# -- 3. /login and enumeration resistance -------------------------------------------------------


def test_login_is_case_insensitive_and_keeps_the_registered_spelling(daemond_factory):
    d = start(daemond_factory)
    register(d, "Alice", "password-1")[0].close()
    client, _ = connect(d)
    _, final = client.command("/login aLiCe password-1")
    assert final.startswith("+OK logged in as Alice token=")
    assert logged_in_as(d, client) == "Alice"
    client.close()


def test_unknown_name_and_wrong_password_get_the_same_bytes_and_the_same_work(daemond_factory, monkeypatch):
    d = start(daemond_factory)
    register(d, "alice", "password-1")[0].close()
    real_hash = plugin_of(d).store.user("alice").hash
    sent = []  # what went to the hashing helper
    original = Channel.call

    def recording_call(self, request):
        sent.append(request[:2])
        return original(self, request)

    monkeypatch.setattr(Channel, "call", recording_call)
    client, _ = connect(d)
    wrong = client.command("/login alice not-the-password")
    unknown = client.command("/login nobody not-the-password")
    assert wrong == unknown == ([], "-ERR bad-credentials wrong name or password")
    # both ran one argon2 verification: against alice's hash, and against a dummy hash
    # made with the same parameters, so "no such user" costs what "wrong password" costs
    dummy = plugin_of(d).hasher.dummy_hash
    assert sent == [["verify", real_hash], ["verify", dummy]]
    assert argon2.extract_parameters(dummy) == argon2.extract_parameters(real_hash)
    client.close()


def test_login_refusals(daemond_factory):
    d = start(daemond_factory)
    register(d, "alice", "password-1")[0].close()
    client, _ = connect(d)
    assert client.command("/login alice")[1].startswith("-ERR usage ")
    assert client.command("/login bad!name password-1")[1] == "-ERR bad-credentials wrong name or password"
    assert client.command("/login alice " + "x" * 2000)[1] == "-ERR bad-credentials wrong name or password"
    assert client.command("/login alice password-1")[1].startswith("+OK logged in as alice")
    client.close()


# -- 4. prompts, and commands before login ---------------------------------------------------


def test_prompt_flow_logs_in_an_existing_user(daemond_factory):
    d = start(daemond_factory)
    register(d, "alice", "pass word 1")[0].close()
    client, _ = connect(d)
    assert client.command("alice") == ([], "+OK password for alice?")
    assert client.command("wrong password") == ([], "-ERR bad-credentials wrong name or password")
    assert client.command("Alice") == ([], "+OK password for Alice?")
    _, final = client.command("pass word 1")
    assert final.startswith("+OK logged in as alice token=")
    client.close()


def test_prompt_flow_registers_a_new_name(daemond_factory):
    d = start(daemond_factory)
    client, _ = connect(d)
    assert client.command("bob") == ([], "+OK bob is a new name; choose a password (at least 8 characters)")
    _, final = client.command("short")
    assert final.startswith("-ERR weak-password ") and final.endswith("choose another password for bob")
    _, final = client.command("long enough")
    assert final.startswith("+OK registered and logged in as bob token=")
    client.send(b"after\n")
    assert client.read_line() == "after"
    client.close()


def test_prompt_flow_refuses_bad_names_and_a_command_cancels_the_prompt(daemond_factory):
    d = start(daemond_factory)
    register(d, "alice", "password-1")[0].close()
    client, _ = connect(d)
    assert client.command("not a name")[1].startswith("-ERR bad-name ")
    assert client.command("//alice")[1].startswith("-ERR bad-name ")  # "//x" is the plain text "/x"
    assert client.command("alice")[1] == "+OK password for alice?"
    assert client.command("/help")[1].startswith("+OK ")
    # the prompt was cancelled: this line is a name again, not alice's password
    assert client.command("password-1")[1].startswith("+OK password-1 is a new name")
    client.close()


def test_before_login_only_auth_commands_work(daemond_factory):
    d = start(daemond_factory)
    client, _ = connect(d)
    lines, final = client.command("/help")
    assert [line.split(" - ")[0] for line in lines] == [
        "HELP /login NAME PASSWORD", "HELP /register NAME PASSWORD", "HELP /login-token TOKEN", "HELP /help",
        "HELP /quit"]
    assert final.startswith("+OK 5 commands")
    for line in ("/msg bob hi", "/join #x", "/nick x"):
        assert client.command(line)[1].startswith("-ERR auth-required log in first")
    client.send(b"\xff\xfe\n")
    assert client.reply()[1].startswith("-ERR bad-encoding ")
    client.send(b"x" * 5000 + b"\n")
    assert client.reply()[1].startswith("-ERR line-too-long ")
    assert client.command("/quit") == ([], "+OK bye")
    assert client.expect_closed() == b""
    client.close()


# -- 9. [auth, echo] echoes only after login ------------------------------------------------------


def test_echo_behind_auth_only_after_login_and_bytes_behind_the_login_line_are_kept(daemond_factory):
    d = start(daemond_factory)
    register(d, "alice", "password-1")[0].close()
    client, _ = connect(d)
    client.send(b"/echo this\n")
    assert client.reply()[1].startswith("-ERR auth-required")
    client.send(b"/login alice password-1\nright behind\n\x00\xffbinary")
    assert client.read_line().startswith("+OK logged in as alice token=")
    assert client.read_line() == "right behind"
    assert client.read_bytes(len(b"\x00\xffbinary")) == b"\x00\xffbinary"
    client.close()


def test_echo_behind_auth_returns_raw_bytes_after_login(daemond_factory):
    d = start(daemond_factory)
    client, _ = register(d, "alice", "password-1")
    payload = bytes(range(256)) * 4
    client.send(payload)
    assert client.read_bytes(len(payload)) == payload
    client.close()


# -- 5. login timeout -------------------------------------------------------------------------


def test_a_client_that_does_not_log_in_in_time_is_told_and_closed(daemond_factory):
    # 2 s: the /help below must be answered before the deadline even on a loaded machine
    d = start(daemond_factory, login_timeout=2)
    client, _ = connect(d)
    assert client.command("/help")[1].startswith("+OK")  # being busy does not extend the deadline
    assert client.reply()[1] == "-ERR timeout not logged in within 2s; closing"
    assert client.expect_closed() == b""
    client.close()
    assert plugin_of(d).daemond_status(daemon=d.daemon.api)["timeouts"] == 1


# -- 8. tokens -------------------------------------------------------------------------------------


def test_a_login_token_logs_the_same_user_in_again(daemond_factory):
    d = start(daemond_factory)
    first, token = register(d, "Alice", "password-1")
    first.close()
    client, _ = connect(d)
    assert client.command(f"/login-token {token}") == ([], "+OK logged in as Alice")
    client.send(b"echo\n")
    assert client.read_line() == "echo"
    client.close()
    # tokens are stored hashed: the token itself is nowhere in the database files
    state = d.config.state_dir
    for path in state.glob("auth.db*"):
        assert token.encode() not in path.read_bytes()


def test_a_password_login_gives_a_fresh_token(daemond_factory):
    d = start(daemond_factory)
    _, token1 = register(d, "alice", "password-1")
    client, _ = connect(d)
    token2 = TOKEN.search(client.command("/login alice password-1")[1]).group(1)
    assert token2 != token1
    for token in (token1, token2):
        other, _ = connect(d)
        assert other.command(f"/login-token {token}")[1] == "+OK logged in as alice"
        other.close()
    client.close()


def test_bad_and_expired_tokens_are_refused(daemond_factory):
    d = start(daemond_factory, token_ttl=3600)
    _, token = register(d, "alice", "password-1")
    client, _ = connect(d)
    assert client.command("/login-token nonsense")[1].startswith("-ERR bad-token ")
    assert client.command("/login-token " + "x" * 500)[1].startswith("-ERR bad-token ")
    assert client.command("/login-token")[1].startswith("-ERR usage ")
    plugin = plugin_of(d)
    now = plugin.clock()
    plugin.clock = lambda: now + 3601
    assert client.command(f"/login-token {token}")[1].startswith("-ERR bad-token ")
    plugin.clock = lambda: now + 3599
    assert client.command(f"/login-token {token}")[1] == "+OK logged in as alice"
    client.close()


# -- status --------------------------------------------------------------------------------------


def test_status_reports_counts(daemond_factory):
    d = start(daemond_factory)
    register(d, "alice", "password-1")[0].close()
    client, _ = connect(d)
    client.command("/login alice wrong-password")
    client.command("/login alice password-1")
    client.close()
    status = d.daemon.status()["plugins"]["auth"]
    assert {k: status[k] for k in ("users", "tokens", "logins", "failed", "registrations", "hashes", "verifications")} == {
        "users": 1, "tokens": 2, "logins": 2, "failed": 1, "registrations": 1, "hashes": 1, "verifications": 2}
    assert status["hashing"].startswith("helper process ")


# -- 9. the API other plugins rely on ----------------------------------------------------------------


def test_plugins_after_auth_see_the_user_and_get_the_lines_behind_the_login(daemond_factory):
    d = start(daemond_factory, plugins=("auth", "tests.plugins.lineprobe"))
    register(d, "Alice", "password-1")[0].close()
    client, _ = connect(d)
    assert client.command("/nick x")[1].startswith("-ERR auth-required ")  # nothing reached the probe
    client.send(b"/login alice password-1\nhello there\n")
    # daemond_session_login runs (session.user already set) before the login's final +OK,
    # so what a plugin sends there is a data line of the reply
    assert client.read_line() == "EVENT login Alice Alice"
    assert client.read_line().startswith("+OK logged in as Alice token=")
    assert client.read_line() == "EVENT open Alice"  # the next plugin's session_open runs after login
    assert client.read_line() == "+OK Alice said hello there"
    assert client.command("/login bob x") == ([], "+OK Alice said /login bob x")  # auth is out of the way
    client.close()
