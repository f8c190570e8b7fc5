"""Rooms on disk: history per room and topics survive a restart and kill -9; old files are migrated."""

from __future__ import annotations

import signal
import sqlite3

from tests.support.chat import ENV, Room, collect, history_rows, listener, settings


def _start(daemond_process, state_dir, **chat_settings):
    return daemond_process(listener(), settings(**chat_settings), env=ENV, state_dir=str(state_dir))


def test_rooms_histories_and_topics_survive_a_restart(daemond_process, tmp_path):
    state = tmp_path / "state"
    first = _start(daemond_process, state, history_limit=3)
    room = Room(first)
    alice, bob = room.people("alice", "bob")
    assert alice.command("/join #Dev") == ([], "+OK")
    assert alice.command("/topic #dev ship it") == ([], "+OK")
    for i in range(5):
        alice.send_line(f"dev {i}")
    assert alice.command("/join #quiet") == ([], "+OK")  # no history: gone with its members
    assert alice.command("/say #lobby lobby line") == ([], "+OK")
    assert bob.read_line() == "MSG alice lobby line"
    assert first.terminate() == 0
    room.close()

    second = _start(daemond_process, state, history_limit=3)
    room = Room(second)
    (carol,) = room.people("carol")
    assert [line.split(" ", 2)[2] for line in carol.login_lines] == ["alice lobby line"]
    assert carol.command("/rooms") == (["ROOM #Dev 0 ship it", "ROOM #lobby 1"], "+OK")
    lines, final = carol.command("/join #dev")
    assert [line.split(" ", 3)[3] for line in lines] == ["alice dev 2", "alice dev 3", "alice dev 4"]
    assert all(line.startswith("HIST #Dev ") for line in lines)  # the name as created
    assert carol.command("/topic") == ([], "+OK ship it")
    room.close()
    assert second.terminate() == 0


def test_every_message_anyone_received_in_any_room_survives_kill_9(daemond_process, tmp_path):
    state = tmp_path / "state"
    first = _start(daemond_process, state)
    room = Room(first)
    senders = room.people("s1", "s2", "s3")
    watcher = room.connect("watcher")
    for name in ("#a", "#b"):
        for client in senders + [watcher]:
            assert client.command(f"/join {name}")[1] == "+OK"
    collect([watcher], lambda i, lines: True)
    for i, sender in enumerate(senders):
        sender.send(b"".join(f"/say {'#a' if n % 2 else '#b'} burst {i}.{n}\n".encode() for n in range(2000)))
    seen = collect([watcher], lambda i, lines: sum(x.startswith("MSG #") for x in lines) >= 300)[0]
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    seen += watcher.expect_closed().decode(errors="replace").split("\n")[:-1]
    room.close()
    delivered = {name: [x.split(" ", 3)[3] for x in seen if x.startswith(f"MSG {name} ")] for name in ("#a", "#b")}
    assert sum(map(len, delivered.values())) >= 300

    conn = sqlite3.connect(state / "chat.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    second = _start(daemond_process, state, max_history_request=10_000)
    room = Room(second)
    reader = room.connect("reader")
    for name, texts in delivered.items():
        lines, final = reader.command(f"/history {name} 10000")
        stored = [line.split(" ", 4)[4] for line in lines]
        assert stored[: len(texts)] == texts  # everything delivered is there, in the order it was delivered
    room.close()
    assert second.terminate() == 0


def test_a_single_room_database_becomes_the_default_rooms_history(daemond_process, tmp_path):
    # a chat.db as the single-room chat left it: one messages table, seq as the key
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    conn = sqlite3.connect(state / "chat.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE messages (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL, "
                 "name TEXT NOT NULL, text TEXT NOT NULL)")
    conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
                     [(seq, 1_700_000_000 + seq, "msg" if seq % 3 else "action", "old", f"old {seq}")
                      for seq in range(5, 31)])  # trimmed once: numbers start above 1
    conn.commit()
    conn.close()
    (state / "chat.db").chmod(0o600)

    d = _start(daemond_process, state, default_room="#Main", replay=3)
    room = Room(d)
    alice, bob = room.people("alice", "bob")
    assert [line.split(" ", 2)[2] for line in alice.login_lines] == ["old old 28", "old old 29", "old /me old 30"]
    bob.send_line("new")
    assert alice.read_line() == "MSG bob new"
    assert alice.command("/rooms") == (["ROOM #Main 2"], "+OK")
    assert [r[0] for r in history_rows(state / "chat.db")] == list(range(5, 32))  # numbering goes on
    room.close()
    assert d.terminate() == 0
    conn = sqlite3.connect(state / "chat.db")
    try:
        assert conn.execute("SELECT DISTINCT room FROM messages").fetchall() == [("#main",)]
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    finally:
        conn.close()
