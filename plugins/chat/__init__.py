"""``chat``: chat rooms for users logged in by a plugin before it.

Use it behind a login plugin: ``plugins: [auth, chat]``. Every session starts in
the default room; a plain line goes to the session's current room as
``MSG <name> <text>``; ``/join #room`` joins others. Each room has its own
members, order, topic and history (kept in SQLite, replayed on join). The
protocol is documented in ``docs/chat.md``; the settings are below. Another
front end (IRC) reaches the same rooms through the ``daemond_chat_rooms`` hook.

Chat relies only on the core's session API: ``session.user`` (set by
``session.login(name)``) and the ``daemond_session_login`` /
``daemond_session_close`` hooks.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from daemon import Field, PluginError, PrivateFileError, Schema, SessionEnd, hookimpl, plain_text, split_command

from plugins.chat import admin, commands
from plugins.chat.history import History
from plugins.chat.rooms import ROOM_DEFAULTS, ROOM_NAME, RoomError, Rooms

ROOMS_SCHEMA = Schema({
    "create": Field(str, default=ROOM_DEFAULTS["create"], choices=("anyone", "nobody")),
    "max_rooms": Field(int, default=ROOM_DEFAULTS["max_rooms"], min=1),
    "max_joined": Field(int, default=ROOM_DEFAULTS["max_joined"], min=1),
})


def _rooms_problem(value: dict) -> str | None:
    return "; ".join(p.message for p in ROOMS_SCHEMA.validate(value, None, "rooms")[1]) or None


def _room_name_problem(value: str) -> str | None:
    return None if ROOM_NAME.fullmatch(value) else "must be # and 1-32 of A-Z a-z 0-9 _ . -"


SCHEMA = Schema({
    "database": Field(str, default="chat.db", help="history database; relative: in the state directory"),
    "history_limit": Field(int, default=10_000, min=1, max=100_000_000,
                           help="messages kept per room; the oldest are dropped"),
    "replay": Field(int, default=20, min=0, max=1000, help="messages replayed after login and on /join"),
    "motd": Field(str, default="", help="message of the day, sent after login (one NOTICE per line)"),
    "on_duplicate_login": Field(str, default="reject", choices=("reject", "replace"),
                                help="a second login of a connected name: refuse it, or close the old session"),
    "rate": Field(float, default=10.0, min=0, help="lines per second a user may send on average; 0: no limit"),
    "burst": Field(int, default=20, min=1, help="lines a user may send at once before the rate applies"),
    "on_flood": Field(str, default="slow", choices=("slow", "cut"),
                      help="a user over the rate: make them wait, or disconnect them"),
    "max_history_request": Field(int, default=1000, min=1, max=100_000, help="the most /history returns"),
    "announce_limit": Field(int, default=None, nullable=True, min=0,
                            help="JOIN and PART go out only while a room has at most this many users; null: always"),
    "default_room": Field(str, default="#lobby", check=_room_name_problem,
                          help="the room every session starts in (a change applies at the next restart)"),
    "rooms": Field(dict, default=dict(ROOM_DEFAULTS), check=_rooms_problem,
                   help="create: anyone|nobody (who makes rooms by joining them), max_rooms, max_joined"),
})

COMMANDS = commands.USAGE

STATE_KEY = commands.STATE_KEY


class _Seat:
    """A chat session's place: its current room (a Room), None before login."""

    current = None


