"""The IRC front end against the Modern IRC client protocol, numeric by numeric, with exact formats.

Registration (CAP, NICK, USER, PASS, SASL), channels (JOIN, PART, TOPIC, NAMES, LIST) and
messaging (PRIVMSG, NOTICE), the queries (WHO, WHOIS, MODE, AWAY, PING), and every numeric the
plugin sends, each as docs/irc.md shows it. A raw socket on one side, the line protocol on the
other: nothing here is interpreted by a client library.
"""

from __future__ import annotations

import re
import socket
import threading

import pytest

from tests.support.irc import SERVER as S
from tests.support.irc import IrcClient, line_user, password, register_user, sasl_plain, start
from tests.support.robustness import wait_until

WELCOME_TAIL = [
    f":{S} 004 alice {S} daemond-0.1.0 i nt",
    f":{S} 005 alice CASEMAPPING=ascii CHANTYPES=# CHANNELLEN=33 NICKLEN=32 NETWORK=daemond PREFIX=() "
    "CHANMODES=,,,nt UTF8ONLY TARGMAX=JOIN:,NAMES:1,NOTICE:4,PART:,PRIVMSG:4,WHOIS:1 :are supported by this server",
]
TIME = r"@time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "


def irc(server, **kwargs) -> IrcClient:
    return IrcClient(server.address("irc"), **kwargs)


def logged_in(server, nick: str, caps: tuple[str, ...] = ()) -> IrcClient:
    """An IRC client registered as ``nick`` (registered over the line protocol first, if new)."""
    register_user(server, nick)
    client = irc(server)
    client.register(nick, password(nick), caps=caps)
    return client


@pytest.fixture
def server(daemond_factory):
    return start(daemond_factory)


# -- registration ---------------------------------------------------------------------


def test_registration_with_pass_sends_001_to_005_and_422(server):
    register_user(server, "alice")
    with irc(server) as client:
        lines = client.register("alice", password("alice"))
    assert lines[0] == f":{S} 001 alice :Welcome to the daemond IRC network, alice!alice@{S}"
    assert lines[1] == f":{S} 002 alice :Your host is {S}, running version daemond-0.1.0"
    assert re.fullmatch(rf":{S} 003 alice :This server was created \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC", lines[2])
    assert lines[3:5] == WELCOME_TAIL
    assert lines[5:] == [f":{S} 422 alice :MOTD File is missing"]


def test_the_motd_is_chats(daemond_factory):
    server = start(daemond_factory, chat={"motd": "Be nice.\n\nNo spam."}, network="TestNet")
    register_user(server, "alice")
    with irc(server) as client:
        lines = client.register("alice", password("alice"))
        assert lines[0].endswith("Welcome to the TestNet IRC network, alice!alice@irc.test.local")
        assert "NETWORK=TestNet" in lines[4]
        assert lines[5:] == [f":{S} 375 alice :- {S} Message of the day - ", f":{S} 372 alice :- Be nice.",
                             f":{S} 372 alice :- No spam.", f":{S} 376 alice :End of /MOTD command."]
        client.send("MOTD")
        assert client.until(" 376 ")[0] == f":{S} 375 alice :- {S} Message of the day - "


def test_cap_negotiation_holds_registration_until_cap_end(server):
    register_user(server, "alice")
    with irc(server) as client:
        client.send("CAP LS 302")
        assert client.read() == f":{S} CAP * LS :batch echo-message message-tags sasl=PLAIN server-time"
        client.send("CAP LS")
        assert client.read() == f":{S} CAP * LS :batch echo-message message-tags sasl server-time"
        client.send(f"PASS {password('alice')}")
        client.send("NICK alice")
        client.send("USER alice 0 * :Alice")
        client.send("CAP REQ :server-time echo-message")
        assert client.read() == f":{S} CAP * ACK :server-time echo-message"
        client.send("CAP REQ :server-time bogus")
        assert client.read() == f":{S} CAP * NAK :server-time bogus"
        client.send("CAP REQ :-echo-message")
        assert client.read() == f":{S} CAP * ACK :-echo-message"
        client.send("CAP LIST")
        assert client.read() == f":{S} CAP * LIST :server-time"
        client.send("CAP FROB")
        assert client.read() == f":{S} 410 * FROB :Invalid CAP command"
        client.send("PING still-negotiating")  # no 001 before CAP END
        assert client.read() == f":{S} PONG {S} still-negotiating"
        client.send("CAP END")
        assert client.read().startswith(f":{S} 001 alice ")


def test_a_pass_with_spaces_sent_without_a_colon_is_the_whole_password(daemond_factory):
    # irssi sends "/connect HOST PORT 'correct horse' alice" as "PASS correct horse"
    server = start(daemond_factory)
    register_user(server, "alice", "correct horse")
    with irc(server) as client:
        client.send("PASS correct horse")
        client.send("NICK alice")
        client.send("USER alice 0 * :Alice")
        assert client.read().startswith(f":{S} 001 alice ")


