"""``irc``: the IRC client protocol, in front of ``auth``'s users and ``chat``'s rooms.

A listener with ``plugins: [irc]`` speaks IRC (RFC 2812 and the Modern IRC
client protocol, with the IRCv3 capabilities ``server-time``, ``echo-message``,
``batch``, ``message-tags`` and ``sasl``). Its users are ``auth``'s — logged in
with ``PASS`` or SASL ``PLAIN`` through the ``daemond_account_login`` hook, with
auth's throttles — and its channels are ``chat``'s rooms, through the
``daemond_chat_rooms`` hook: an IRC user in ``#lobby`` and a line-protocol user
in the default room see each other. It uses only the public API, as a
third-party front end would; ``daemond_requires`` makes a config without
``auth`` or ``chat`` invalid. The protocol, the mapping and what is not
implemented: ``docs/irc.md``.

Like ``auth``, ``irc`` is its listener's login gate: a connection registers in
``daemond_session_open``, on its own thread, and is served there to its end
(:mod:`plugins.irc.connection`).
"""

from __future__ import annotations

import re
import threading
from typing import Any

from daemon import Field, Schema, hookimpl

from plugins.irc.connection import Connection, RoomLines
from plugins.irc.message import closing_link

NAME_RULE = r"[A-Za-z0-9.-]+"


def _server_name_problem(value: str) -> str | None:
    return None if re.fullmatch(NAME_RULE, value) and len(value) <= 63 else \
        "must be a host-like name: A-Z a-z 0-9 . - (at most 63)"


def _network_problem(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", value) else "must be 1-32 of A-Z a-z 0-9 _ . -"


SCHEMA = Schema({
    "server_name": Field(str, default="irc.daemond.local", check=_server_name_problem,
                         help="the server's name in replies"),
    "network": Field(str, default="daemond", check=_network_problem, help="NETWORK= in RPL_ISUPPORT"),
    "guests": Field(bool, default=False,
                    help="true: a nickname that is not a registered user may chat without a password"),
    "ping_interval": Field(float, default=120.0, min=1, help="seconds of silence before the server sends PING"),
    "ping_timeout": Field(float, default=60.0, min=1,
                          help="seconds to answer it before 'Ping timeout' (and to register at all)"),
})


class IrcPlugin:
    """One per daemon: the settings, and the registered IRC connections by nickname."""

    def __init__(self):
        self.settings: dict[str, Any] = SCHEMA.defaults()
        self.daemon = None
        self.log = None
        self.stopping = threading.Event()  # set at shutdown: nobody is told PART
        # _lock guards _connections: each registered connection, by lower-cased nickname
        self._lock = threading.Lock()
        self._connections: dict[str, Connection] = {}
        self._room_lines: dict[tuple[str, bool], RoomLines] = {}  # dict get/set are atomic: no lock

    # -- configuration and lifecycle ---------------------------------------------

    @hookimpl
    def daemond_settings_schema(self):
        return SCHEMA

    @hookimpl
    def daemond_requires(self):
        return ["auth", "chat"]

    @hookimpl
    def daemond_cluster_ready(self):
        return True  # its users and rooms are auth's and chat's, which are shared; AWAY and real names stay per node

    @hookimpl
    def daemond_configure(self, settings, daemon):
        self.settings = dict(settings)
        self.log = daemon.logger("irc")

    def room_lines(self, server: str, server_time: bool) -> RoomLines:
        """The shared renderer of room events for connections of that server name and server-time."""
        key = (server, server_time)
        lines = self._room_lines.get(key)
        if lines is None:  # a race makes two equal renderers at worst: each renders for its own members
            lines = self._room_lines[key] = RoomLines(server, server_time)
        return lines

    @hookimpl
    def daemond_start(self, daemon):
        self.daemon = daemon

    @hookimpl
    def daemond_stopping(self, daemon):
        self.stopping.set()

    @hookimpl
    def daemond_status(self, daemon):
        with self._lock:
            return {"users": len(self._connections)}

    def rooms(self):
        return self.daemon.hook.daemond_chat_rooms()

    # -- the registry of connections, for AWAY and WHOIS ---------------------------

    def add(self, connection: Connection) -> None:
        with self._lock:
            self._connections[connection.nick.lower()] = connection

    def remove(self, connection: Connection) -> None:
        with self._lock:
            if connection.nick and self._connections.get(connection.nick.lower()) is connection:
                del self._connections[connection.nick.lower()]

    def connection(self, nick: str) -> Connection | None:
        with self._lock:
            return self._connections.get(nick.lower())

    # -- sessions -----------------------------------------------------------------

    @hookimpl
    def daemond_login_gate(self):
        return True  # a connection registers here first (max_unauthenticated_per_ip applies)

    @hookimpl
    def daemond_farewell(self, reason, text):
        """A connection the daemon refuses or ends (over a limit, kicked, its listener removed)
        hears why as IRC's ERROR, not as the line protocol's -ERR or NOTICE."""
        if reason == "kicked":
            text = f"Kicked by the operator: {text}" if text else "Kicked by the operator"
        return closing_link(self.settings["server_name"], text)

    @hookimpl
    def daemond_session_open(self, session):
        connection = session.state["irc"] = Connection(self, session)
        connection.run()

    @hookimpl
    def daemond_session_close(self, session, reason):
        connection = session.state.get("irc")
        if connection is not None:
            connection.close(reason)