class ChatPlugin:
    """The chat rooms. The loader makes one instance per daemon, so one set of rooms per daemon."""

    def __init__(self):
        self.settings: dict[str, Any] = SCHEMA.defaults()
        self.rooms: Rooms | None = None
        self.log = None
        self._database = None
        self._default_room = None
        self._stopping = threading.Event()  # set at shutdown: ends flood waits, silences PART
        self._listeners: set[str] = set()  # listeners that serve chat (set.add is atomic: no lock)
        # lines refused for want of Redis, and when that was last logged (see _unavailable; a race
        # between two threads here costs at most a log line)
        self._refused, self._refused_logged = 0, -60.0

    @property
    def room(self):
        """The default room."""
        return None if self.rooms is None else self.rooms.default

    def live_settings(self) -> dict[str, Any]:
        return self.settings

    # -- configuration and lifecycle ---------------------------------------------

    @hookimpl
    def daemond_settings_schema(self):
        return SCHEMA

    @hookimpl
    def daemond_configure(self, settings, daemon):
        settings = dict(settings)
        settings["rooms"] = ROOMS_SCHEMA.validate(settings["rooms"], None, "rooms")[0]
        self.settings = settings
        self.log = daemon.logger("chat")
        database = daemon.resolve(settings["database"])
        if self.rooms is not None:
            if self.rooms.store is not None:
                self.rooms.store.limit = settings["history_limit"]
            if database != self._database:
                self.log.warning("chat database change to %s applies at the next restart (using %s)",
                                 database, self._database)
            if settings["default_room"].lower() != self._default_room.lower():
                self.log.warning("chat default_room change to %s applies at the next restart (using %s)",
                                 settings["default_room"], self._default_room)
        else:
            self._database = database
            self._default_room = settings["default_room"]

    @hookimpl
    def daemond_cluster_ready(self):
        return True  # rooms on Redis Streams, members and users in Redis (shared.py)

    @hookimpl
    def daemond_start(self, daemon):
        if daemon.cluster is not None:
            self._share(daemon.cluster)
            return
        try:
            history = History(self._database, self.settings["history_limit"], warn=self._not_resident,
                              default_room=self._default_room)
        except PrivateFileError as exc:  # a symlink where the history should be
            raise PluginError(str(exc)) from None
        self.rooms = Rooms(history, self._default_room, self.live_settings, self._stopping)
        self.log.info("chat history %s: %d rooms, %d messages in %s, last #%d", self._database,
                      self.rooms.count(), history.count(), self._default_room, history.last_seq)

    @hookimpl
    def daemond_cluster_import(self, daemon) -> list[str]:
        from plugins.chat.shared import SharedChat

        if not self._database.exists():
            return [f"no chat history at {self._database}: nothing to import"]
        try:
            history = History(self._database, self.settings["history_limit"], default_room=self._default_room)
        except PrivateFileError as exc:
            raise PluginError(str(exc)) from None
        shared = SharedChat(daemon.cluster, self.live_settings, self.log)
        rooms = copied = already = 0
        taken: list[str] = []
        try:
            for stored in history.rooms():
                entries = history.recent(history.limit, room=stored.key)
                if not entries and not stored.permanent and stored.key != self._default_room.lower():
                    continue  # made by a join and never spoken in: standalone drops those too
                done, there, refused = shared.import_room(stored, entries, self._default_room.lower())
                rooms, copied, already = rooms + 1, copied + done, already + there
                if refused:
                    taken.append(f"{stored.name} ({refused})")
        finally:
            history.close()
        lines = [f"{copied} messages in {rooms} rooms copied from {self._database}; "
                 f"{already} already in the cluster, left as they are"]
        if taken:
            lines.append("messages not copied, because the cluster's room of that name has a history of its own "
                         f"(they would come after newer ones): {', '.join(taken)}")
        return lines

    def _share(self, cluster) -> None:
        """Keep the rooms, their members and the connected users in the cluster's Redis."""
        from plugins.chat.shared import SharedChat, SharedRooms

        try:
            self.rooms = SharedRooms(SharedChat(cluster, self.live_settings, self.log), self._default_room,
                                     self.live_settings, self._stopping)
        except RoomError as exc:  # Redis unreachable at start: the default room cannot be made
            raise PluginError(f"chat: {exc.text}") from None
        self.rooms.relay.start()
        self.log.info("chat rooms in the cluster's Redis %s (%s*)", cluster.url, cluster.key("chat:"))

    def _not_resident(self, why: str) -> None:
        self.log.warning("the chat history's write-ahead log is not all kept in memory (%s): with a slow disk, "
                         "messages may wait for it", why)

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
        if self.rooms is not None and self.rooms.store is not None:
            self.rooms.store.close()
        elif self.rooms is not None:
            self.rooms.relay.stop()

    @hookimpl
    def daemond_status(self, daemon):
        if self.rooms is None:
            return None
        try:
            return {"users": len(self.rooms.users()), "last_message": self.rooms.default.last_seq,
                    "rooms": self.rooms.count()}
        except RoomError as exc:  # cluster mode, Redis away
            return {"error": exc.text}

    @hookimpl
    def daemond_control_commands(self, daemon):
        return admin.control_commands(self)

    @hookimpl
    def daemond_chat_rooms(self):
        return self.rooms

    # -- sessions -----------------------------------------------------------------

    @hookimpl
    def daemond_session_open(self, session):
        self._listeners.add(session.listener)
        session.state.setdefault(STATE_KEY, _Seat())

    @hookimpl
    def daemond_session_login(self, session, user):
        self._listeners.add(session.listener)
        seat = session.state.setdefault(STATE_KEY, _Seat())
        settings = self.settings
        try:  # one connected session per name, whichever front end it came through
            old = self.rooms.connect(session)
        except RoomError as exc:  # already-connected; unavailable (cluster mode, Redis away)
            self.log.info("refused a %s session for %s from %s: %s",
                          "second" if exc.token == "already-connected" else "chat", user, session.peer_str, exc.text)
            session.err(exc.token, exc.text)
            raise SessionEnd("duplicate" if exc.token == "already-connected" else exc.token) from None
        motd = "".join(f"NOTICE {line}\n" for line in settings["motd"].splitlines() if line.strip())
        try:
            self.rooms.join(session, self.rooms.default.name, greeting=motd.encode("utf-8"), replace=old is not None)
        except RoomError as exc:  # another session of that name is still in the default room
            self.rooms.disconnect(session, announce=False)
            self.log.info("refused a chat session for %s from %s: %s", user, session.peer_str, exc.text)
            session.err(exc.token, exc.text)
            raise SessionEnd("duplicate" if exc.token == "already-connected" else exc.token) from None
        seat.current = self.rooms.default
        if old is not None:
            self.log.info("%s logged in again from %s; closing the session from %s", user, session.peer_str,
                          old.session.peer_str if old.session is not None else f"node {old.node}")
            self.rooms.replaced(old, by=session)

    @hookimpl
    def daemond_session_close(self, session, reason):
        if self.rooms is None or session.user is None:
            return
        self.rooms.disconnect(session, announce=not self._stopping.is_set())

    def user_session(self, name: str):
        """The chat session logged in as ``name`` (not case-sensitive), on any front end, or None."""
        return None if self.rooms is None else self.rooms.user_session(name)

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
            if not line.strip():
                return True
            handler, args = commands.say_plain, plain_text(line)
        else:
            name, args = command
            handler = commands.HANDLERS.get(name)
            if handler is None:
                return None
        self._flood_check(session)
        try:
            handler(self, session, args)
        except RoomError as exc:
            if exc.token == "unavailable" and self.rooms.store is None:  # cluster mode: Redis
                self._unavailable(session, exc)
            elif exc.token == "unavailable":
                self.log.error("chat history %s cannot be written (%s); a message from %s was not sent",
                               self._database, exc.__cause__, session.user)
            session.err(exc.token, exc.text)
        return True

    def _unavailable(self, session, exc: RoomError) -> None:
        """Log that Redis refused a user's line: once, then a count every minute (an outage
        would otherwise log every line of every user)."""
        now = time.monotonic()
        self._refused += 1
        if now - self._refused_logged >= 60:
            self.log.error("chat: %s (%s); %d lines not done since the last such message, the last from %s",
                           exc.text, exc.__cause__, self._refused, session.user)
            self._refused, self._refused_logged = 0, now

    def _flood_check(self, session) -> None:
        try:
            self.rooms.pace(session)  # may wait (on_flood: slow); a client that leaves meanwhile ends
        except SessionEnd:
            self.log.info("flood: %s from %s left with lines held back; dropping them", session.user, session.peer_str)
            raise
        except RoomError as exc:  # on_flood: cut
            self.log.warning("flood: %s from %s is over %g lines/s; disconnecting",
                             session.user, session.peer_str, self.settings["rate"])
            session.err(exc.token, exc.text)
            raise SessionEnd("flood") from None
