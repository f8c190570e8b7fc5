"""``chat``: one chat room per daemon, for users logged in by a plugin before it.

Use it behind a login plugin: ``plugins: [auth, chat]``. A plain line from a
logged-in user goes to every other member as ``MSG <name> <text>``; joins and
parts are announced; the history is kept in SQLite and replayed after login.
The protocol is documented in ``docs/chat.md``; the settings are below.

Chat relies only on the core's session API: ``session.user`` (set by
``session.login(name)``) and the ``daemond_session_login`` /
``daemond_session_close`` hooks.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from daemon import Field, PluginError, PrivateFileError, Schema, SessionEnd, hookimpl, plain_text, split_command

from plugins.chat.history import History
from plugins.chat.room import AlreadyConnected, Room
from plugins.chat.text import sanitize

SCHEMA = Schema({
    "database": Field(str, default="chat.db", help="history database; relative: in the state directory"),
    "history_limit": Field(int, default=10_000, min=1, max=100_000_000, help="messages kept; the oldest are dropped"),
    "replay": Field(int, default=20, min=0, max=1000, help="messages replayed after login"),
    "motd": Field(str, default="", help="message of the day, sent after login (one NOTICE per line)"),
    "on_duplicate_login": Field(str, default="reject", choices=("reject", "replace"),
                                help="a second login of a connected name: refuse it, or close the old session"),
    "rate": Field(float, default=10.0, min=0, help="lines per second a user may send on average; 0: no limit"),
    "burst": Field(int, default=20, min=1, help="lines a user may send at once before the rate applies"),
    "on_flood": Field(str, default="slow", choices=("slow", "cut"),
                      help="a user over the rate: make them wait, or disconnect them"),
    "max_history_request": Field(int, default=1000, min=1, max=100_000, help="the most /history returns"),
    "announce_limit": Field(int, default=None, nullable=True, min=0,
                            help="JOIN and PART go out only while the room has at most this many users; null: always"),
})

COMMANDS = [
    ("/who", "list the users in the room"),
    ("/history [N]", "the last N messages (default 20)"),
    ("/msg NAME TEXT", "send TEXT to NAME only"),
    ("/me TEXT", "tell the room what you are doing"),
]

#: our key in ``session.state``
STATE_KEY = "chat"


class _Bucket:
    """Flood control for one session: a token bucket (the session's own thread only)."""

    def __init__(self, burst: int):
        self.tokens = float(burst)
        self.last = time.monotonic()

    def take(self, rate: float, burst: int) -> float:
        """Spend one token; the seconds to wait until the debt is paid (0: none)."""
        if rate <= 0:
            return 0.0
        now = time.monotonic()
        self.tokens = min(float(burst), self.tokens + (now - self.last) * rate) - 1
        self.last = now
        return 0.0 if self.tokens >= 0 else -self.tokens / rate


class ChatPlugin:
    """The chat room. The loader makes one instance per daemon, so one room per daemon."""

    def __init__(self):
        self.settings: dict[str, Any] = SCHEMA.defaults()
        self.room: Room | None = None
        self.log = None
        self._database = None
        self._stopping = threading.Event()  # set at shutdown: ends flood waits, silences PART
        self._listeners: set[str] = set()  # listeners that serve chat (set.add is atomic: no lock)

    # -- configuration and lifecycle ---------------------------------------------

    @hookimpl
    def daemond_settings_schema(self):
        return SCHEMA

    @hookimpl
    def daemond_configure(self, settings, daemon):
        self.settings = dict(settings)
        self.log = daemon.logger("chat")
        database = daemon.resolve(settings["database"])
        if self.room is not None:
            self.room.history.limit = settings["history_limit"]
            if database != self._database:
                self.log.warning("chat database change to %s applies at the next restart (using %s)",
                                 database, self._database)
        else:
            self._database = database

    @hookimpl
    def daemond_start(self, daemon):
        try:
            history = History(self._database, self.settings["history_limit"], warn=self._not_resident)
        except PrivateFileError as exc:  # a symlink where the history should be
            raise PluginError(str(exc)) from None
        self.room = Room(history)
        self.log.info("chat history %s: %d messages, last #%d", self._database, history.count(), history.last_seq)

    def _not_resident(self, why: str) -> None:
        self.log.warning("the chat history's write-ahead log is not all kept in memory (%s): with a slow disk, "
                         "messages may wait for it; raise the locked-memory limit (LimitMEMLOCK=)", why)

    @hookimpl
    def daemond_stopping(self, daemon):
        self._stopping.set()
        told = 0
        for session in daemon.sessions():  # members, and clients still logging in on a chat listener
            if STATE_KEY in session.state or session.listener in self._listeners:
                told += session.write(b"NOTICE server shutting down, bye\n")
        self.log.info("told %d chat sessions the server is stopping", told)

    @hookimpl
    def daemond_stopped(self, daemon):
        if self.room is not None:
            self.room.history.close()

    @hookimpl
    def daemond_status(self, daemon):
        room = self.room
        if room is None:
            return None
        return {"users": room.size(), "last_message": room.last_seq}

    # -- sessions -----------------------------------------------------------------

    @hookimpl
    def daemond_session_open(self, session):
        self._listeners.add(session.listener)
        session.state.setdefault(STATE_KEY, _Bucket(self.settings["burst"]))

    @hookimpl
    def daemond_session_login(self, session, user):
        self._listeners.add(session.listener)
        session.state.setdefault(STATE_KEY, _Bucket(self.settings["burst"]))
        settings = self.settings
        motd = "".join(f"NOTICE {line}\n" for line in settings["motd"].splitlines() if line.strip())
        try:
            old = self.room.join(session, replace=settings["on_duplicate_login"] == "replace",
                                 replay=settings["replay"], greeting=motd.encode("utf-8"),
                                 announce_limit=settings["announce_limit"])
        except AlreadyConnected:
            self.log.info("refused a second session for %s from %s", user, session.peer_str)
            session.err("already-connected", f"{user} is already connected; closing")
            raise SessionEnd("duplicate") from None
        if old is not None:
            self.log.info("%s logged in again from %s; closing the session from %s",
                          user, session.peer_str, old.peer_str)
            old.write(f"NOTICE replaced: {user} logged in from {session.peer_str}\n".encode("utf-8"))
            old.close("replaced")

    @hookimpl
    def daemond_session_close(self, session, reason):
        if self.room is not None:
            self.room.leave(session, announce=not self._stopping.is_set(),
                            announce_limit=self.settings["announce_limit"])

    @hookimpl
    def daemond_line_commands(self, session):
        return COMMANDS

    @hookimpl
    def daemond_line_received(self, session, line):
        command = split_command(line)
        if command is not None and command[0] in ("/help", "/quit"):
            return None  # the core answers these, with every plugin's commands
        if session.user is None:
            session.err("auth-required", "log in first")
            return True
        if command is None:
            if line.strip():
                self._flood_check(session)
                self._say(session, plain_text(line))
            return True
        name, args = command
        handler = self._commands.get(name)
        if handler is None:
            return None
        self._flood_check(session)
        handler(self, session, args)
        return True

    def _flood_check(self, session) -> None:
        bucket = session.state.setdefault(STATE_KEY, _Bucket(self.settings["burst"]))
        wait = bucket.take(self.settings["rate"], self.settings["burst"])
        if not wait:
            return
        if self.settings["on_flood"] == "cut":
            self.log.warning("flood: %s from %s is over %g lines/s; disconnecting",
                             session.user, session.peer_str, self.settings["rate"])
            session.err("flood", f"more than {self.settings['rate']:g} lines per second; closing")
            raise SessionEnd("flood")
        self._stopping.wait(wait)  # only this client's thread waits; its input backs up in TCP

    # -- what users say -------------------------------------------------------------

    def _say(self, session, raw: str, kind: str = "msg") -> None:
        text = sanitize(raw)
        if not text.strip():
            session.err("bad-text", "nothing printable left in that line")
            return
        try:
            entry = self.room.say(session, kind, text)
        except sqlite3.Error as exc:  # disk full, database removed…: nobody got the message
            self.log.error("chat history %s cannot be written (%s); a message from %s was not sent",
                           self._database, exc, session.user)
            session.err("unavailable", "the chat history cannot be written; message not sent")
            return
        if entry is None:
            session.err("not-in-room", "this session is not in the chat room")
        elif kind == "action":
            session.ok()

    def _cmd_me(self, session, args: str) -> None:
        if not args:
            session.err("bad-argument", "usage: /me TEXT")
            return
        self._say(session, args, kind="action")

    def _cmd_who(self, session, args: str) -> None:
        session.ok(" ".join(self.room.names()))

    def _cmd_history(self, session, args: str) -> None:
        if not args:
            count = 20
        elif args.isdigit() and len(args) < 10:
            count = int(args)
        else:
            session.err("bad-argument", "usage: /history [N] with N a whole number")
            return
        count = min(count, self.settings["max_history_request"])
        entries = self.room.recent(count)
        reply = "".join(e.hist_line() + "\n" for e in entries) + f"+OK {len(entries)}\n"
        session.write(reply.encode("utf-8"))  # one write: the block is never split by live messages

    def _cmd_msg(self, session, args: str) -> None:
        target, _, raw = args.partition(" ")
        if not target or not raw.strip():
            session.err("bad-argument", "usage: /msg NAME TEXT")
            return
        text = sanitize(raw)
        if not text.strip():
            session.err("bad-text", "nothing printable left in that message")
        elif self.room.tell(target, f"PRIV {session.user} {text}"):
            session.ok()
        else:
            session.err("no-such-user", f"{sanitize(target)} is not connected")

    _commands = {"/me": _cmd_me, "/who": _cmd_who, "/history": _cmd_history, "/msg": _cmd_msg}
