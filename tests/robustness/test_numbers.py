"""Issue 19 item 9: a number from a client is ASCII digits or a usage error, never the end of the session."""

from __future__ import annotations

import pytest

from daemon import parse_count
from tests.support.chat import Room, listener, settings

NOT_NUMBERS = ["²", "³", "¹²", "٣", "۳", "१०", "①", "𝟗", "-1", "+1", " 1", "1 ", "1_000", "1.0", "0x10", "1e3",
               "1\n", "", "9" * 19, "9" * 5000]


@pytest.mark.parametrize("text", NOT_NUMBERS)
def test_parse_count_refuses_all_but_ascii_digits(text):
    assert parse_count(text) is None


def test_parse_count_reads_ascii_digits():
    assert [parse_count(t) for t in ("0", "7", "20", "0020", "9" * 18)] == [0, 7, 20, 20, 10**18 - 1]


def test_history_with_unicode_digits_gets_bad_argument_and_the_session_lives(daemond_factory):
    d = daemond_factory(listener(), settings())
    room = Room(d)
    alice, bob = room.people("alice", "bob")
    alice.send_line("one")
    assert bob.read_line() == "MSG alice one"
    for text in NOT_NUMBERS[:10] + ["9" * 4000]:
        lines, final = bob.command(f"/history {text}")
        assert lines == [] and final.startswith("-ERR bad-argument"), (text, final)
        lines, final = bob.command(f"/history #lobby {text}")
        assert lines == [] and final.startswith("-ERR bad-argument"), (text, final)
    lines, final = bob.command("/history 5")
    assert final == "+OK 1" and lines[0].endswith(" alice one")
    room.close()
