"""No user can drive another's terminal: escape sequences, controls and bidi overrides are stripped."""

from __future__ import annotations

import pytest
from tests.support.chat import collect

from plugins.chat.text import sanitize, visible

ATTACKS = [
    ("clear \x1b[2J\x1b[Hscreen", "clear screen"),
    ("\x1b[31mred\x1b[0m text", "red text"),
    ("title\x1b]0;pwned\x07 set", "title set"),
    ("title\x1b]2;pwned\x1b\\ set", "title set"),
    ("a \x1b]8;;http://evil.example/\x1b\\link\x1b]8;;\x1b\\ b", "a link b"),
    ("keys\x1bP+q544e\x1b\\ query", "keys query"),
    ("save\x1b7 cursor\x1b8", "save cursor"),
    ("charset\x1b(0 lines", "charset lines"),
    ("private \x1b[?1049h mode", "private  mode"),
    ("eight-bit \u009b31m csi", "eight-bit  csi"),
    ("eight-bit \u009d0;x\u009c osc", "eight-bit  osc"),
    ("bell\x07 backspace\x08\x08 del\x7f", "bell backspace del"),
    ("carriage\rreturn", "carriagereturn"),
    ("vertical\x0btab\x0cform", "verticaltabform"),
    ("keep\ttabs", "keep\ttabs"),
    ("\u202eevil.exe\u202c", "evil.exe"),
    ("iso\u2066late\u2069d and \u202aembed\u202b", "isolated and embed"),
    ("line\u2028sep\u2029para", "lineseppara"),
    ("marks\u200e \u200fgo\u061c", "marks go"),
    ("osc \x1b]0;cut short\x1b[1mby csi", "osc by csi"),
    ("next\u0085line", "nextline"),
    ("unterminated \x1b]0;swallows the rest", "unterminated "),
    ("lonely escape at the end \x1b", "lonely escape at the end "),
    ("Grüße, 日本語, emoji 🎉 stay", "Grüße, 日本語, emoji 🎉 stay"),
    ("right-to-left \u05e9\u05dc\u05d5\u05dd stays", "right-to-left \u05e9\u05dc\u05d5\u05dd stays"),
]


@pytest.mark.parametrize(("raw", "clean"), ATTACKS)
def test_sanitize(raw, clean):
    assert sanitize(raw) == clean


@pytest.mark.parametrize(("text", "shows"), [
    ("hi", True), ("\u200b", False), ("\u200c\u200d\u2060\ufeff", False), (" \u00a0\u3000\t", False),
    ("\u3164\u2800", False), ("\u00ad\u034f", False), ("\u200ba", True), ("日", True), ("\U0001f389", True),
])
def test_visible(text, shows):
    assert visible(text) is shows


def _is_safe(text: str) -> bool:
    return not any(
        (ord(c) < 0x20 and c != "\t") or 0x7F <= ord(c) <= 0x9F or 0x202A <= ord(c) <= 0x202E
        or 0x2066 <= ord(c) <= 0x2069 for c in text
    )


def test_injection_attempts_never_reach_other_clients_or_the_history(chat):
    room = chat()
    mallory, bob, carol = room.people("mallory", "bob", "carol")
    attacks = [raw for raw, clean in ATTACKS if clean.strip()]
    for raw in attacks:
        mallory.send_line(raw)
    expected = [f"MSG mallory {sanitize(raw)}" for raw in attacks]
    for lines in collect([bob, carol], lambda i, lines: len(lines) >= len(attacks)):
        assert lines == expected
        assert all(_is_safe(line) for line in lines)
    lines, final = carol.command(f"/history {len(attacks)}")
    assert [line.split(" ", 2)[2] for line in lines] == [e.split(" ", 1)[1] for e in expected]
    # actions and private messages are cleaned the same way
    assert mallory.command("/me \x1b[5mblinks\x1b[0m\u202e") == ([], "+OK")
    assert bob.read_line() == "ACTION mallory blinks"
    assert carol.read_line() == "ACTION mallory blinks"
    assert mallory.command("/msg bob \x1b]52;c;cGF5bG9hZA==\x07copy that") == ([], "+OK")
    assert bob.read_line() == "PRIV mallory copy that"


def test_a_line_of_nothing_but_controls_is_refused(chat):
    room = chat()
    mallory, bob, carol = room.people("mallory", "bob", "carol")
    for raw in ("\x1b[2J", "\x07\x07\x07", "\u202e", "\x1b]0;title\x07"):
        assert mallory.command(raw)[1].startswith("-ERR bad-text"), repr(raw)
    assert mallory.command("/me \x1b[2J")[1].startswith("-ERR bad-text")
    mallory.send_line("visible")
    assert bob.read_line() == "MSG mallory visible"
    assert carol.read_line() == "MSG mallory visible"
