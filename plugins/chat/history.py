"""The rooms' history: one SQLite database in WAL mode, bounded per room, that survives ``kill -9``.

Each message is committed on its own before anyone receives it (a room calls
:meth:`History.append` and only then fans out), so every message a client ever
saw is in the database after a crash. WAL with ``synchronous=NORMAL`` makes a
commit one ``write()`` into the log: it survives the process being killed at
any moment; a power cut may lose the last few messages, never the database.
The log's pages are kept in memory (:mod:`plugins.chat.resident`), so that this
``write()`` does not wait for the disk to read back a page the kernel evicted.

Every room's messages are in one table, numbered per room (``room, seq``); the
``rooms`` table keeps each room's name as created, its topic, and whether the
operator made it. A database from before rooms (one ``messages`` table without
a ``room`` column) is migrated when it is opened: its messages become the
default room's.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from daemon import PrivateFileError, check_private_sqlite, create_private_sqlite
from plugins.chat.resident import ResidentFile

#: what the history holds, for the refusal of a file others may read (as auth refuses its store)
SECRET = "it holds users' messages"

#: ``PRAGMA user_version`` of the schema below; 0 is the single room's schema (or a new file)
VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL,        -- the room's key: its name in lower case
    seq  INTEGER NOT NULL,     -- the room's one order
    ts   REAL NOT NULL,        -- seconds since the epoch, UTC
    kind TEXT NOT NULL,        -- 'msg' or 'action'
    name TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (room, seq)
);
CREATE TABLE IF NOT EXISTS rooms (
    key       TEXT PRIMARY KEY,
    name      TEXT NOT NULL,              -- as created
    topic     TEXT NOT NULL DEFAULT '',
    permanent INTEGER NOT NULL DEFAULT 0  -- made by the operator: stays when empty
);
"""


@dataclass(frozen=True)
class Entry:
    seq: int
    ts: float
    kind: str
    name: str
    text: str

    def stamp(self) -> str:
        """The time as ISO 8601 UTC with milliseconds."""
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.ts)) + f".{int(self.ts * 1000) % 1000:03d}Z"

    def typed(self) -> str:
        """The text the way the user would type it: ``/me …`` for an action, ``//…`` for a leading ``/``."""
        if self.kind == "action":
            return f"/me {self.text}"
        if self.text.startswith("/"):
            return "/" + self.text
        return self.text

    def hist_line(self, room: str | None = None) -> str:
        """``HIST [<room>] <iso-8601-utc> <name> <text>`` (the room only outside the default room)."""
        where = f"{room} " if room else ""
        return f"HIST {where}{self.stamp()} {self.name} {self.typed()}"


@dataclass(frozen=True)
class StoredRoom:
    key: str
    name: str
    topic: str
    permanent: bool
    last_seq: int


