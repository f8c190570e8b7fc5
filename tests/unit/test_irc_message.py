"""The IRC message parser and formatter (plugins/irc/message.py), case by case."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.irc.message import BODY_LIMIT, BadMessage, Message, body, escape_tag, fit, format_message, parse, \
    unescape_tag


@pytest.mark.parametrize("line, expected", [
    ("NICK alice", Message("NICK", ["alice"])),
    ("nick alice", Message("NICK", ["alice"])),
    ("PRIVMSG #lobby :hello there", Message("PRIVMSG", ["#lobby", "hello there"])),
    ("PRIVMSG #lobby :", Message("PRIVMSG", ["#lobby", ""])),
    ("PRIVMSG #lobby ::-)", Message("PRIVMSG", ["#lobby", ":-)"])),
    ("PRIVMSG #lobby hello", Message("PRIVMSG", ["#lobby", "hello"])),
    ("USER u 0 * :Real Name", Message("USER", ["u", "0", "*", "Real Name"])),
    ("JOIN   #a,#b    key", Message("JOIN", ["#a,#b", "key"])),
    ("  PING x", Message("PING", ["x"])),
    (":alice!a@h PRIVMSG bob :hi", Message("PRIVMSG", ["bob", "hi"], source="alice!a@h")),
    ("@time=2026-01-01T00:00:00Z;+draft/x PRIVMSG #a :b",
     Message("PRIVMSG", ["#a", "b"], tags={"time": "2026-01-01T00:00:00Z", "+draft/x": ""})),
    ("@a=1;b=2 :src CMD p1 :trail ing", Message("CMD", ["p1", "trail ing"], tags={"a": "1", "b": "2"}, source="src")),
    ("@k=a\\sb\\:c\\\\d\\re\\nf CMD", Message("CMD", [], tags={"k": "a b;c\\d\re\nf"})),
    ("CAP LS 302", Message("CAP", ["LS", "302"])),
    ("QUIT", Message("QUIT", [])),
    ("PRIVMSG #a :text with :colon", Message("PRIVMSG", ["#a", "text with :colon"])),
    ("PRIVMSG #a\ttab :x", Message("PRIVMSG", ["#a\ttab", "x"])),  # only spaces separate parameters
])
def test_parse(line, expected):
    assert parse(line) == expected


@pytest.mark.parametrize("line", ["", "   ", ":source", ":source  ", "@tag=1", "@tag=1 :src", ":only :trailing"])
def test_lines_without_a_command_are_bad(line):
    with pytest.raises(BadMessage):
        parse(line)


@pytest.mark.parametrize("raw, value", [
    ("plain", "plain"), ("a\\:b", "a;b"), ("a\\sb", "a b"), ("back\\\\slash", "back\\slash"),
    ("cr\\rlf\\n", "cr\rlf\n"), ("unknown\\x", "unknownx"), ("trailing\\", "trailing"), ("", ""),
])
def test_tag_values_unescape(raw, value):
    assert unescape_tag(raw) == value


@given(st.text())
def test_tag_escaping_round_trips(value):
    assert unescape_tag(escape_tag(value)) == value


def test_format():
    assert format_message("s", "001", "alice", "Welcome home") == ":s 001 alice :Welcome home"
    assert format_message("s", "004", "alice", "s", "v", "i", "nt") == ":s 004 alice s v i nt"
    assert format_message("a!a@s", "PRIVMSG", "#lobby", "hi") == ":a!a@s PRIVMSG #lobby :hi"
    assert format_message("a!a@s", "JOIN", "#lobby") == ":a!a@s JOIN #lobby"
    assert format_message("s", "331", "a", "#r", "") == ":s 331 a #r :"
    assert format_message("s", "X", ":colon") == ":s X ::colon"
    assert format_message(None, "PING", "s") == "PING s"
    assert format_message("s", "PRIVMSG", "#a", "x", tags={"time": "T", "batch": "b1"}) == \
        "@time=T;batch=b1 :s PRIVMSG #a :x"
    assert format_message("s", "X", "y", tags={"k": "a b;c"}) == "@k=a\\sb\\:c :s X y"


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\0\r\n ", blacklist_categories=("Cs",)),
                        min_size=1), min_size=1, max_size=5),
       st.text(alphabet=st.characters(blacklist_characters="\0\r\n", blacklist_categories=("Cs",))))
def test_what_is_formatted_parses_back(middle, trailing):
    middle = [m.lstrip(":") or "x" for m in middle]
    line = format_message("src", "CMD", *middle, trailing)
    assert parse(line) == Message("CMD", middle + [trailing], source="src")


def test_fit_cuts_the_body_to_510_bytes_at_a_character_boundary():
    line = format_message("s", "PRIVMSG", "#a", "é" * 400)
    data = fit(line)
    assert data.endswith(b"\r\n") and len(data) <= BODY_LIMIT + 2
    data.decode("utf-8")  # not cut inside a character
    tagged = fit(format_message("s", "PRIVMSG", "#a", "x" * 600, tags={"time": "2026-01-01T00:00:00.000Z"}))
    assert len(tagged.partition(b" ")[2]) == BODY_LIMIT + 2  # tags do not count
    assert fit("PING s") == b"PING s\r\n"


def test_body_is_the_line_without_its_tags():
    assert body("@a=1;b=2 :s PRIVMSG #a :x") == ":s PRIVMSG #a :x"
    assert body("PRIVMSG #a :x") == "PRIVMSG #a :x"