def test_sasl_plain_900_903_and_then_907(server):
    register_user(server, "Alice")
    with irc(server) as client:
        client.send("CAP LS 302")
        client.read()
        client.send("NICK alice")
        client.send("USER alice 0 * :Alice")
        client.send("CAP REQ sasl")
        assert client.read() == f":{S} CAP * ACK :sasl"
        client.send("AUTHENTICATE PLAIN")
        assert client.read() == "AUTHENTICATE +"
        client.send("AUTHENTICATE " + sasl_plain("alice", password("alice")))
        assert client.read() == f":{S} 900 * Alice!Alice@{S} Alice :You are now logged in as Alice"
        assert client.read() == f":{S} 903 * :SASL authentication successful"
        client.send("AUTHENTICATE PLAIN")
        assert client.read() == f":{S} 907 * :You have already authenticated using SASL"
        client.send("CAP END")
        assert client.read() == f":{S} 001 Alice :Welcome to the daemond IRC network, Alice!Alice@{S}"


def _sasl_start(client: IrcClient) -> None:
    client.send("CAP REQ :sasl")
    client.read()
    client.send("AUTHENTICATE PLAIN")
    assert client.read() == "AUTHENTICATE +"


def test_sasl_failures_904_905_906_908(server):
    register_user(server, "alice")
    with irc(server) as client:
        client.send("NICK alice")
        client.send("AUTHENTICATE PLAIN")  # before CAP REQ sasl
        assert client.read() == f":{S} 904 * :SASL authentication failed"
        _sasl_start(client)
        client.send("AUTHENTICATE " + sasl_plain("alice", "wrong password"))
        assert client.read() == f":{S} 904 * :SASL authentication failed: wrong name or password"
        client.send("AUTHENTICATE EXTERNAL")
        assert client.read() == f":{S} 908 * PLAIN :are available SASL mechanisms"
        assert client.read() == f":{S} 904 * :SASL authentication failed"
        client.send("AUTHENTICATE PLAIN")
        client.read()
        client.send("AUTHENTICATE *")
        assert client.read() == f":{S} 906 * :SASL authentication aborted"
        client.send("AUTHENTICATE PLAIN")
        client.read()
        for _ in range(4):
            client.send("AUTHENTICATE " + "A" * 400)
        client.send("AUTHENTICATE " + "A" * 400)
        assert client.read() == f":{S} 905 * :SASL message too long"
        client.send("AUTHENTICATE PLAIN")
        client.read()
        client.send("AUTHENTICATE not*base64")
        assert client.read() == f":{S} 904 * :SASL authentication failed"
        client.send("AUTHENTICATE PLAIN")  # a failure leaves the client free to try again
        client.read()
        client.send("AUTHENTICATE " + sasl_plain("alice", password("alice")))
        assert " 900 " in client.read() and " 903 " in client.read()


def test_a_sasl_message_of_exactly_400_bytes_is_continued(server):
    name = "n" * 32
    register_user(server, name)
    secret = password(name)
    padding = "x" * (300 - 34 - len(secret))  # a wrong password the length that makes 400 base64 bytes
    encoded = sasl_plain(name, secret + padding)
    assert len(encoded) == 400, len(encoded)
    with irc(server) as client:
        client.send(f"NICK {name}")
        _sasl_start(client)
        client.send(f"AUTHENTICATE {encoded}")
        client.send("AUTHENTICATE +")  # the end of a message whose length is a multiple of 400
        assert client.read() == f":{S} 904 * :SASL authentication failed: wrong name or password"


def test_wrong_pass_464_error_and_closed(server):
    register_user(server, "alice")
    with irc(server) as client:
        client.send("PASS nope")
        client.send("NICK alice")
        client.send("USER alice 0 * :Alice")
        assert client.closed() == [f":{S} 464 * :wrong name or password",
                                   f"ERROR :Closing Link: {S} (Bad password)"]


def test_no_password_without_guests_464(server):
    with irc(server) as client:
        client.send("NICK alice")
        client.send("USER alice 0 * :Alice")
        assert client.closed() == [f":{S} 464 * :Password required: log in with SASL PLAIN or PASS",
                                   f"ERROR :Closing Link: {S} (Password required)"]


def test_guests_chat_without_a_password_but_never_with_a_registered_name(daemond_factory):
    server = start(daemond_factory, guests=True)
    register_user(server, "alice")
    with irc(server) as guest, irc(server) as other:
        guest.send("NICK alice")
        guest.send("USER x 0 * :X")
        assert guest.read() == f":{S} 433 * alice :Nickname is registered: log in with SASL or PASS to use it"
        guest.send("NICK visitor")
        assert guest.until("MOTD")[0] == f":{S} 001 visitor :Welcome to the daemond IRC network, visitor!visitor@{S}"
        other.send("NICK Visitor")
        other.send("USER x 0 * :X")
        assert other.read() == f":{S} 433 * Visitor :Nickname is already in use"
        bob = line_user(server, "bob")
        guest.send("PRIVMSG bob :hello from a guest")
        assert bob.read_line() == "PRIV visitor hello from a guest"


