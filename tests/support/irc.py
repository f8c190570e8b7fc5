"""Helpers for the IRC tests: a daemon with an IRC and a line-protocol listener, and a raw IRC client."""

from __future__ import annotations

import base64
import socket
import ssl

from daemon.testing import LineClient
from tests.support.chat import CHEAP_ARGON2, login, password

SERVER = "irc.test.local"


def listeners(tls: dict | None = None, **irc) -> dict:
    """A line-protocol chat listener ``chat`` and an IRC listener ``irc``."""
    spec = {"plugins": ["irc"], **irc}
    if tls is not None:
        spec["tls"] = tls
    return {"chat": {"plugins": ["auth", "chat"]}, "irc": spec}


def settings(auth: dict | None = None, chat: dict | None = None, **irc) -> dict:
    """``plugins:``: cheap argon2 and no throttles (unless given), chat without flood control."""
    return {"auth": {"argon2": CHEAP_ARGON2, "max_attempts": 1000, "register_per_address": None,
                     "register_total": None, **(auth or {})},
            "chat": {"rate": 0, **(chat or {})},
            "irc": {"server_name": SERVER, **irc}}


def start(daemond_factory, tls: dict | None = None, auth: dict | None = None, chat: dict | None = None,
          listener: dict | None = None, **irc):
    return daemond_factory(listeners(tls, **(listener or {})), settings(auth, chat, **irc), reload={"watch": False})


def register_user(server, name: str, secret: str | None = None) -> None:
    """Add the user ``name`` (its password ``secret``, else ``password(name)``) as an operator
    would, with ``daemonctl users add``: nobody logs in, so no room hears of it."""
    reply = server.control("users", "add", name, password=secret or password(name))
    assert reply["ok"] or "already exists" in reply["error"]["message"], reply


def line_user(server, name: str) -> LineClient:
    """A line-protocol client logged in as ``name`` (registered if new), its login lines read."""
    client = server.client("chat")
    client.login_lines = login(client, name)
    return client


class IrcClient:
    """A raw IRC client: lines out, lines in (without CR LF), nothing interpreted."""

    def __init__(self, address: tuple[str, int], timeout: float = 10.0, tls: ssl.SSLContext | None = None):
        sock = socket.create_connection(address, timeout=timeout)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.buffer = b""
        self.nick = "*"

    def __enter__(self) -> IrcClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode("utf-8") + b"\r\n")

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> str:
        while b"\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"connection closed; unread: {self.buffer!r}")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line.decode("utf-8")

    def until(self, end: str) -> list[str]:
        """Lines up to and including the first that contains ``end``."""
        lines = []
        while True:
            line = self.read()
            lines.append(line)
            if end in line:
                return lines

    def closed(self) -> list[str]:
        """Every line until the server closes the connection."""
        lines = []
        while True:
            try:
                lines.append(self.read())
            except (EOFError, ConnectionError):
                return lines

    def register(self, nick: str, password_: str | None = None, caps: tuple[str, ...] = (), sasl: str | None = None):
        """Register; the lines up to the end of the MOTD (376 or 422)."""
        if caps or sasl:
            self.send("CAP LS 302")
        if password_ is not None:
            self.send(f"PASS {password_}")
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :Real {nick}")
        if caps or sasl:
            self.read()  # CAP * LS
            wanted = list(caps) + (["sasl"] if sasl else [])
            self.send(f"CAP REQ :{' '.join(wanted)}")
            assert " ACK " in self.read()
            if sasl:
                self.send("AUTHENTICATE PLAIN")
                assert self.read() == "AUTHENTICATE +"
                self.send("AUTHENTICATE " + sasl_plain(nick, sasl))
                self.until(" 903 ")
            self.send("CAP END")
        lines = self.until("MOTD")
        self.nick = nick
        return lines


def sasl_plain(name: str, secret: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{name}\0{secret}".encode()).decode()


__all__ = ["IrcClient", "SERVER", "listeners", "settings", "start", "register_user", "line_user", "password",
           "sasl_plain"]
