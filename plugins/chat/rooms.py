"""Every room of one daemon, and the room API that front ends use.

:class:`Rooms` is what the ``daemond_chat_rooms`` hook returns (see
``daemon/hookspecs.py``): the chat plugin's own commands go through it, and so
does a second front end (IRC), which joins its sessions with an ``on_event``
callback instead of chat's lines. Rooms are looked up by name, not case
sensitive; a room is created on its first join (``rooms.create: anyone``) or by
the operator, and disappears when it has neither members nor history (unless
the operator made it, or it is the default room).
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from daemon import SessionEnd

from plugins.chat.room import AlreadyConnected, Member, Room, RoomEvent
from plugins.chat.text import sanitize, visible

if TYPE_CHECKING:  # pragma: no cover
    from daemon import Session
    from plugins.chat.history import Entry, History

ROOM_NAME = re.compile(r"#[A-Za-z0-9_.-]{1,32}")

ROOM_DEFAULTS = {"create": "anyone", "max_rooms": 1000, "max_joined": 50}


class RoomError(Exception):
    """A room request that cannot be done; ``token`` is the protocol's error token
    (``bad-room``, ``no-such-room``, ``not-in-room``, ``room-limit``, ``bad-text``,
    ``already-connected``, ``unavailable``)."""

    def __init__(self, token: str, text: str):
        super().__init__(text)
        self.token = token
        self.text = text


@dataclass(frozen=True)
class UserInfo:
    """A connected user, as :meth:`Rooms.user` gives it: name as spelled, rooms, connected since."""

    name: str
    rooms: list[str]
    since: float


#: the flood-control bucket's key in ``session.state``
_PACE_KEY = "chat.pace"
#: how often a flood wait checks that its client is still there (seconds)
_GONE_CHECK = 0.2


class Bucket:
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


@dataclass(frozen=True)
class RoomInfo:
    """One room as listed: name as created, members, messages kept, topic."""

    name: str
    members: int
    messages: int
    topic: str


def room_key(name: str) -> str:
    """The room's key (its name in lower case); :class:`RoomError` ``bad-room`` if it is no room name."""
    if not isinstance(name, str) or not ROOM_NAME.fullmatch(name):
        raise RoomError("bad-room", f"{sanitize(str(name))[:40]!r} is not a room name: # and 1-32 of A-Z a-z 0-9 _ . -")
    return name.lower()