def test_nickname_errors_431_432_and_no_change_after_registration(server):
    with irc(server) as client:
        client.send("NICK")
        assert client.read() == f":{S} 431 * :No nickname given"
        client.send("NICK bad!nick")
        assert client.read() == f":{S} 432 * bad!nick :Erroneous nickname"
        client.send("NICK " + "n" * 33)
        assert client.read() == f":{S} 432 * {'n' * 33} :Erroneous nickname"
    with logged_in(server, "alice") as client:
        client.send("NICK other")
        assert client.read() == \
            f":{S} 432 alice other :Nickname changes are not supported: your nickname is your account"


def test_451_461_421_462(server):
    with irc(server) as client:
        client.send("JOIN #lobby")
        assert client.read() == f":{S} 451 * :You have not registered"
        client.send("USER alice")
        assert client.read() == f":{S} 461 * USER :Not enough parameters"
    with logged_in(server, "alice") as client:
        client.send("FROBNICATE x")
        assert client.read() == f":{S} 421 alice FROBNICATE :Unknown command"
        client.send("JOIN")
        assert client.read() == f":{S} 461 alice JOIN :Not enough parameters"
        client.send("USER a 0 * :b")
        assert client.read() == f":{S} 462 alice :You may not reregister"
        client.send("PASS again")
        assert client.read() == f":{S} 462 alice :You may not reregister"


def test_a_line_over_512_bytes_gets_417_and_the_connection_lives(server):
    with logged_in(server, "alice") as client:
        client.send("PRIVMSG #lobby :" + "x" * 600)
        assert client.read() == f":{S} 417 alice :Input line was too long"
        client.send("@" + "a" * 3000 + " PING tagged")  # tags do not count towards the 512 bytes
        assert client.read() == f":{S} PONG {S} tagged"
        client.send("PING :" + "y" * 5000)  # longer than the listener's max_line
        assert client.read() == f":{S} 417 alice :Input line was too long"
        client.send_bytes(b"PRIVMSG #lobby :\xff\xfe\r\n")
        assert client.read() == f":{S} NOTICE alice :Lines must be UTF-8 text; line discarded"
        client.send("PING alive")
        assert client.read() == f":{S} PONG {S} alive"


def test_failed_logins_over_irc_and_the_line_protocol_are_throttled_together(daemond_factory):
    server = start(daemond_factory, auth={"max_attempts": 3, "cooldown": 600})
    register_user(server, "alice")
    for _ in range(2):
        with server.client("chat") as line:
            line.read_line()
            assert line.command("/login alice wrong-one")[1] == "-ERR bad-credentials wrong name or password"
    with irc(server) as client:  # the third failure: now alice is throttled
        client.send("PASS wrong-two")
        client.send("NICK alice")
        client.send("USER alice 0 * :A")
        assert client.closed()[0] == f":{S} 464 * :wrong name or password"
    with irc(server) as client:  # even with the right password, over IRC...
        client.send("CAP REQ sasl")
        client.read()
        client.send("NICK alice")
        client.send("AUTHENTICATE PLAIN")
        client.read()
        client.send("AUTHENTICATE " + sasl_plain("alice", password("alice")))
        assert re.fullmatch(rf":{S} 904 \* :SASL authentication failed: too many failed logins "
                            r"(from 127\.0\.0\.1|for this name); "
                            r"try again in \d+s", client.read())
    with server.client("chat") as line:  # ... and over the line protocol
        line.read_line()
        assert line.command(f"/login alice {password('alice')}")[1].startswith("-ERR too-many-attempts ")


def test_require_tls_refuses_a_password_over_plaintext(daemond_factory):
    server = start(daemond_factory, auth={"require_tls": True})
    with irc(server) as client:
        client.send("PASS whatever-it-is")
        client.send("NICK alice")
        client.send("USER alice 0 * :A")
        assert client.closed()[0] == \
            f":{S} 464 * :passwords and tokens are only taken over TLS here; connect to this server's TLS port"
    assert "whatever-it-is" not in server.config.log_file.read_text()


def test_check_config_names_what_irc_needs(daemond_check_config):
    result = daemond_check_config({"irc": {"plugins": ["irc"]}})
    assert result.returncode == 1
    assert "plugin 'irc' needs the plugin 'auth' loaded too: list it in a listener's plugins: or give it a " \
           "plugins.auth: section" in result.stderr
    assert "plugin 'irc' needs the plugin 'chat' loaded too" in result.stderr
    result = daemond_check_config({"irc": {"plugins": ["irc"]}, "chat": {"plugins": ["auth", "chat"]}})
    assert result.returncode == 0, result.stderr


