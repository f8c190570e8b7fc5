"""Item 12: terminal escapes (CSI, OSC, C1 such as U+009B) reach no client, no history row and no log line."""

from __future__ import annotations

import re

from tests.support.chat import Room, history_rows, listener, settings
from tests.support.robustness import recv_all

ESC = "\x1b"
CSI_C1 = "\u009b"
PAYLOADS = [
    f"{ESC}[2J{ESC}[H wiped",
    f"{ESC}]0;pwned{ESC}\\ title",
    f"{ESC}]52;c;cGF5bG9hZA==\x07 clipboard",
    f"{CSI_C1}31m red via C1",
    f"\u009d0;title\u009c osc via C1",
    f"{ESC}P+q{ESC}\\ dcs",
    "bell\x07\x07 and backspace\x08\x08",
]
#: ESC, the other C0 controls but TAB, DEL, and every C1 control, in any text
UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f\u0080-\u009f]")


def unsafe_in(text: str) -> list[str]:
    return [line for line in text.splitlines() if UNSAFE.search(line)]


def test_escape_payloads_through_every_input_reach_no_client_history_or_log(daemond_factory):
    d = daemond_factory(listener(), settings())
    room = Room(d)
    mallory, bob, carol = room.people("mallory", "bob", "carol")
    for p in PAYLOADS:
        mallory.send_line(p)
        mallory.send_line(f"/me {p}")
        mallory.send_line(f"/msg bob {p}")
        mallory.send_line(f"/msg {p} hi")  # an escape as the target's name
        mallory.send_line(f"/{p}")  # and as a command's name
        mallory.send_line(f"/history {p}")
    # names: at registration and at login, on fresh connections
    for p in PAYLOADS:
        with d.client("chat") as c:
            c.read_line()
            c.send_line(f"/register {p} password-123")
            c.send_line(f"/login {p} password-123")
            c.send_line(f"/login mallory{p} password-123")
            c.send_line("/quit")
            assert not unsafe_in(recv_all(c.sock).decode("utf-8")), p
    for client in (mallory, bob, carol):  # every byte each of them received, up to its /quit
        client.send_line("/quit")
        text = (client._buf + recv_all(client.sock)).decode("utf-8")
        assert not unsafe_in(text), unsafe_in(text)[:5]
    rows = history_rows(d.config.state_dir / "chat.db")
    assert len(rows) == 2 * len(PAYLOADS)
    assert not [r for r in rows if UNSAFE.search(r[2]) or UNSAFE.search(r[3])]
    log = d.config.log_file.read_text(encoding="utf-8")
    assert not unsafe_in(log), unsafe_in(log)[:5]
    assert not [line for line in d.daemon.logs.tail(10_000) if UNSAFE.search(line)]
    room.close()
