"""Issue 19 item 15: a message with nothing visible in it is refused, and bidi marks never reach anyone."""

from __future__ import annotations

from tests.support.chat import Room, history_rows, listener, settings

INVISIBLE = [
    "\u200b", "\u200c\u200d", "\u2060", "\ufeff", "\u200e", "\u200f", "\u061c", "\u200e\u200f\u061c",
    " \u200b \u00a0\u3000 ", "\u3164", "\u2800\u115f", "\u00ad", "\u034f\ufe0f", "\x1b[1m\u200b\x1b[0m",
]


def test_invisible_only_messages_get_bad_text_and_bidi_marks_are_removed(daemond_factory):
    d = daemond_factory(listener(), settings())
    room = Room(d)
    mallory, bob = room.people("mallory", "bob")
    for raw in INVISIBLE:
        assert mallory.command(raw)[1].startswith("-ERR bad-text"), repr(raw)
        assert mallory.command(f"/me {raw}")[1].startswith("-ERR bad-text"), repr(raw)
        assert mallory.command(f"/msg bob {raw}")[1].startswith("-ERR bad-text"), repr(raw)
        assert mallory.command(f"/say #lobby {raw}")[1].startswith("-ERR bad-text"), repr(raw)
    assert mallory.command("/topic #lobby \u200b\u200e") == ([], "+OK")
    assert bob.read_line() == "TOPIC mallory "
    # bidi marks go like the other bidi controls; the visible rest is sent
    mallory.send_line("pay\u200e \u202eme\u200f\u061c")
    assert bob.read_line() == "MSG mallory pay me"
    assert mallory.command("/msg bob \u200fhi") == ([], "+OK")
    assert bob.read_line() == "PRIV mallory hi"
    assert [row[3] for row in history_rows(d.config.state_dir / "chat.db")] == ["pay me"]
    room.close()
