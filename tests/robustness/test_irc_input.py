"""The IRC front end under hostile input: random lines, commands with random parameters, before
and after registration. Expected: every line gets at most its reply and nothing crashes — after
each batch the connection still answers PING, the room still works, and no plugin raised.
Bound: 1,500 lines per test, a few seconds."""

from __future__ import annotations

import random

from tests.support.irc import SERVER as S
from tests.support.irc import IrcClient, line_user, password, register_user, start

COMMANDS = ["CAP", "NICK", "USER", "PASS", "AUTHENTICATE", "JOIN", "PART", "PRIVMSG", "NOTICE", "TOPIC", "NAMES",
            "LIST", "WHO", "WHOIS", "MODE", "AWAY", "PING", "PONG", "MOTD", "KICK", "@", ":", ""]
ALPHABET = "abc#,:;@!*= \t\\\x01\x02\x03\x1b[31m\u202e\u200béé0123456789+-/"


def random_line(rng: random.Random) -> str:
    words = [rng.choice(COMMANDS)]
    for _ in range(rng.randrange(0, 6)):
        words.append("".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 40))))
    if rng.random() < 0.3:
        words.insert(0, "@" + "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 60))))
    if rng.random() < 0.05:
        words.append("x" * rng.randrange(400, 5000))
    return " ".join(words).replace("QUIT", "QUIET")


def test_random_lines_after_registration_break_nothing(daemond_factory):
    server = start(daemond_factory)
    register_user(server, "alice")
    bob = line_user(server, "bob")
    rng = random.Random(24)
    with IrcClient(server.address("irc")) as alice:
        alice.register("alice", password("alice"))
        alice.send("JOIN #lobby")
        alice.until(" 366 ")
        for batch in range(3):
            for _ in range(500):
                alice.send(random_line(rng))
            alice.send(f"PING batch{batch}")
            alice.until(f"PONG {S} batch{batch}")
        alice.send("JOIN #lobby")
        alice.send("PRIVMSG #lobby :still here")
        while (line := bob.read_line()) != "MSG alice still here":
            assert line.startswith(("MSG alice", "ACTION alice", "JOIN", "PART", "TOPIC", "PRIV alice")), line
    log = server.config.log_file.read_text()
    assert "raised" not in log and "Traceback" not in log


def test_random_lines_before_registration_break_nothing(daemond_factory):
    server = start(daemond_factory, guests=True)
    rng = random.Random(2812)
    for round_ in range(3):
        with IrcClient(server.address("irc")) as client:
            for _ in range(500):
                line = random_line(rng)
                if {"NICK", "USER", "CAP", "AUTHENTICATE"} & set(line.split(" ")[:2]):
                    continue  # registration itself is tested elsewhere; here it must not complete
                client.send(line)
            client.send(f"PING r{round_}")
            client.until(f"PONG {S} r{round_}")
    log = server.config.log_file.read_text()
    assert "raised" not in log and "Traceback" not in log