# -- channels --------------------------------------------------------------------------


def test_join_names_and_the_mapping_both_ways(server):
    bob = line_user(server, "bob")
    with logged_in(server, "alice") as alice:
        alice.send("JOIN #lobby")
        assert alice.until(" 366 ") == [f":alice!alice@{S} JOIN #lobby", f":{S} 353 alice = #lobby :alice bob",
                                         f":{S} 366 alice #lobby :End of /NAMES list"]
        assert bob.read_line() == "JOIN alice"
        bob.send_line("hi alice")
        assert alice.read() == f":bob!bob@{S} PRIVMSG #lobby :hi alice"
        bob.send_line("/me waves")
        bob.read_line()
        assert alice.read() == f":bob!bob@{S} PRIVMSG #lobby :\x01ACTION waves\x01"
        alice.send("PRIVMSG #lobby :hello bob")
        assert bob.read_line() == "MSG alice hello bob"
        alice.send("PRIVMSG #LOBBY :\x01ACTION nods\x01")
        assert bob.read_line() == "ACTION alice nods"
        alice.send("NOTICE #lobby :a notice")
        assert bob.read_line() == "MSG alice a notice"
        alice.send("PRIVMSG #lobby :\x1b[31mred\x03 and \x02bold\x02")  # sanitised exactly as chat does
        assert bob.read_line() == "MSG alice red and bold"
        bob.command("/join #dev")
        alice.send("JOIN #dev")
        alice.until(" 366 ")
        assert bob.read_line() == "JOIN #dev alice"
        bob.command("/say #dev in dev")
        assert alice.read() == f":bob!bob@{S} PRIVMSG #dev :in dev"
        alice.send("PART #dev :bye now")
        assert alice.read() == f":alice!alice@{S} PART #dev :bye now"
        assert bob.read_line() == "PART #dev alice"
        bob.command("/part #dev")
        bob.command("/quit")
        assert alice.read() == f":bob!bob@{S} PART #lobby"


def test_a_line_users_join_and_part_reach_irc(server):
    with logged_in(server, "alice") as alice:
        alice.send("JOIN #lobby")
        alice.until(" 366 ")
        bob = line_user(server, "bob")
        assert alice.read() == f":bob!bob@{S} JOIN #lobby"
        bob.command("/join #dev")
        bob.command("/part #lobby")
        assert alice.read() == f":bob!bob@{S} PART #lobby"


def test_join_several_join_0_and_the_channel_errors(daemond_factory):
    server = start(daemond_factory, chat={"rooms": {"create": "anyone", "max_rooms": 1000, "max_joined": 2}})
    with logged_in(server, "alice") as alice:
        alice.send("JOIN #a,#B")
        assert alice.until(" 366 ")[0] == f":alice!alice@{S} JOIN #a"
        assert alice.until(" 366 ")[0] == f":alice!alice@{S} JOIN #B"
        alice.send("JOIN #c")
        assert alice.read() == f":{S} 405 alice #c :You have joined too many channels"
        alice.send("JOIN nochannel")
        assert alice.read() == f":{S} 403 alice nochannel :No such channel"
        alice.send("PART #lobby")
        assert alice.read() == f":{S} 442 alice #lobby :You're not on that channel"
        alice.send("PRIVMSG #lobby :hi")
        assert alice.read() == f":{S} 404 alice #lobby :Cannot send to channel"
        alice.send("PRIVMSG #nowhere :hi")
        assert alice.read() == f":{S} 403 alice #nowhere :No such channel"
        alice.send("JOIN 0")
        assert [alice.read(), alice.read()] == [f":alice!alice@{S} PART #a", f":alice!alice@{S} PART #B"]


def test_topic_331_332_333_and_the_mapping(server):
    bob = line_user(server, "bob")
    with logged_in(server, "alice") as alice:
        alice.send("TOPIC #lobby")
        assert alice.read() == f":{S} 331 alice #lobby :No topic is set"
        alice.send("TOPIC #lobby :ignored")
        assert alice.read() == f":{S} 442 alice #lobby :You're not on that channel"
        alice.send("JOIN #lobby")
        alice.until(" 366 ")
        bob.read_line()
        bob.command("/topic #lobby all about bees")
        assert alice.read() == f":bob!bob@{S} TOPIC #lobby :all about bees"
        alice.send("TOPIC #lobby")
        assert alice.read() == f":{S} 332 alice #lobby :all about bees"
        assert re.fullmatch(rf":{S} 333 alice #lobby bob \d+", alice.read())
        alice.send("TOPIC #lobby :wasps")
        assert alice.read() == f":alice!alice@{S} TOPIC #lobby :wasps"
        assert bob.read_line() == "TOPIC alice wasps"
        alice.send("PART #lobby")
        alice.read()
        alice.send("JOIN #lobby")  # the topic comes with the JOIN
        lines = alice.until(" 366 ")
        assert lines[1] == f":{S} 332 alice #lobby :wasps"
        assert re.fullmatch(rf":{S} 333 alice #lobby alice \d+", lines[2])