class History:
    """Append and read every room's messages; keep the rooms' names and topics.

    :meth:`append` is called with the room's lock held (so one writer per room
    at a time, in sequence order); the writer connection is shared by all rooms
    and guarded by its own lock. :meth:`recent` may be called from any thread.
    ``room`` arguments are room keys; left out, they mean ``default_room``.
    """

    def __init__(self, path: Path, limit: int, warn: Callable[[str], None] | None = None,
                 default_room: str = "#lobby"):
        self.path = path
        self.limit = limit  # messages kept per room
        self.default_room = default_room.lower()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        create_private_sqlite(path, "chat history", secret=SECRET)
        # _write_lock guards the writer connection and _last (rooms write from their own threads)
        self._write_lock = threading.Lock()
        self._writer = _connect(path)
        try:  # the -wal/-shm files now exist: SQLite gives them the database's mode
            check_private_sqlite(path, "chat history", secret=SECRET)
        except PrivateFileError:
            self._writer.close()
            raise
        _migrate(self._writer, self.default_room, default_room)
        # the write-ahead log and its index, kept in memory (guarded by _write_lock, as the writer)
        self._resident = [ResidentFile(f"{path}-wal"), ResidentFile(f"{path}-shm")]
        self._warn = warn  # told once if they cannot be (the locked-memory limit)
        self._keep_resident()
        self._reader = _connect(path)
        # _read_lock guards the reader connection (sqlite3 connections are not for
        # two threads at once)
        self._read_lock = threading.Lock()
        self._last: dict[str, int] = dict(self._writer.execute("SELECT room, MAX(seq) FROM messages GROUP BY room"))

    @property
    def last_seq(self) -> int:
        """The default room's last sequence number."""
        return self.last(self.default_room)

    def last(self, room: str) -> int:
        return self._last.get(room, 0)

    def append(self, kind: str, name: str, text: str, room: str | None = None) -> Entry:
        """Commit one message to ``room`` and return it with its sequence number (room lock held)."""
        room = room or self.default_room
        with self._write_lock:
            entry = Entry(self._last.get(room, 0) + 1, time.time(), kind, name, text)
            with self._writer:  # one transaction: the new row and the trim
                self._writer.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)",
                                     (room, entry.seq, entry.ts, entry.kind, entry.name, entry.text))
                self._writer.execute("DELETE FROM messages WHERE room = ? AND seq <= ?",
                                     (room, entry.seq - self.limit))
            self._last[room] = entry.seq
            self._keep_resident()
        return entry

    def _keep_resident(self) -> None:  # with _write_lock held
        for file in self._resident:
            if file.error is None:
                file.follow()
                if file.error is not None and self._warn is not None:
                    self._warn(file.error)
                    self._warn = None  # once is enough: the cause (the limit) is the same for both

    def recent(self, count: int, up_to: int | None = None, room: str | None = None) -> list[Entry]:
        """The last ``count`` messages of ``room`` with ``seq <= up_to`` (default: all), oldest first."""
        room = room or self.default_room
        if count <= 0:
            return []
        bound = self.last(room) if up_to is None else up_to
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT seq, ts, kind, name, text FROM messages WHERE room = ? AND seq <= ? "
                "ORDER BY seq DESC LIMIT ?", (room, bound, count)).fetchall()
        return [Entry(*row) for row in reversed(rows)]

    def count(self, room: str | None = None) -> int:
        """Messages kept in ``room`` (default: the default room)."""
        with self._read_lock:
            return self._reader.execute("SELECT COUNT(*) FROM messages WHERE room = ?",
                                        (room or self.default_room,)).fetchone()[0]

    # -- rooms ----------------------------------------------------------------------

    def rooms(self) -> list[StoredRoom]:
        """Every stored room, with the last sequence number of its messages (0: none)."""
        with self._read_lock:
            rows = self._reader.execute("SELECT key, name, topic, permanent FROM rooms ORDER BY key").fetchall()
        return [StoredRoom(key, name, topic, bool(permanent), self.last(key)) for key, name, topic, permanent in rows]

    def save_room(self, key: str, name: str, topic: str = "", permanent: bool = False) -> None:
        with self._write_lock, self._writer:
            self._writer.execute("INSERT INTO rooms (key, name, topic, permanent) VALUES (?, ?, ?, ?) "
                                 "ON CONFLICT (key) DO UPDATE SET permanent = MAX(permanent, excluded.permanent)",
                                 (key, name, topic, int(permanent)))

    def set_topic(self, key: str, topic: str) -> None:
        with self._write_lock, self._writer:
            self._writer.execute("UPDATE rooms SET topic = ? WHERE key = ?", (topic, key))

    def drop_room(self, key: str) -> None:
        """Forget a room: its messages and its record."""
        with self._write_lock:
            with self._writer:
                self._writer.execute("DELETE FROM messages WHERE room = ?", (key,))
                self._writer.execute("DELETE FROM rooms WHERE key = ?", (key,))
            self._last.pop(key, None)

    def close(self) -> None:
        for file in self._resident:
            file.close()
        with self._read_lock:
            self._reader.close()
        with self._write_lock:
            self._writer.close()


def _migrate(conn: sqlite3.Connection, default_key: str, default_name: str) -> None:
    """Bring the file to :data:`VERSION`: the single room's messages become the default room's."""
    if conn.execute("PRAGMA user_version").fetchone()[0] >= VERSION:
        return
    single_room = [row[1] for row in conn.execute("PRAGMA table_info(messages)")]
    conn.execute("BEGIN IMMEDIATE")  # one transaction, DDL included: a crash leaves the file as it was
    try:
        if single_room and "room" not in single_room:
            conn.execute("ALTER TABLE messages RENAME TO messages_v1")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        if single_room and "room" not in single_room:
            conn.execute("INSERT INTO messages (room, seq, ts, kind, name, text) "
                         "SELECT ?, seq, ts, kind, name, text FROM messages_v1", (default_key,))
            conn.execute("DROP TABLE messages_v1")
            conn.execute("INSERT OR IGNORE INTO rooms (key, name) VALUES (?, ?)", (default_key, default_name))
        conn.execute(f"PRAGMA user_version = {VERSION}")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED", timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn
