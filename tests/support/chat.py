"""Helpers for the chat tests: a room on a real daemon, clients that log in, bulk readers."""

from __future__ import annotations

import selectors
import socket
import sqlite3
from pathlib import Path

import pytest

from daemon.testing import LineClient

ROOT = Path(__file__).resolve().parents[2]
#: the listener's plugins, as shipped: the real login, then chat
PLUGINS = ["auth", "chat"]
#: a login plugin for tests (no passwords), to show chat needs nothing but the core's login API
FAKE_LOGIN = "tests.plugins.fakelogin"
#: for daemond subprocesses, so they can import the test login plugin
ENV = {"PYTHONPATH": str(ROOT)}
#: cheap argon2id parameters: the chat tests log in hundreds of users
CHEAP_ARGON2 = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}
#: top-level config for in-process daemons: no config watcher (the reload tests reload explicitly)
IN_PROCESS = {"reload": {"watch": False}}


def listener(plugins=PLUGINS, **extra) -> dict:
    return {"chat": {"plugins": list(plugins), **extra}}


def settings(**chat) -> dict:
    """A ``plugins:`` section; flood control is off unless a test turns it on."""
    return {"auth": {"argon2": CHEAP_ARGON2, "max_attempts": 1000, "register_per_address": None,
                     "register_total": None}, "chat": {"rate": 0, **chat}}


def password(name: str) -> str:
    return f"pw-of-{name.lower()}"


def login(client: LineClient, name: str) -> list[str]:
    """Log ``client`` in as ``name`` (registering it if new); what chat sent with the login.

    Chat's lines (motd, replay) are data lines of the login's reply: they come
    before its final ``+OK``, so the reply's data lines are exactly them.
    """
    greeting = client.read_line()
    assert greeting.startswith("+OK"), greeting
    lines, final = client.command(f"/register {name} {password(name)}")
    if final.startswith("-ERR name-taken"):
        lines, final = client.command(f"/login {name} {password(name)}")
    assert final.startswith("+OK"), (lines, final)
    return lines


class Room:
    """Clients of one chat listener (an in-process daemon or a daemond subprocess)."""

    def __init__(self, server, listener_name: str = "chat"):
        self.server = server
        self.listener = listener_name
        self.clients: dict[str, LineClient] = {}

    def connect(self, name: str, **kwargs) -> LineClient:
        client = self.server.client(self.listener, **kwargs)
        client.login_lines = login(client, name)
        self.clients[name] = client
        return client

    def people(self, *names: str) -> list[LineClient]:
        """Log each name in, in order, and consume the JOIN lines they cause."""
        clients = [self.connect(name) for name in names]
        for i, client in enumerate(clients):
            joins = [client.read_line() for _ in names[i + 1:]]
            assert joins == [f"JOIN {n}" for n in names[i + 1:]]
        return clients

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def assert_nothing_pending(client: LineClient) -> None:
    """Nothing was sent to ``client`` before this point: its next line is the reply to /who."""
    lines, final = client.command("/who")
    assert lines == [] and final.startswith("+OK"), (lines, final)


def collect(clients: list[LineClient], wanted, timeout: float = 30.0) -> list[list[str]]:
    """Read lines from many clients at once until ``wanted(i, lines)`` is true for each.

    A selector over all sockets, with bulk splitting (LineClient reads one
    line at a time, too slow for thousands of lines).
    """
    import time

    got: list[list[str]] = [[] for _ in clients]
    partial = [bytearray() for _ in clients]
    done = [False] * len(clients)
    sel = selectors.DefaultSelector()
    for i, client in enumerate(clients):
        if client._buf:
            partial[i] += client._buf
            client._buf = b""
        _split(partial[i], got[i])
        done[i] = wanted(i, got[i])
        if not done[i]:
            client.sock.setblocking(False)
            sel.register(client.sock, selectors.EVENT_READ, i)
    deadline = time.monotonic() + timeout
    try:
        while not all(done):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = {i: len(got[i]) for i in range(len(clients)) if not done[i]}
                raise TimeoutError(f"clients still waiting (index: lines so far): {missing}")
            for key, _ in sel.select(min(left, 1.0)):
                i = key.data
                try:
                    chunk = key.fileobj.recv(1 << 20)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise EOFError(f"client {i} was disconnected after {len(got[i])} lines: "
                                   f"{[line[:80] for line in got[i][-3:]]}")
                partial[i] += chunk
                _split(partial[i], got[i])
                if wanted(i, got[i]):
                    done[i] = True
                    sel.unregister(key.fileobj)
    finally:
        sel.close()
        for i, client in enumerate(clients):
            client._buf = bytes(partial[i])
            client.sock.setblocking(True)
            client.sock.settimeout(client.timeout)
    return got


def messages_at_least(count: int):
    """A ``wanted`` for :func:`collect`: true once a client has ``count`` ``MSG`` lines.

    It counts only the lines it has not seen yet: ``collect`` asks after every
    read, and recounting thousands of lines each time made the order test slow.
    """
    seen: dict[int, int] = {}
    found: dict[int, int] = {}

    def wanted(i: int, lines: list[str]) -> bool:
        start = seen.get(i, 0)
        found[i] = found.get(i, 0) + sum(line.startswith("MSG ") for line in lines[start:])
        seen[i] = len(lines)
        return found[i] >= count

    return wanted


def _split(buf: bytearray, into: list[str]) -> None:
    end = buf.rfind(b"\n")
    if end < 0:
        return
    into.extend(buf[:end].decode("utf-8").split("\n"))
    del buf[: end + 1]


def small_receive_buffer_client(server, listener_name: str = "chat") -> LineClient:
    """A client whose kernel receive buffer is as small as Linux allows (for a reader that stalls)."""
    if hasattr(server, "address"):  # in-process daemon
        host, port = server.address(listener_name)
    else:  # daemond subprocess
        host, port = "127.0.0.1", server.ports[listener_name]
    client = LineClient.__new__(LineClient)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: fixes the window
    sock.settimeout(5.0)
    sock.connect((host, port))
    client.sock, client.timeout, client._buf = sock, 5.0, b""
    return client


def history_rows(db: Path) -> list[tuple]:
    """The rows of a chat history database, read directly."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT seq, kind, name, text FROM messages ORDER BY seq").fetchall()
    finally:
        conn.close()


@pytest.fixture
def chat(daemond_factory):
    """Start a daemon with a chat listener: ``room = chat(**chat_settings)``; ``room.people(...)``."""
    rooms: list[Room] = []

    def start(listener_extra: dict | None = None, plugins=PLUGINS, **chat_settings) -> Room:
        running = daemond_factory(listener(plugins, **(listener_extra or {})), settings(**chat_settings),
                                  **IN_PROCESS)
        room = Room(running)
        rooms.append(room)
        return room

    yield start
    for room in rooms:
        room.close()