def test_the_operator_deleting_a_room_or_setting_its_topic(server):
    with logged_in(server, "alice") as alice:
        alice.send("JOIN #gone")
        alice.until(" 366 ")
        assert server.control("rooms", "topic", "#gone", "set by the operator")["ok"]
        assert alice.read() == f":{S} TOPIC #gone :set by the operator"
        alice.send("TOPIC #gone")
        assert alice.read() == f":{S} 332 alice #gone :set by the operator"
        assert re.fullmatch(rf":{S} 333 alice #gone {S} \d+", alice.read())
        assert server.control("rooms", "delete", "#gone", confirmed=True)["ok"]
        assert alice.read() == f":{S} KICK #gone alice :#gone was deleted by the operator"
        alice.send("PRIVMSG #gone :anyone?")
        assert alice.read() == f":{S} 403 alice #gone :No such channel"


def test_the_operators_kick_closes_with_its_reason_in_irc_terms(server):
    with logged_in(server, "alice") as alice:
        result = server.control("kick", "alice", reason="spamming the room")
        assert result["ok"] and result["result"]["sessions"] == 1, result
        # the reason, as an IRC client shows it, and no line-protocol NOTICE before it
        assert alice.closed() == [f"ERROR :Closing Link: {S} (Kicked by the operator: spamming the room)"]


def test_names_splits_at_512_bytes(server):
    users = [line_user(server, f"user-with-a-long-name-{i:02d}") for i in range(40)]
    with logged_in(server, "alice") as alice:
        alice.send("NAMES #lobby")
        lines = alice.until(" 366 ")
        assert len(lines) > 2 and all(len(line.encode()) <= 510 for line in lines)
        names = " ".join(line.partition(" :")[2] for line in lines[:-1]).split()
        assert len(names) == 40 and all(line.startswith(f":{S} 353 alice = #lobby :") for line in lines[:-1])
        assert lines[-1] == f":{S} 366 alice #lobby :End of /NAMES list"
        alice.send("NAMES #nothing")
        assert alice.read() == f":{S} 366 alice #nothing :End of /NAMES list"
        alice.send("NAMES")
        assert alice.read() == f":{S} 366 alice * :End of /NAMES list"
    assert len(users) == 40


def test_list_321_322_323(server):
    bob = line_user(server, "bob")
    bob.command("/join #dev")
    bob.command("/topic #dev the dev room")
    with logged_in(server, "alice") as alice:
        alice.send("LIST")
        assert alice.until(" 323 ") == [f":{S} 321 alice Channel :Users  Name", f":{S} 322 alice #dev 1 :the dev room",
                                         f":{S} 322 alice #lobby 1 :", f":{S} 323 alice :End of /LIST"]
        alice.send("LIST #dev")
        assert alice.until(" 323 ")[1:] == [f":{S} 322 alice #dev 1 :the dev room", f":{S} 323 alice :End of /LIST"]


# -- messages -----------------------------------------------------------------------------


def test_private_messages_both_ways_and_401_411_412(server):
    bob = line_user(server, "bob")
    with logged_in(server, "alice") as alice:
        alice.send("PRIVMSG Bob :psst")
        assert bob.read_line() == "PRIV alice psst"
        alice.send("PRIVMSG bob :\x01ACTION whispers\x01")
        assert bob.read_line() == "PRIV alice * alice whispers"
        assert bob.command("/msg alice hi back") == ([], "+OK")
        assert alice.read() == f":bob!bob@{S} PRIVMSG alice :hi back"
        alice.send("PRIVMSG nobody :hello?")
        assert alice.read() == f":{S} 401 alice nobody :No such nick/channel"
        alice.send("PRIVMSG")
        assert alice.read() == f":{S} 411 alice :No recipient given (PRIVMSG)"
        alice.send("PRIVMSG bob")
        assert alice.read() == f":{S} 412 alice :No text to send"
        alice.send("PRIVMSG bob :\u200b")
        assert alice.read() == f":{S} 412 alice :No text to send"
        alice.send("NOTICE nobody :no reply to a notice")
        alice.send("NOTICE #nowhere :nor here")
        alice.send("PING after-notices")
        assert alice.read() == f":{S} PONG {S} after-notices"


