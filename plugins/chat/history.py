"""The room's history: an SQLite database in WAL mode, bounded, that survives ``kill -9``.

Each message is committed on its own before anyone receives it (the room calls
:meth:`History.append` and only then fans out), so every message a client ever
saw is in the database after a crash. WAL with ``synchronous=NORMAL`` makes a
commit one ``write()`` into the log: it survives the process being killed at
any moment; a power cut may lose the last few messages, never the database.
The log's pages are kept in memory (:mod:`plugins.chat.resident`), so that this
``write()`` does not wait for the disk to read back a page the kernel evicted.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from daemon import create_private_sqlite
from plugins.chat.resident import ResidentFile

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq  INTEGER PRIMARY KEY,  -- the room's one global order
    ts   REAL NOT NULL,        -- seconds since the epoch, UTC
    kind TEXT NOT NULL,        -- 'msg' or 'action'
    name TEXT NOT NULL,
    text TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class Entry:
    seq: int
    ts: float
    kind: str
    name: str
    text: str

    def hist_line(self) -> str:
        """``HIST <iso-8601-utc> <name> <text>``; an action's text reads ``/me …`` and a
        message starting with ``/`` is written ``//…`` — the way the user would type it."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.ts)) + f".{int(self.ts * 1000) % 1000:03d}Z"
        if self.kind == "action":
            text = f"/me {self.text}"
        elif self.text.startswith("/"):
            text = "/" + self.text
        else:
            text = self.text
        return f"HIST {stamp} {self.name} {text}"


class History:
    """Append and read the room's messages.

    :meth:`append` is called with the room's lock held (one writer at a time,
    in sequence order); :meth:`recent` may be called from any session thread.
    """

    def __init__(self, path: Path, limit: int, warn: Callable[[str], None] | None = None):
        self.path = path
        self.limit = limit
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        create_private_sqlite(path, "chat history")
        self._writer = _connect(path)
        self._writer.executescript(_SCHEMA)
        # the write-ahead log and its index, kept in memory (guarded by the room's lock, as the writer)
        self._resident = [ResidentFile(f"{path}-wal"), ResidentFile(f"{path}-shm")]
        self._warn = warn  # told once if they cannot be (the locked-memory limit)
        self._keep_resident()
        self._reader = _connect(path)
        # _read_lock guards the reader connection (sqlite3 connections are not for
        # two threads at once); the writer is guarded by the room's lock.
        self._read_lock = threading.Lock()
        self.last_seq: int = self._writer.execute("SELECT COALESCE(MAX(seq), 0) FROM messages").fetchone()[0]

    def append(self, kind: str, name: str, text: str) -> Entry:
        """Commit one message and return it with its sequence number (room lock held)."""
        entry = Entry(self.last_seq + 1, time.time(), kind, name, text)
        with self._writer:  # one transaction: the new row and the trim
            self._writer.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
                                 (entry.seq, entry.ts, entry.kind, entry.name, entry.text))
            self._writer.execute("DELETE FROM messages WHERE seq <= ?", (entry.seq - self.limit,))
        self.last_seq = entry.seq
        self._keep_resident()
        return entry

    def _keep_resident(self) -> None:
        for file in self._resident:
            if file.error is None:
                file.follow()
                if file.error is not None and self._warn is not None:
                    self._warn(file.error)
                    self._warn = None  # once is enough: the cause (the limit) is the same for both

    def recent(self, count: int, up_to: int | None = None) -> list[Entry]:
        """The last ``count`` messages with ``seq <= up_to`` (default: all), oldest first."""
        if count <= 0:
            return []
        bound = self.last_seq if up_to is None else up_to
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT seq, ts, kind, name, text FROM messages WHERE seq <= ? ORDER BY seq DESC LIMIT ?",
                (bound, count)).fetchall()
        return [Entry(*row) for row in reversed(rows)]

    def count(self) -> int:
        with self._read_lock:
            return self._reader.execute("SELECT COUNT(*) FROM messages").fetchone()[0]

    def close(self) -> None:
        for file in self._resident:
            file.close()
        with self._read_lock:
            self._reader.close()
        self._writer.close()


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED", timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn
