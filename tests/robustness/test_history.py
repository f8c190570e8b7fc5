"""Item 16: the history keeps exactly history_limit messages however many pass, in bounded memory and disk."""

from __future__ import annotations

import ctypes
import errno
import sqlite3

import pytest

from plugins.chat import resident
from plugins.chat.history import History
from tests.support.chat import Room, collect, listener, settings
from tests.support.robustness import MIB, disk_reads, evict, measured, proc_stats


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


def test_a_message_never_waits_for_the_disk_to_read_back_the_history_log(daemond_process):
    # Item 24's stalls: SQLite writes its log in frames that cover parts of pages, so a page
    # the kernel evicted is read back from the disk before the write goes on, with the room's
    # lock held (a soak caught daemond threads in pwrite64 -> ext4_block_write_begin for up to
    # 261 ms). The log's pages are locked in memory: evicting them drops nothing, and messages
    # that overwrite the log after a checkpoint read nothing from the disk.
    d = daemond_process(listener(), settings())
    room = Room(d)
    alice, bob = room.people("alice", "bob")
    wal = d.config.parent / "state" / "chat.db-wal"

    def say(first: int, count: int) -> None:
        for block in range(first, first + count, 500):
            alice.send(b"".join(b"m%d\n" % n for n in range(block, min(block + 500, first + count))))
            collect([bob], lambda i, lines, n=min(500, first + count - block): len(lines) >= n)

    say(0, 2000)  # the log fills, is checkpointed and starts again from its beginning
    salt = _log_salt(wal)
    evict(wal)
    before = disk_reads(d.proc.pid)
    say(2000, 1000)  # overwrites the log's first frames
    read = disk_reads(d.proc.pid) - before
    size, locked = wal.stat().st_size, _locked_kib(d.proc.pid, wal)
    measured(24, f"log {size // 1024} KiB, {locked} KiB of it locked in memory; 1000 messages after "
                 f"evicting it read {read // 1024} KiB from the disk")
    assert _log_salt(wal) != salt, "the log did not start again from its beginning"
    assert read < 64 * 1024, read
    assert locked * 1024 >= size
    room.close()


def _log_salt(wal) -> bytes:
    """The salts in a write-ahead log's header: new each time SQLite starts the log again."""
    with open(wal, "rb") as f:
        return f.read(32)[16:24]


@pytest.mark.parametrize("err, cause", [(errno.ENOMEM, "over RLIMIT_MEMLOCK ("),
                                        (errno.EPERM, "refused by a system call filter (seccomp), not by RLIMIT_MEMLOCK")],
                         ids=["limit", "seccomp"])
def test_a_log_that_cannot_be_locked_in_memory_is_said_once_and_messages_go_on(tmp_path, monkeypatch, err, cause):
    # Locked memory has a limit (RLIMIT_MEMLOCK; root with CAP_IPC_LOCK has none), and a seccomp
    # filter may refuse mlock outright (EPERM): the refusal is made here by the C library's mlock
    # itself, with the errno each would give
    def refused(address, length):
        ctypes.set_errno(err)
        return -1

    monkeypatch.setattr(resident._libc, "mlock", refused)
    said = []
    history = History(tmp_path / "chat.db", 100, warn=said.append)
    try:
        for n in range(300):
            history.append("msg", "alice", f"m{n}")
        assert [e.text for e in history.recent(2)] == ["m298", "m299"]
    finally:
        history.close()
    assert len(said) == 1 and said[0].startswith("mlock ") and cause in said[0], said


def _locked_kib(pid: int, path) -> int:
    """KiB of ``path`` locked in memory by ``pid`` (the Locked: lines of its mappings in smaps)."""
    locked, inside = 0, False
    for line in open(f"/proc/{pid}/smaps"):
        first = line.split(maxsplit=1)[0]
        if "-" in first and not first.endswith(":"):  # a mapping's header line
            inside = line.rstrip().endswith(str(path))
        elif inside and first == "Locked:":
            locked += int(line.split()[1])
    return locked