def test_messages_between_two_irc_users(server):
    with logged_in(server, "alice") as alice, logged_in(server, "carol") as carol:
        alice.send("PRIVMSG carol :hello carol")
        assert carol.read() == f":alice!alice@{S} PRIVMSG carol :hello carol"
        carol.send("JOIN #lobby")
        carol.until(" 366 ")
        alice.send("JOIN #lobby")
        alice.until(" 366 ")
        assert carol.read() == f":alice!alice@{S} JOIN #lobby"
        alice.send("PRIVMSG #lobby hi")
        assert carol.read() == f":alice!alice@{S} PRIVMSG #lobby :hi"


def test_echo_message_and_server_time(server):
    bob = line_user(server, "bob")
    with logged_in(server, "alice", caps=("echo-message", "server-time")) as alice:
        alice.send("JOIN #lobby")
        assert re.fullmatch(TIME + f":alice!alice@{S} JOIN #lobby", alice.read())
        alice.until(" 366 ")
        alice.send("PRIVMSG #lobby :\x1b[1mhi\x1b[0m all")
        assert re.fullmatch(TIME + f":alice!alice@{S} PRIVMSG #lobby :hi all", alice.read())
        alice.send("PRIVMSG bob :\x01ACTION waves\x01")
        assert re.fullmatch(TIME + f":alice!alice@{S} PRIVMSG bob :\x01ACTION waves\x01", alice.read())
        bob.read_line()
        bob.send_line("timed")
        assert re.fullmatch(TIME + f":bob!bob@{S} PRIVMSG #lobby :timed", alice.read())


def test_the_replay_in_a_batch_with_server_time_and_as_notices_without(server):
    bob = line_user(server, "bob")
    bob.send_line("first")
    bob.send_line("/me second")
    bob.read_line()
    with logged_in(server, "alice", caps=("server-time", "batch")) as alice:
        alice.send("JOIN #lobby")
        lines = alice.until("BATCH -")
        batch = re.fullmatch(rf":{S} BATCH \+(\S+) chathistory #lobby", lines[3])
        assert batch, lines
        ref = batch.group(1)
        assert re.fullmatch(rf"@time=\S+;batch={ref} :bob!bob@{S} PRIVMSG #lobby :first", lines[4])
        assert re.fullmatch(rf"@time=\S+;batch={ref} :bob!bob@{S} PRIVMSG #lobby :\x01ACTION second\x01", lines[5])
        assert lines[6] == f":{S} BATCH -{ref}"
    with logged_in(server, "carol", caps=("server-time",)) as carol:
        carol.send("JOIN #lobby")
        lines = carol.until("second")
        assert re.fullmatch(r"@time=\S+ " + f":bob!bob@{S} PRIVMSG #lobby :first", lines[-2])
    with logged_in(server, "dave") as dave:
        dave.send("JOIN #lobby")
        lines = dave.until("second")
        assert re.fullmatch(rf":{S} NOTICE #lobby :\[\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\] <bob> first", lines[-2])
        assert re.fullmatch(rf":{S} NOTICE #lobby :\[\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\] \* bob second", lines[-1])


def test_a_join_during_a_flow_of_messages_gets_join_names_replay_then_the_rest_without_gap(daemond_factory):
    server = start(daemond_factory, chat={"replay": 1000})  # a long replay: a wide window for a race
    bob = line_user(server, "bob")
    register_user(server, "alice")
    alice = irc(server)
    alice.register("alice", password("alice"), caps=("server-time", "batch"))
    total = 3000

    started = threading.Event()

    def talk():
        for i in range(total):
            bob.send_line(f"m{i}")
            if i == 1500:
                started.set()

    talker = threading.Thread(target=talk)
    talker.start()
    started.wait(10)
    alice.send("JOIN #lobby")  # somewhere in the middle of the flow
    talker.join()
    lines = alice.until(f"m{total - 1}")
    assert lines[0].endswith(f":alice!alice@{S} JOIN #lobby"), lines[:3]
    assert lines[1:3] == [f":{S} 353 alice = #lobby :alice bob", f":{S} 366 alice #lobby :End of /NAMES list"]
    said = [int(line.rpartition(":m")[2]) for line in lines[3:] if " PRIVMSG #lobby :m" in line]
    assert said == list(range(said[0], total)), said[:30]  # the replay runs on into the live messages
    alice.close()


def test_a_long_message_from_a_line_user_is_cut_to_512_bytes(daemond_factory):
    server = start(daemond_factory)
    bob = line_user(server, "bob")
    with logged_in(server, "alice") as alice:
        alice.send("JOIN #lobby")
        alice.until(" 366 ")
        bob.send_line("é" * 1500)
        line = alice.read()
        assert len(line.encode()) <= 510 and line.startswith(f":bob!bob@{S} PRIVMSG #lobby :éé")


# -- queries ------------------------------------------------------------------------------