class Rooms:
    """The rooms, by key. ``settings()`` gives the live ``rooms`` settings, ``replay`` and ``announce_limit``."""

    def __init__(self, history: History, default_room: str, settings: Callable[[], dict[str, Any]],
                 stopping: threading.Event | None = None):
        self.store = history  # the database
        self._settings = settings
        self._stopping = stopping or threading.Event()  # set at shutdown: ends flood waits
        # _users_lock guards _users: the connected chat user of each (lower-cased) name, on every
        # front end, with the callback that takes its private messages (None: chat's own line client)
        self._users_lock = threading.Lock()
        self._users: dict[str, Member] = {}
        # _lock guards _rooms and _joined. Lock order: this one, then a room's, then the history's.
        self._lock = threading.Lock()
        self._rooms: dict[str, Room] = {}
        self._joined: dict[Session, dict[str, Room]] = {}  # the rooms each session is in, in join order
        default_key = room_key(default_room)
        for stored in history.rooms():
            if stored.key != default_key and not stored.permanent and not stored.last_seq:
                history.drop_room(stored.key)  # made by a join, then left empty (before a crash)
                continue
            self._rooms[stored.key] = Room(stored.key, stored.name, history, tagged=stored.key != default_key,
                                           topic=stored.topic, permanent=stored.permanent)
        if default_key not in self._rooms:
            history.save_room(default_key, default_room)
            self._rooms[default_key] = Room(default_key, default_room, history, tagged=False)
        self.default = self._rooms[default_key]
        self.default.permanent = True

    # -- looking rooms up -------------------------------------------------------------

    def get(self, name: str) -> Room:
        """The room of that name; ``no-such-room`` if there is none."""
        key = room_key(name)
        with self._lock:
            room = self._rooms.get(key)
        if room is None:
            raise RoomError("no-such-room", f"there is no room {name}")
        return room

    def joined(self, session: Session) -> list[Room]:
        """The rooms ``session`` is in, in the order it joined them."""
        with self._lock:
            rooms = self._joined.get(session, {})
            for key in [k for k, r in rooms.items() if r.closed or not r.has(session)]:
                del rooms[key]
            return list(rooms.values())

    def joined_room(self, session: Session, name: str) -> Room:
        """The room of that name if ``session`` is in it; ``bad-room``, ``not-in-room`` otherwise."""
        key = room_key(name)
        for room in self.joined(session):
            if room.key == key:
                return room
        raise RoomError("not-in-room", f"you are not in {name}")

    def _room_for_join(self, name: str, key: str, create: bool | None) -> Room:
        settings = self._settings()["rooms"]
        with self._lock:
            room = self._rooms.get(key)
            if room is not None:
                return room
            if not (create if create is not None else settings["create"] == "anyone"):
                raise RoomError("no-such-room", f"there is no room {name}, and only the operator creates rooms")
            if len(self._rooms) >= settings["max_rooms"]:
                raise RoomError("room-limit", f"there are {len(self._rooms)} rooms already, the most allowed")
            self.store.save_room(key, name)
            room = self._rooms[key] = Room(key, name, self.store, tagged=True)
            return room

    # -- the room API -------------------------------------------------------------------

    def join(self, session: Session, name: str, on_event: Callable[[RoomEvent], None] | None = None, *,
             greeting: bytes = b"", replace: bool = False, create: bool | None = None,
             render: Callable[[RoomEvent], bytes] | None = None,
             write: Callable[[bytes], object] | None = None) -> list[RoomEvent]:
        """Join ``session`` (logged in: ``session.user``) to a room, creating it if allowed; the replay.

        Returns the room's last ``replay`` messages, oldest first, as events
        (``[]`` if the session was in the room already). ``on_event``: see the
        hook's documentation; ``None`` is chat's own line client, which gets the
        replay as ``HIST`` lines. Raises :class:`RoomError`; :class:`AlreadyConnected`
        when another session of that name is in the room and not ``replace``.
        ``render`` and ``write``: see the hook's documentation.
        """
        key = room_key(name)
        settings = self._settings()
        mine = self.joined(session)
        if any(r.key == key for r in mine):
            return []
        if len(mine) >= settings["rooms"]["max_joined"]:
            raise RoomError("room-limit", f"you are in {len(mine)} rooms, the most allowed")
        while True:
            room = self._room_for_join(name, key, create)
            try:
                done = room.join(session, replace=replace, replay=settings["replay"], greeting=greeting,
                                 announce_limit=settings["announce_limit"], on_event=on_event, render=render,
                                 write=write)
            except AlreadyConnected:
                raise RoomError("already-connected", f"another session of {session.user} is in {room.name}") from None
            if done is not None:
                break  # else the room closed meanwhile (deleted, or emptied): look it up again
        old, backlog = done
        with self._lock:
            self._joined.setdefault(session, {})[key] = room
            if old is not None:
                self._joined.get(old, {}).pop(key, None)
        return [_event(room, e) for e in backlog]

    def part(self, session: Session, name: str, *, announce: bool = True) -> None:
        """Take ``session`` out of a room and tell the others ``PART``; ``not-in-room`` if it is not there."""
        room = self.joined_room(session, name)
        self._leave(session, room, announce)

    def part_all(self, session: Session, *, announce: bool = True) -> None:
        """Take ``session`` out of every room (a front end calls it when its session closes)."""
        with self._lock:
            rooms = list(self._joined.pop(session, {}).values())
        for room in rooms:
            self._leave(session, room, announce)

    def _leave(self, session: Session, room: Room, announce: bool) -> None:
        room.leave(session, announce=announce, announce_limit=self._settings()["announce_limit"])
        with self._lock:
            self._joined.get(session, {}).pop(room.key, None)
            if self._joined.get(session) == {}:
                del self._joined[session]
            if room.is_empty() and self._rooms.get(room.key) is room and room.close_if_unused():
                del self._rooms[room.key]
                self.store.drop_room(room.key)

    def say(self, session: Session, name: str, text: str) -> int:
        """Send a message to a room ``session`` is in; its sequence number in the room's history."""
        return self.speak(session, self.joined_room(session, name), "msg", text)

    def act(self, session: Session, name: str, text: str) -> int:
        """``/me``: an action to a room ``session`` is in; its sequence number."""
        return self.speak(session, self.joined_room(session, name), "action", text)

    def speak(self, session: Session, room: Room, kind: str, raw: str) -> int:
        """A message or action (``kind``) to ``room``; its sequence number (chat passes its current room)."""
        text = sanitize(raw)
        if not visible(text):
            raise RoomError("bad-text", "nothing visible left in that line")
        try:
            entry = room.say(session, kind, text)
        except sqlite3.Error as exc:  # disk full, database removed…: nobody got the message
            raise RoomError("unavailable", f"the chat history cannot be written ({exc}); message not sent") from exc
        if entry is None:
            raise RoomError("not-in-room", f"you are not in {room.name}")
        return entry.seq

    def topic(self, name: str, text: str | None = None, session: Session | None = None) -> str:
        """A room's topic; with ``text``, set it first (``session`` must then be in the room;
        ``None`` is the operator) and announce ``TOPIC`` to the members."""
        room = self.get(name) if session is None else self.joined_room(session, name)
        if text is None:
            return room.topic
        clean = sanitize(text).strip()
        if not visible(clean):  # a topic of zero-width characters is no topic
            clean = ""
        try:
            done = room.set_topic(session.user if session is not None else "*", clean, session)
        except sqlite3.Error as exc:
            raise RoomError("unavailable", f"the chat history cannot be written ({exc})") from exc
        if not done:
            raise RoomError("not-in-room", f"you are not in {room.name}")
        return clean

    def topic_setter(self, name: str) -> tuple[str, float]:
        """Who set a room's topic (``*``: the operator, or before the last restart) and when (epoch seconds)."""
        room = self.get(name)
        return room.topic_by, room.topic_at

    def motd(self) -> str:
        """Chat's message of the day (``motd``), for a front end's own greeting."""
        return self._settings()["motd"]

    @staticmethod
    def sanitize(text: str) -> str:
        """``text`` as chat stores and sends it (escape sequences and control characters removed)."""
        return sanitize(text)

    def history(self, name: str, count: int) -> list[RoomEvent]:
        """The room's last ``count`` messages and actions, oldest first."""
        room = self.get(name)
        return [_event(room, e) for e in room.recent(count)]

    def members(self, name: str) -> list[str]:
        """The names in a room, sorted without regard to case."""
        return self.get(name).names()

    def list(self) -> list[RoomInfo]:
        """Every room, sorted by name."""
        with self._lock:
            rooms = sorted(self._rooms.values(), key=lambda r: r.key)
        return [RoomInfo(r.name, r.size(), self.store.count(r.key), r.topic) for r in rooms]

    # -- users: who is connected, on any front end ------------------------------------

    def connect(self, session: Session, on_event: Callable[[RoomEvent], None] | None = None, *,
                replace: bool | None = None) -> Member | None:
        """Make ``session`` the connected chat user of its name, on whichever front end.

        ``replace`` defaults to chat's ``on_duplicate_login``. A name that is
        connected already (by any front end) raises ``already-connected``; with
        ``replace`` the other session is returned instead: pass it to
        :meth:`replaced` once this one is settled (joined its rooms), which
        tells it and closes it. ``on_event`` takes the session's private
        messages (``private``, ``private_action``) and ``replaced`` events;
        ``None`` is chat's own line client.
        """
        if replace is None:
            replace = self._settings()["on_duplicate_login"] == "replace"
        key = session.user.lower()
        with self._users_lock:
            old = self._users.get(key)
            if old is not None and old.session is not session and not replace:
                raise RoomError("already-connected", f"{session.user} is already connected; closing")
            self._users[key] = Member(session, on_event)
        return None if old is None or old.session is session else old

    def replaced(self, old: Member, by: Session) -> None:
        """Tell the session :meth:`connect` replaced that ``by`` logged in as its name, and close it."""
        self._tell_replaced(old, f"{by.user} logged in from {by.peer_str}", by.user)

    @staticmethod
    def _tell_replaced(old: Member, notice: str, by: str) -> None:
        if old.on_event is None:
            old.session.write(f"NOTICE replaced: {notice}\n".encode("utf-8"))
        else:
            try:
                old.on_event(RoomEvent("replaced", "", by, notice, time.time()))
            except Exception:
                pass  # it is closed anyway
        old.session.close("replaced")

    def disconnect(self, session: Session, *, announce: bool = True) -> None:
        """The session is ending: out of every room, and no longer its name's connected user."""
        if session.user is not None:
            with self._users_lock:
                member = self._users.get(session.user.lower())
                if member is not None and member.session is session:
                    del self._users[session.user.lower()]
        self.part_all(session, announce=announce)

    def user_session(self, name: str) -> Session | None:
        """The connected session of ``name`` (not case-sensitive), on any front end, or None."""
        with self._users_lock:
            member = self._users.get(name.lower())
        return None if member is None else member.session

    def user(self, name: str) -> UserInfo | None:
        """``name``'s connected user, or None: its name as spelled, the rooms it is in, since when."""
        session = self.user_session(name)
        if session is None:
            return None
        return UserInfo(session.user, [r.name for r in self.joined(session)], session.connected_at)

    def users(self) -> list[str]:
        """Every connected user's name."""
        with self._users_lock:
            return sorted((m.session.user for m in self._users.values()), key=lambda n: (n.lower(), n))

    def tell(self, session: Session, name: str, raw: str, *, action: bool = False) -> None:
        """A private message (``/msg``; ``action``: a ``/me``) from ``session`` to the user ``name``.

        A line client receives ``PRIV <from> <text>`` (an action: ``PRIV <from> * <from> <text>``);
        a front end's session a ``private`` or ``private_action`` event. ``bad-text``,
        ``no-such-user`` (not connected, or its send queue overflowed)."""
        text = sanitize(raw)
        if not visible(text):
            raise RoomError("bad-text", "nothing visible left in that message")
        with self._users_lock:
            member = self._users.get(name.lower())
        if member is None or not self._private(member, session.user, text, action):
            raise RoomError("no-such-user", f"{sanitize(name)} is not connected")

    @staticmethod
    def _private(member: Member, sender: str, text: str, action: bool) -> bool:
        """Give ``member`` a private message from ``sender``; False if it could not take it."""
        if member.on_event is None:
            line = f"* {sender} {text}" if action else text
            return member.session.write(f"PRIV {sender} {line}\n".encode("utf-8"))
        kind = "private_action" if action else "private"
        try:
            member.on_event(RoomEvent(kind, "", sender, text, time.time()))
            return not member.session.peer_closed()
        except Exception:
            member.session.close("error")
            return False

    def pace(self, session: Session) -> None:
        """Flood control, the same for every front end: spend one of the session's lines.

        Over ``rate`` (with ``burst``), ``on_flood: slow`` waits here (the session's own
        thread; its input backs up in TCP) and ``cut`` raises ``RoomError("flood", …)``:
        the front end says so and ends the session. A client that leaves while it waits
        raises :class:`daemon.SessionEnd` ``eof``.
        """
        settings = self._settings()
        bucket = session.state.get(_PACE_KEY)
        if bucket is None:
            bucket = session.state[_PACE_KEY] = Bucket(settings["burst"])
        wait = bucket.take(settings["rate"], settings["burst"])
        if not wait:
            return
        if settings["on_flood"] == "cut":
            raise RoomError("flood", f"more than {settings['rate']:g} lines per second; closing")
        deadline = time.monotonic() + wait
        while not self._stopping.wait(min(_GONE_CHECK, max(0.0, deadline - time.monotonic()))):
            if session.peer_closed():
                raise SessionEnd("eof")  # the serving loop keeps a kick's own reason
            if time.monotonic() >= deadline:
                return

    # -- the operator's --------------------------------------------------------------

    def create(self, name: str) -> Room:
        """Make a room that stays when empty (``daemonctl rooms create``)."""
        key = room_key(name)
        room = self._room_for_join(name, key, create=True)
        room.permanent = True
        self.store.save_room(key, room.name, room.topic, permanent=True)
        return room

    def delete(self, name: str) -> list[Session]:
        """Delete a room and its history; its members are told. Returns them."""
        room = self.get(name)
        if room is self.default:
            raise RoomError("bad-room", f"{room.name} is the default room; it cannot be deleted")
        with self._lock:
            if self._rooms.get(room.key) is room:
                del self._rooms[room.key]
        members = room.close(f"{room.name} was deleted by the operator")
        self.store.drop_room(room.key)
        with self._lock:
            for session in members:
                self._joined.get(session, {}).pop(room.key, None)
        return members

    def count(self) -> int:
        return len(self._rooms)


def _event(room: Room, entry: Entry) -> RoomEvent:
    return RoomEvent(entry.kind, room.name, entry.name, entry.text, entry.ts, entry.seq)
