"""Chat history on disk: bounded, private, and still there after a restart or kill -9."""

from __future__ import annotations

import signal
import sqlite3
import stat

from tests.support.chat import ENV, Room, collect, history_rows, listener, settings


def test_history_is_bounded_by_history_limit(chat):
    room = chat(history_limit=10)
    alice, bob, carol = room.people("alice", "bob", "carol")
    for i in range(15):
        alice.send_line(f"n{i}")
    collect([bob, carol], lambda i, lines: len(lines) >= 15)
    lines, final = bob.command("/history 100")
    assert final == "+OK 10" and [x.rsplit(" ", 1)[1] for x in lines] == [f"n{i}" for i in range(5, 15)]
    rows = history_rows(room.server.config.state_dir / "chat.db")
    assert [r[0] for r in rows] == list(range(6, 16))  # sequence numbers keep counting


def test_history_database_is_private_and_in_wal_mode(chat):
    room = chat(database="sub/history.sqlite")
    alice, bob, carol = room.people("alice", "bob", "carol")
    alice.send_line("secret plans")
    assert bob.read_line() == "MSG alice secret plans"
    db = room.server.config.state_dir / "sub" / "history.sqlite"
    for path in (db, db.with_name(db.name + "-wal")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def _start(daemond_process, state_dir, **chat_settings):
    return daemond_process(listener(), settings(**chat_settings), env=ENV, state_dir=str(state_dir))


def test_history_survives_a_restart(daemond_process, tmp_path):
    state = tmp_path / "state"
    first = _start(daemond_process, state)
    room = Room(first)
    alice, bob, carol = room.people("alice", "bob", "carol")
    for i in range(5):
        alice.send_line(f"before restart {i}")
    assert alice.command("/me leaves") == ([], "+OK")
    for lines in collect([bob, carol], lambda i, lines: len(lines) >= 6):
        assert lines[-1] == "ACTION alice leaves"
    assert first.terminate() == 0
    for client in (alice, bob, carol):
        assert client.expect_closed().decode() == "NOTICE server shutting down, bye\n"
    room.close()

    second = _start(daemond_process, state)
    room = Room(second)
    dave, erin, frank = room.people("dave", "erin", "frank")
    replay = [line.split(" ", 2)[2] for line in dave.login_lines]
    assert replay == [f"alice before restart {i}" for i in range(5)] + ["alice /me leaves"]
    erin.send_line("after restart")
    assert dave.read_line() == "MSG erin after restart"
    assert frank.read_line() == "MSG erin after restart"
    assert [r[0] for r in history_rows(state / "chat.db")] == list(range(1, 8))
    room.close()
    assert second.terminate() == 0


def test_every_message_anyone_received_survives_kill_9(daemond_process, tmp_path):
    state = tmp_path / "state"
    first = _start(daemond_process, state)
    room = Room(first)
    senders = room.people("s1", "s2", "s3")
    watcher = room.connect("watcher")
    for i, sender in enumerate(senders):
        sender.send(b"".join(f"burst {i}.{n}\n".encode() for n in range(2000)))
    # kill the daemon mid-burst, as soon as the watcher has seen some of it
    seen = collect([watcher], lambda i, lines: len(lines) >= 300)[0]
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    seen += watcher.expect_closed().decode(errors="replace").split("\n")[:-1]
    room.close()
    seen = [line.split(" ", 2)[2] for line in seen if line.startswith("MSG ")]
    assert 300 <= len(seen)

    conn = sqlite3.connect(state / "chat.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    second = _start(daemond_process, state, max_history_request=10_000)
    room = Room(second)
    reader = room.connect("reader")
    lines, final = reader.command("/history 10000")
    stored = [line.split(" ", 3)[3] for line in lines]
    assert stored[: len(seen)] == seen  # everything delivered is there, in the order it was delivered
    room.close()
    assert second.terminate() == 0


def test_a_history_that_cannot_be_written_refuses_the_message_and_the_session_lives(chat):
    room = chat()
    alice, bob, carol = room.people("alice", "bob", "carol")
    history = room.server.loader.loaded()["chat"].obj.room.history
    writable = history._writer
    # stand-in for a full disk: the same database, opened read-only
    history._writer = sqlite3.connect(f"file:{history.path}?mode=ro", uri=True, check_same_thread=False)
    try:
        assert alice.command("lost words")[1].startswith("-ERR unavailable")
        assert alice.command("/me tries again")[1].startswith("-ERR unavailable")
    finally:
        history._writer.close()
        history._writer = writable
    for client in (bob, carol):  # nobody got what was not stored
        assert client.command("/who")[0] == []
    alice.send_line("back again")
    assert bob.read_line() == "MSG alice back again"
    assert carol.read_line() == "MSG alice back again"
    assert "chat history" in room.server.config.log_file.read_text()