def test_who_whois_away_301_305_306(server):
    bob = line_user(server, "bob")
    bob.command("/join #dev")
    with logged_in(server, "alice") as alice, logged_in(server, "carol") as carol:
        alice.send("JOIN #lobby")
        alice.until(" 366 ")
        alice.send("AWAY :out for lunch")
        assert alice.read() == f":{S} 306 alice :You have been marked as being away"
        carol.send("WHO #lobby")
        assert carol.until(" 315 ") == [f":{S} 352 carol #lobby alice {S} {S} alice G :0 Real alice",
                                         f":{S} 352 carol #lobby bob {S} {S} bob H :0 bob",
                                         f":{S} 315 carol #lobby :End of WHO list"]
        carol.send("WHO bob")
        assert carol.until(" 315 ") == [f":{S} 352 carol * bob {S} {S} bob H :0 bob",
                                         f":{S} 315 carol bob :End of WHO list"]
        carol.send("WHOIS alice")
        assert carol.until(" 318 ") == [f":{S} 311 carol alice alice {S} * :Real alice",
                                         f":{S} 319 carol alice :#lobby", f":{S} 312 carol alice {S} :daemond",
                                         f":{S} 301 carol alice :out for lunch",
                                         f":{S} 318 carol alice :End of /WHOIS list"]
        carol.send("WHOIS BOB")
        assert carol.until(" 318 ") == [f":{S} 311 carol bob bob {S} * :bob", f":{S} 319 carol bob :#lobby #dev",
                                         f":{S} 312 carol bob {S} :daemond", f":{S} 318 carol bob :End of /WHOIS list"]
        carol.send("WHOIS nobody")
        assert carol.until(" 318 ") == [f":{S} 401 carol nobody :No such nick/channel",
                                         f":{S} 318 carol nobody :End of /WHOIS list"]
        carol.send("PRIVMSG alice :are you there?")
        assert carol.read() == f":{S} 301 carol alice :out for lunch"
        assert alice.read() == f":carol!carol@{S} PRIVMSG alice :are you there?"
        alice.send("AWAY")
        assert alice.read() == f":{S} 305 alice :You are no longer marked as being away"


def test_mode_queries_324_368_482_221_501_502(server):
    bob = line_user(server, "bob")
    with logged_in(server, "alice") as alice:
        alice.send("MODE #lobby")
        assert alice.read() == f":{S} 324 alice #lobby +nt"
        alice.send("MODE #lobby b")
        assert alice.read() == f":{S} 368 alice #lobby :End of channel ban list"
        alice.send("MODE #lobby +m")
        assert alice.read() == f":{S} 482 alice #lobby :You're not channel operator"
        alice.send("MODE #nowhere")
        assert alice.read() == f":{S} 403 alice #nowhere :No such channel"
        alice.send("MODE alice")
        assert alice.read() == f":{S} 221 alice +i"
        alice.send("MODE alice +i")  # irssi's default usermode at every connect: already so, no reply
        alice.send("MODE alice +x")
        assert alice.read() == f":{S} 501 alice :Unknown MODE flag"
        alice.send("MODE bob +i")
        assert alice.read() == f":{S} 502 alice :Cant change mode for other users"
        alice.send("MODE nobody")
        assert alice.read() == f":{S} 401 alice nobody :No such nick/channel"
    bob.close()


def test_ping_pong_409_and_quit_error(server):
    with logged_in(server, "alice") as alice:
        alice.send("PING :a token")
        assert alice.read() == f":{S} PONG {S} :a token"
        alice.send("PING")
        assert alice.read() == f":{S} 409 alice :No origin specified"
        alice.send("QUIT :see you")
        assert alice.closed() == [f"ERROR :Closing Link: {S} (Quit: see you)"]


def test_the_server_pings_a_silent_client_and_closes_on_no_answer(daemond_factory):
    server = start(daemond_factory, ping_interval=1, ping_timeout=1)
    with logged_in(server, "alice") as alice:
        assert alice.read() == f"PING {S}"
        alice.send(f"PONG {S}")
        assert alice.read() == f"PING {S}"  # answered: pinged again after the next silence
        assert alice.closed() == [f"ERROR :Closing Link: {S} (Ping timeout: 1 seconds)"]


def test_registration_times_out(daemond_factory):
    server = start(daemond_factory, ping_timeout=1)
    with irc(server) as client:
        client.send("NICK alice")
        assert client.closed() == [f"ERROR :Closing Link: {S} (Registration timeout)"]


def test_shutdown_says_error(daemond_factory):
    server = start(daemond_factory)
    alice = logged_in(server, "alice")
    server.stop()
    assert alice.closed() == [f"ERROR :Closing Link: {S} (Server shutting down)"]


# -- one session per name, across front ends --------------------------------------------------


