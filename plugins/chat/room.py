"""One room: who is in it, and one order for everything said there.

Every event that reaches several members (a message, an action, a join, a
part, a topic) is sent while the room's lock is held, so all members receive
all events in the same order; a message is committed to the history first,
inside the same lock, so that order is the history's. Sending never blocks:
``Session.write`` tries the socket with ``MSG_DONTWAIT`` and queues what does
not fit on that member's bounded outbox, drained by the daemon's single flusher
thread. A broadcast therefore runs entirely on the sender's thread and wakes no
receiver's thread; a member that stops reading overflows its own queue and is
cut by the core, and nobody else waits for it. A room has no thread: a session
in fifty rooms is fifty dictionary entries.

Members come in three kinds. The chat plugin's own (``on_event`` is ``None``)
get chat's lines, encoded once per event for all of them. A front end's
(``on_event`` given, see :mod:`plugins.chat.rooms`) get a :class:`RoomEvent`
passed to their callback, on the sender's thread, under the room's lock; or,
when it gave a ``render`` function too, the bytes ``render(event)`` returns —
called once per event for all the members that gave the same function —
passed to each member's ``write``, which costs a delivery what a line
client's costs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    from daemon import Session
    from plugins.chat.history import Entry, History


class AlreadyConnected(Exception):
    """A second session for a name that is in the room (and replacing is off)."""


@dataclass(frozen=True)
class RoomEvent:
    """Something that happened in a room, as a front end's callback receives it.

    ``kind``: ``msg``, ``action``, ``join``, ``part``, ``topic``, or ``deleted``
    (the operator deleted the room: you are no longer in it). ``room``: the
    room's name as created (``#Dev``). ``name``: who did it (``None`` for
    ``deleted``). ``text``: what was said, the new topic, or ``""``.
    ``time``: seconds since the epoch. ``seq``: the message's number in the
    room's history (``msg`` and ``action``; 0 for the others).
    """

    kind: str
    room: str
    name: str | None
    text: str
    time: float
    seq: int = 0


@dataclass(frozen=True)
class Member:
    session: Session
    on_event: Callable[[RoomEvent], None] | None  # None: one of chat's own line clients


_WORDS = {"msg": "MSG", "action": "ACTION", "join": "JOIN", "part": "PART", "topic": "TOPIC"}


class Room:
    def __init__(self, key: str, name: str, history: History | None, *, tagged: bool, topic: str = "",
                 permanent: bool = False, delivered: int | None = None):
        self.key = key  # the name in lower case: names are not case-sensitive
        self.name = name  # as created
        self.history = history
        self.permanent = permanent  # made by the operator (or the default room): stays when empty
        self.closed = False  # deleted, or gone once empty: look the room up again
        self._tag = f" {name}" if tagged else ""  # chat's lines carry the room, except the default room's
        # _lock guards _members, topic and closed, and makes each room event atomic:
        # sequence number, history commit and the writes to every member happen under
        # it, which is what gives every member the same order. It is held for one
        # non-blocking write per member, never for I/O that waits on a client.
        self._lock = threading.Lock()
        self._members: dict[str, Member] = {}  # by lower-cased user name
        # the same members split for the fan-out, the hot path (one non-blocking write each):
        # chat's own line clients by their session's write, front ends by their callback
        self._writes: dict[Session, Callable[[bytes], bool]] = {}
        self._callbacks: dict[Session, Callable[[RoomEvent], None]] = {}
        # front ends' members that render: by render function, each member's write
        self._renders: dict[Callable[[RoomEvent], bytes | None], dict[Session, Callable[[bytes], object]]] = {}
        self.topic = topic
        self.topic_by, self.topic_at = "*", time.time()  # who set the topic and when (not kept over a restart)
        # the last message every member has been given
        self._delivered_seq = history.last(key) if delivered is None else delivered

    # -- membership ---------------------------------------------------------------

    def join(self, session: Session, *, replace: bool, replay: int, greeting: bytes = b"",
             announce_limit: int | None = None, on_event: Callable[[RoomEvent], None] | None = None,
             render: Callable[[RoomEvent], bytes | None] | None = None,
             write: Callable[[bytes], object] | None = None) -> tuple[Session | None, list[Entry]] | None:
        """Add ``session`` under its user name and announce ``JOIN`` to the others.

        For chat's own clients, ``greeting`` (the motd) and the last ``replay``
        messages as ``HIST`` lines are written first, inside the lock, so the
        newcomer's view runs on from the replay without a gap or a repeat; a
        front end gets them returned instead. Returns ``(replaced session or
        None, replay)``, or ``None`` if the room is closed (look it up again);
        raises :class:`AlreadyConnected` when the name is taken by another
        session and ``replace`` is false.
        """
        name = session.user
        key = name.lower()
        with self._lock:
            if self.closed:
                return None
            old = self._members.get(key)
            if old is not None and old.session is not session and not replace:
                raise AlreadyConnected(name)
            backlog = self.history.recent(replay, self._delivered_seq, self.key)
            if old is not None:
                self._forget(old.session)
            self._members[key] = Member(session, on_event)  # only once the replay could be read
            self._seat(session, on_event, render, write)
            if on_event is None and (greeting or backlog):
                lines = "".join(e.hist_line(self._tag.strip()) + "\n" for e in backlog)
                session.write_block(greeting + lines.encode("utf-8"))  # never waits: the session's thread
                # waits for it to drain once the lock is released, before it reads its client's next line
            # a replaced user never left, so the others hear nothing
            if old is None and (announce_limit is None or len(self._members) <= announce_limit):
                self._fan_out(RoomEvent("join", self.name, name, "", time.time()), skip=session)
        return (old.session if old is not None and old.session is not session else None), backlog

    def leave(self, session: Session, announce: bool = True, announce_limit: int | None = None) -> bool:
        """Remove ``session`` if it is the member for its name; tell the others ``PART``
        (if ``announce``, and the room had at most ``announce_limit`` members)."""
        name = session.user
        with self._lock:
            member = self._members.get(name.lower()) if name is not None else None
            if member is None or member.session is not session:
                return False
            if announce_limit is not None and len(self._members) > announce_limit:
                announce = False
            del self._members[name.lower()]
            self._forget(session)
            if announce:
                self._fan_out(RoomEvent("part", self.name, name, "", time.time()), skip=None)
        return True

    def has(self, session: Session) -> bool:
        member = self._members.get(session.user.lower()) if session.user else None
        return member is not None and member.session is session

    def is_empty(self) -> bool:
        return not self._members

    def close(self, notice: str | None = None) -> list[Session]:
        """Close the room (it was deleted): every member is told and dropped; returns them."""
        with self._lock:
            self.closed = True
            members, self._members = list(self._members.values()), {}
            self._writes, self._callbacks, self._renders = {}, {}, {}
            now = time.time()
            for member in members:
                if member.on_event is None:
                    lines = f"NOTICE {notice}\n" if notice else ""
                    member.session.write(f"{lines}PART{self._tag} {member.session.user}\n".encode("utf-8"))
                else:
                    member.on_event(RoomEvent("deleted", self.name, None, notice or "", now))
        return [m.session for m in members]

    def close_if_unused(self) -> bool:
        """Close the room if nobody is in it and it has no history and nobody made it to stay."""
        with self._lock:
            if self._members or self.permanent or self.history.last(self.key):
                return False
            self.closed = True
            return True

    def recent(self, count: int) -> list[Entry]:
        """The last ``count`` messages that every member has been sent, oldest first.

        A member that has received a message finds it here: the bound is read
        under the lock, so it waits for a fan-out in progress to finish.
        """
        with self._lock:
            bound = self._delivered_seq
        return self.history.recent(count, bound, self.key)

    def hist_lines(self, entries: list[Entry]) -> str:
        return "".join(e.hist_line(self._tag.strip()) + "\n" for e in entries)

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._delivered_seq

    def names(self) -> list[str]:
        with self._lock:
            return sorted((m.session.user for m in self._members.values()), key=lambda n: (n.lower(), n))

    def size(self) -> int:
        return len(self._members)

    def member(self, name: str) -> Session | None:
        member = self._members.get(name.lower())
        return None if member is None else member.session

    # -- speaking ---------------------------------------------------------------

    def say(self, session: Session, kind: str, text: str) -> Entry | None:
        """Commit a message (``kind`` 'msg' or 'action') and send it to every other member.

        Returns the history entry, or ``None`` if ``session`` is not (or no
        longer) the room's member for its name.
        """
        with self._lock:
            if not self.has(session):
                return None
            entry = self.history.append(kind, session.user, text, self.key)  # committed before anyone sees it
            self._fan_out(RoomEvent(kind, self.name, session.user, text, entry.ts, entry.seq), skip=session)
            self._delivered_seq = entry.seq
        return entry

    def set_topic(self, by: str, text: str, session: Session | None = None) -> bool:
        """Store and announce a new topic (``by``: who set it); False if ``session`` is given and not a member."""
        with self._lock:
            if self.closed or (session is not None and not self.has(session)):
                return False
            self.history.set_topic(self.key, text)
            self.topic, self.topic_by, self.topic_at = text, by, time.time()
            self._fan_out(RoomEvent("topic", self.name, by, text, time.time()), skip=session)
        return True

    def _seat(self, session: Session, on_event: Callable[[RoomEvent], None] | None,
              render: Callable[[RoomEvent], bytes | None] | None, write: Callable[[bytes], object] | None) -> None:
        """From now on ``session`` is given the room's events (with _lock held)."""
        if on_event is None:
            self._writes[session] = session.write
        elif render is not None:
            self._renders.setdefault(render, {})[session] = write or session.write
        else:
            self._callbacks[session] = on_event

    def _forget(self, session: Session) -> None:  # with _lock held
        self._writes.pop(session, None)
        self._callbacks.pop(session, None)
        for render, group in list(self._renders.items()):
            if group.pop(session, None) is not None and not group:
                del self._renders[render]

    def _fan_out(self, event: RoomEvent, skip: Session | None) -> None:  # with _lock held
        if self._writes:
            text = f" {event.text}" if event.kind in ("msg", "action", "topic") else ""
            data = f"{_WORDS[event.kind]}{self._tag} {event.name}{text}\n".encode("utf-8")  # encoded once
            for session, write in self._writes.items():
                if session is not skip:
                    write(data)  # never blocks; a member over its send queue is cut by the core
        for session, on_event in list(self._callbacks.items()):
            if session is not skip:
                try:
                    on_event(event)
                except Exception:  # a front end's bug ends its own session, not the sender's
                    session.close("error")
        for render, group in list(self._renders.items()):
            try:
                data = render(event)  # once for every member that renders alike
                for session, write in group.items():
                    if session is not skip:
                        write(data)  # never blocks, as for line clients
            except Exception:  # a front end's bug ends its own sessions, not the sender's
                for session in list(group):
                    session.close("error")
