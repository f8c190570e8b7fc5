"""Item 16: the history keeps exactly history_limit messages however many pass, in bounded memory and disk."""

from __future__ import annotations

import sqlite3

from plugins.chat.history import History
from tests.chatkit import Room, collect, listener, settings
from tests.robustness.helpers import MIB, measured, proc_stats


def test_100k_messages_through_the_history_keep_exactly_history_limit(tmp_path):
    # Bound: plugins.chat.history_limit (default 10000). 100k appends through the
    # module the room uses: exactly the limit kept, the newest; memory and files flat.
    limit = 10_000
    history = History(tmp_path / "chat.db", limit)
    try:
        sizes = []
        rss = []
        for block in range(10):
            for n in range(10_000):
                history.append("msg", f"u{n % 50}", f"message {block * 10_000 + n} " + "x" * 100)
            sizes.append(sum(p.stat().st_size for p in tmp_path.glob("chat.db*")))
            rss.append(proc_stats().rss)
        assert history.count() == limit
        entries = history.recent(limit + 5)
        assert len(entries) == limit
        assert entries[0].text.startswith("message 90000 ") and entries[-1].text.startswith("message 99999 ")
        assert [e.seq for e in entries] == list(range(90_001, 100_001))
        # after the first block fills the table, neither the files nor the process grow
        measured(16, f"100k appends, limit {limit}: files {sizes[1] // 1024}-{max(sizes[1:]) // 1024} KiB, "
                     f"RSS {rss[1] / MIB:.0f}-{max(rss[1:]) / MIB:.0f} MiB after the first 10k")
        assert max(sizes[1:]) < 2 * sizes[1], sizes
        assert max(rss[1:]) - rss[1] < 16 * MIB, [r // MIB for r in rss]
    finally:
        history.close()
    conn = sqlite3.connect(tmp_path / "chat.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def test_3000_chat_messages_over_sockets_keep_history_limit_and_daemon_memory_flat(daemond_process):
    d = daemond_process(listener(), settings(history_limit=500, max_history_request=1000))
    room = Room(d)
    alice, bob = room.people("alice", "bob")
    rss = []
    for block in range(3):
        alice.send(b"".join(b"m%d\n" % (block * 1000 + n) for n in range(1000)))
        collect([bob], lambda i, lines: len(lines) >= 1000)
        rss.append(proc_stats(d.proc.pid).rss)
    lines, final = bob.command("/history 1000")
    assert final == "+OK 500"
    assert [x.rsplit(" ", 1)[1] for x in lines] == [f"m{n}" for n in range(2500, 3000)]
    assert rss[2] - rss[0] < 16 * MIB, [r // MIB for r in rss]
    room.close()