def test_duplicate_logins_are_rejected_across_front_ends(server):
    bob = line_user(server, "bob")
    with irc(server) as second:
        second.send(f"PASS {password('bob')}")
        second.send("NICK bob")
        second.send("USER bob 0 * :B")
        assert second.closed() == [f":{S} 433 * bob :Nickname is already in use",
                                   f"ERROR :Closing Link: {S} (Nickname is already in use)"]
    bob.command("/quit")
    with logged_in(server, "carol"):
        with server.client("chat") as line:
            line.read_line()
            assert line.command(f"/login carol {password('carol')}")[1] == \
                "-ERR already-connected carol is already connected; closing"


def test_a_replacing_login_closes_the_other_front_ends_session(daemond_factory):
    server = start(daemond_factory, chat={"on_duplicate_login": "replace"})
    with logged_in(server, "alice") as old:
        old.send("JOIN #lobby")
        old.until(" 366 ")
        watcher = line_user(server, "bob")
        assert old.read() == f":bob!bob@{S} JOIN #lobby"
        new = line_user(server, "alice")
        assert re.fullmatch(rf":{S} NOTICE alice :replaced: alice logged in from 127\.0\.0\.1:\d+", old.read())
        assert old.closed() == [f"ERROR :Closing Link: {S} (Replaced by a new login of this nickname)"]
        assert new.command("/who")[1] == "+OK alice bob"  # alice never left: nobody saw her PART
        with logged_in(server, "alice") as newest:  # and an IRC login replaces a line session
            assert new.read_line().startswith("NOTICE replaced: alice logged in from 127.0.0.1:")
            assert new.expect_closed() == b""
            newest.send("WHOIS alice")
            assert newest.read() == f":{S} 311 alice alice alice {S} * :Real alice"
        watcher.close()


# -- the core's limits ---------------------------------------------------------------------------


def test_flood_cut_says_excess_flood(daemond_factory):
    server = start(daemond_factory, chat={"rate": 1, "burst": 3, "on_flood": "cut"})
    with logged_in(server, "alice") as alice:
        # in one write: the server has read every line when it cuts the client, so it closes with
        # a FIN the client reads the ERROR before (lines still in flight would draw a reset)
        alice.send_bytes(b"".join(f"PING {i}\r\n".encode() for i in range(10)))
        lines = alice.closed()
        assert lines[-1] == f"ERROR :Closing Link: {S} (Excess Flood)"
        assert lines[:3] == [f":{S} PONG {S} {i}" for i in range(3)]


def test_flood_slow_makes_the_client_wait_and_loses_nothing(daemond_factory):
    server = start(daemond_factory, chat={"rate": 20, "burst": 2, "on_flood": "slow"})
    with logged_in(server, "alice") as alice:
        for i in range(30):
            alice.send(f"PING {i}")
        assert [alice.read() for _ in range(30)] == [f":{S} PONG {S} {i}" for i in range(30)]


def test_a_client_that_never_reads_is_cut_and_the_room_carries_on(daemond_factory):
    server = start(daemond_factory, listener={"send_queue": 16384})
    register_user(server, "stalled")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: fixes the window
    sock.settimeout(10)
    sock.connect(server.address("irc"))
    stalled = IrcClient.__new__(IrcClient)
    stalled.sock, stalled.buffer = sock, b""
    stalled.register("stalled", password("stalled"))
    stalled.send("JOIN #lobby")
    stalled.until(" 366 ")
    bob = line_user(server, "bob")
    carol = line_user(server, "carol")
    bob.read_line()
    padding = "x" * 480  # an IRC line is at most 512 bytes: many lines fill the kernel's buffers
    parts = 0
    for i in range(10_000):
        bob.send_line(f"{i} {padding}")
        if i % 500 == 499:  # carol keeps up, as a reading client does
            for j in range(i - 499, i + 1):
                line = carol.read_line()
                if line == "PART stalled":  # cut, somewhere in the middle
                    parts += 1
                    line = carol.read_line()
                assert line == f"MSG bob {j} {padding}"  # and the others got everything, in order
    assert parts == 1
    # PART comes from the close hooks; the disconnect line is logged after them, a moment later
    log_file = server.config.log_file
    assert wait_until(lambda: re.search(r"disconnect irc \S+ user=stalled reason=overflow", log_file.read_text()), 10), \
        log_file.read_text()[-3000:]
    log = log_file.read_text()
    assert re.search(r"send queue exceeded: irc \S+ user=stalled has more than 16384 bytes unread", log)
    assert bob.command("/who")[1] == "+OK bob carol"
    sock.close()


def test_max_unauthenticated_per_ip_applies(daemond_factory):
    server = start(daemond_factory, listener={"max_unauthenticated_per_ip": 1})
    with irc(server) as first, irc(server) as second:
        first.send("PING one")
        assert first.read() == f":{S} PONG {S} one"
        assert second.closed() == [f"ERROR :Closing Link: {S} (too many connections not logged in from 127.0.0.1 (1))"]
