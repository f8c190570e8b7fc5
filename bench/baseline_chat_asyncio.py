"""A chat server on asyncio streams: the baseline for bench/chat_bench.py.

The protocol subset the benchmark uses, doing the same work per message as
daemond's chat plugin: the ``+OK`` greeting, ``/nick NAME`` (or a bare name)
answered by ``+OK logged in as NAME``, ``JOIN``/``PART`` up to an announce
limit, and plain lines sent to every other member of the sender's current room
as ``MSG <name> <text>`` — sanitized with the chat plugin's own function,
committed to SQLite (WAL, ``synchronous=NORMAL``; one table for every room's
messages, numbered and trimmed per room, as daemond's) before the fan-out,
encoded once, written to every writer without awaiting, and a client whose
transport buffer passes the send queue bound (1 MiB) is aborted, as daemond
does. ``/who`` and ``/quit`` too.

Rooms, as daemond's (docs/chat.md): every user starts in ``#lobby``, whose
events keep the forms above. ``/join #room`` (``#`` and 1-32 of
``A-Za-z0-9_.-``, not case-sensitive, ``-ERR bad-room`` otherwise) creates the
room on its first join (its record committed, as daemond's), announces
``JOIN #room NAME`` to its members (up to the announce limit) and makes it the
current room: plain lines go there as ``MSG #room NAME TEXT``. A user who
disconnects parts every room (``PART #room NAME``). No replay, no topics, no
``/part``: the benchmark runs daemond with ``replay: 0`` and uses none of them.

    python bench/baseline_chat_asyncio.py HOST PORT [--announce-limit N] [--db PATH] [--cert C --key K]

With ``--cert``/``--key`` it speaks TLS: ``asyncio.start_server(..., ssl=ctx)``
with TLS 1.2 at least, as bench/baseline_asyncio.py and daemond's default.

Serves until killed (SIGTERM/SIGINT).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from plugins.chat.text import sanitize  # noqa: E402 - the same cleaning as daemond's chat

NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
ROOM_NAME = re.compile(r"#[A-Za-z0-9_.-]{1,32}")
DEFAULT_ROOM = "#lobby"
SEND_QUEUE = 1024 * 1024
MAX_LINE = 4096
HISTORY_LIMIT = 10_000  # per room: daemond's history_limit default


class Store:
    """Every room's messages in one SQLite file, as daemond's chat keeps them."""

    def __init__(self, db: Path):
        self.db = sqlite3.connect(db)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS messages (room TEXT NOT NULL, seq INTEGER NOT NULL, "
                        "ts REAL NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, text TEXT NOT NULL, "
                        "PRIMARY KEY (room, seq))")
        self.db.execute("CREATE TABLE IF NOT EXISTS rooms (key TEXT PRIMARY KEY, name TEXT NOT NULL)")
        self.last = dict(self.db.execute("SELECT room, MAX(seq) FROM messages GROUP BY room"))

    def save_room(self, key: str, name: str) -> None:
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO rooms VALUES (?, ?)", (key, name))

    def append(self, room: str, name: str, text: str) -> int:
        seq = self.last.get(room, 0) + 1
        with self.db:  # committed before anyone sees it, like daemond's chat
            self.db.execute("INSERT INTO messages VALUES (?, ?, ?, 'msg', ?, ?)", (room, seq, time.time(), name, text))
            self.db.execute("DELETE FROM messages WHERE room = ? AND seq <= ?", (room, seq - HISTORY_LIMIT))
        self.last[room] = seq
        return seq


class Room:
    def __init__(self, store: Store, name: str, announce_limit: int | None):
        self.store = store
        self.key = name.lower()
        self.name = name
        self.tag = "" if self.key == DEFAULT_ROOM else f" {name}"  # the default room's lines are untagged
        self.members: dict[str, asyncio.StreamWriter] = {}
        self.announce_limit = announce_limit

    def fan_out(self, data: bytes, skip: asyncio.StreamWriter | None) -> None:
        for writer in list(self.members.values()):
            if writer is skip:
                continue
            transport = writer.transport
            if transport.is_closing():
                continue
            writer.write(data)  # sends at once what the socket takes, buffers the rest
            if transport.get_write_buffer_size() > SEND_QUEUE:
                print("send queue exceeded; aborting a client", file=sys.stderr)
                transport.abort()

    def say(self, name: str, text: str, writer: asyncio.StreamWriter) -> None:
        self.store.append(self.key, name, text)
        self.fan_out(f"MSG{self.tag} {name} {text}\n".encode("utf-8"), writer)

    def join(self, name: str, writer: asyncio.StreamWriter) -> None:
        self.members[name.lower()] = writer
        self.announce(f"JOIN{self.tag} {name}\n", writer)

    def leave(self, name: str, writer: asyncio.StreamWriter) -> None:
        if self.members.get(name.lower()) is writer:
            self.announce(f"PART{self.tag} {name}\n", writer)
            del self.members[name.lower()]

    def announce(self, line: str, skip) -> None:
        if self.announce_limit is None or len(self.members) <= self.announce_limit:
            self.fan_out(line.encode("utf-8"), skip)


class Rooms:
    def __init__(self, db: Path, announce_limit: int | None):
        self.store = Store(db)
        self.announce_limit = announce_limit
        self.store.save_room(DEFAULT_ROOM, DEFAULT_ROOM)
        self.rooms = {DEFAULT_ROOM: Room(self.store, DEFAULT_ROOM, announce_limit)}
        self.lobby = self.rooms[DEFAULT_ROOM]

    def room(self, name: str) -> Room:
        """The room of that name, made on its first join."""
        key = name.lower()
        room = self.rooms.get(key)
        if room is None:
            self.store.save_room(key, name)
            room = self.rooms[key] = Room(self.store, name, self.announce_limit)
        return room


async def serve_client(rooms: Rooms, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    name = None
    joined: dict[str, Room] = {}
    lobby = rooms.lobby
    try:
        writer.write(b"+OK welcome; your name?\n")
        while name is None:
            raw = await reader.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            candidate = line[6:] if line.lower().startswith("/nick ") else line
            if not NAME.fullmatch(candidate):
                writer.write(b"-ERR bad-name names are 1-32 of A-Z a-z 0-9 _ . -\n")
            elif candidate.lower() in lobby.members:
                writer.write(f"-ERR already-connected {candidate} is already connected\n".encode())
                return
            else:
                name = candidate
                writer.write(f"+OK logged in as {name}\n".encode())
                lobby.join(name, writer)
                joined[lobby.key] = current = lobby
        while True:
            raw = await reader.readline()
            if not raw:
                return
            if len(raw) > MAX_LINE + 2:
                writer.write(b"-ERR line-too-long line discarded\n")
                continue
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("/") and not line.startswith("//"):
                command, _, args = line.partition(" ")
                command = command.lower()
                if command == "/quit":
                    writer.write(b"+OK bye\n")
                    return
                if command == "/who":
                    writer.write(("+OK " + " ".join(sorted(w for w in current.members)) + "\n").encode())
                elif command == "/join":
                    if not ROOM_NAME.fullmatch(args):
                        writer.write(b"-ERR bad-room not a room name: # and 1-32 of A-Z a-z 0-9 _ . -\n")
                        continue
                    room = joined.get(args.lower())
                    if room is None:
                        room = joined[args.lower()] = rooms.room(args)
                        room.join(name, writer)
                    current = room
                    writer.write(b"+OK\n")
                else:
                    writer.write(f"-ERR unknown-command {command}\n".encode())
                continue
            text = sanitize(line[1:] if line.startswith("//") else line)
            if text.strip():
                current.say(name, text, writer)
    except (ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        if name is not None:
            for room in joined.values():
                room.leave(name, writer)
        writer.close()


async def main(host: str, port: int, announce_limit: int | None, db: Path, ctx=None) -> None:
    rooms = Rooms(db, announce_limit)
    server = await asyncio.start_server(lambda r, w: serve_client(rooms, r, w), host, port,
                                        backlog=socket_backlog(), limit=MAX_LINE * 2, ssl=ctx)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on {host}:{port}", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()


def socket_backlog() -> int:
    import socket

    return socket.SOMAXCONN


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--announce-limit", type=int, default=None)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--cert", help="TLS certificate chain (PEM); with --key: speak TLS")
    parser.add_argument("--key", help="TLS private key (PEM)")
    args = parser.parse_args()
    ctx = None
    if args.cert:
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.cert, args.key)
    db = args.db or Path(tempfile.mkdtemp(prefix="chat-baseline-")) / "chat.db"
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    asyncio.run(main(args.host, args.port, args.announce_limit, db, ctx))
    os._exit(0)
