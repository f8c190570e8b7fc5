"""A chat server on asyncio streams: the baseline for bench/chat_bench.py.

The protocol subset the benchmark uses, doing the same work per message as
daemond's chat plugin: the ``+OK`` greeting, ``/nick NAME`` (or a bare name)
answered by ``+OK logged in as NAME``, ``JOIN``/``PART`` up to an announce
limit, and plain lines sent to every other user as ``MSG <name> <text>`` —
sanitized with the chat plugin's own function, committed to SQLite (WAL,
``synchronous=NORMAL``) before the fan-out, encoded once, written to every
writer without awaiting, and a client whose transport buffer passes the send
queue bound (1 MiB) is aborted, as daemond does. ``/who`` and ``/quit`` too.

    python bench/baseline_chat_asyncio.py HOST PORT [--announce-limit N] [--db PATH]

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
SEND_QUEUE = 1024 * 1024
MAX_LINE = 4096


class Room:
    def __init__(self, db: Path, announce_limit: int | None):
        self.members: dict[str, asyncio.StreamWriter] = {}
        self.announce_limit = announce_limit
        self.db = sqlite3.connect(db)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS messages "
                        "(seq INTEGER PRIMARY KEY, ts REAL, kind TEXT, name TEXT, text TEXT)")
        self.seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM messages").fetchone()[0]

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
        self.seq += 1
        with self.db:  # committed before anyone sees it, like daemond's chat
            self.db.execute("INSERT INTO messages VALUES (?, ?, 'msg', ?, ?)", (self.seq, time.time(), name, text))
            self.db.execute("DELETE FROM messages WHERE seq <= ?", (self.seq - 10_000,))
        self.fan_out(f"MSG {name} {text}\n".encode("utf-8"), writer)

    def announce(self, line: str, skip) -> None:
        if self.announce_limit is None or len(self.members) <= self.announce_limit:
            self.fan_out(line.encode("utf-8"), skip)


async def serve_client(room: Room, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    name = None
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
            elif candidate.lower() in room.members:
                writer.write(f"-ERR already-connected {candidate} is already connected\n".encode())
                return
            else:
                name = candidate
                room.members[name.lower()] = writer
                writer.write(f"+OK logged in as {name}\n".encode())
                room.announce(f"JOIN {name}\n", writer)
        while True:
            raw = await reader.readline()
            if not raw:
                return
            if len(raw) > MAX_LINE + 2:
                writer.write(b"-ERR line-too-long line discarded\n")
                continue
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("/") and not line.startswith("//"):
                command = line.split(" ", 1)[0].lower()
                if command == "/quit":
                    writer.write(b"+OK bye\n")
                    return
                if command == "/who":
                    writer.write(("+OK " + " ".join(sorted(w for w in room.members)) + "\n").encode())
                else:
                    writer.write(f"-ERR unknown-command {command}\n".encode())
                continue
            text = sanitize(line[1:] if line.startswith("//") else line)
            if text.strip():
                room.say(name, text, writer)
    except (ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        if name is not None and room.members.get(name.lower()) is writer:
            room.announce(f"PART {name}\n", writer)
            del room.members[name.lower()]
        writer.close()


async def main(host: str, port: int, announce_limit: int | None, db: Path) -> None:
    room = Room(db, announce_limit)
    server = await asyncio.start_server(lambda r, w: serve_client(room, r, w), host, port,
                                        backlog=socket_backlog(), limit=MAX_LINE * 2)
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
    args = parser.parse_args()
    db = args.db or Path(tempfile.mkdtemp(prefix="chat-baseline-")) / "chat.db"
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    asyncio.run(main(args.host, args.port, args.announce_limit, db))
    os._exit(0)
