"""The room: who is in it, and one global order for everything said there.

Every event that reaches several members (a message, an action, a join, a
part) is sent while the room's lock is held, so all members receive all events
in the same order; a message is committed to the history first, inside the same
lock, so that order is the history's. Sending never blocks: ``Session.write``
tries the socket with ``MSG_DONTWAIT`` and queues what does not fit on that
member's bounded outbox, drained by the daemon's single flusher thread. A
broadcast therefore runs entirely on the sender's thread and wakes no receiver's
thread; a member that stops reading overflows its own queue and is cut by the
core, and nobody else waits for it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from daemon import Session
    from plugins.chat.history import Entry, History


class AlreadyConnected(Exception):
    """A second session for a name that is in the room (and replacing is off)."""


class Room:
    def __init__(self, history: History):
        self.history = history
        # _lock guards _members and makes each room event atomic: sequence number,
        # history commit and the writes to every member's outbox happen under it,
        # which is what gives every member the same order. It is held for one
        # non-blocking write per member, never for I/O that waits on a client.
        self._lock = threading.Lock()
        self._members: dict[str, Session] = {}  # by lower-cased name: names are case-insensitive
        self._delivered_seq = history.last_seq  # the last message every member has been given

    # -- membership ---------------------------------------------------------------

    def join(self, session: Session, *, replace: bool, replay: int, greeting: bytes = b"",
             announce_limit: int | None = None) -> Session | None:
        """Add ``session`` under its user name and announce ``JOIN`` to the others.

        ``greeting`` (the motd) and the last ``replay`` messages as ``HIST`` lines
        are written first, inside the lock, so the newcomer's view runs on from
        the replay without a gap or a repeat. Returns the session it replaced, if
        any; raises :class:`AlreadyConnected` when the name is taken and
        ``replace`` is false. ``JOIN`` is sent only while the room has at most
        ``announce_limit`` members (``None``: always).
        """
        name = session.user
        key = name.lower()
        with self._lock:
            old = self._members.get(key)
            if old is not None and not replace:
                raise AlreadyConnected(name)
            backlog = "".join(e.hist_line() + "\n" for e in self.history.recent(replay, self._delivered_seq))
            self._members[key] = session  # only once the replay could be read
            if greeting or backlog:
                session.write(greeting + backlog.encode("utf-8"))
            # a replaced user never left, so the others hear nothing
            if old is None and (announce_limit is None or len(self._members) <= announce_limit):
                self._fan_out(f"JOIN {name}\n".encode("utf-8"), skip=session)
        return old

    def leave(self, session: Session, announce: bool = True, announce_limit: int | None = None) -> bool:
        """Remove ``session`` if it is the member for its name; tell the others ``PART``
        (if ``announce``, and the room had at most ``announce_limit`` members)."""
        name = session.user
        with self._lock:
            if name is None or self._members.get(name.lower()) is not session:
                return False
            if announce_limit is not None and len(self._members) > announce_limit:
                announce = False
            del self._members[name.lower()]
            if announce:
                self._fan_out(f"PART {name}\n".encode("utf-8"), skip=None)
        return True

    def is_member(self, session: Session) -> bool:
        return session.user is not None and self._members.get(session.user.lower()) is session

    def recent(self, count: int) -> list[Entry]:
        """The last ``count`` messages that every member has been sent, oldest first.

        A member that has received a message finds it here: the bound is read
        under the lock, so it waits for a fan-out in progress to finish.
        """
        with self._lock:
            bound = self._delivered_seq
        return self.history.recent(count, bound)

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._delivered_seq

    def names(self) -> list[str]:
        with self._lock:
            return sorted((s.user for s in self._members.values()), key=lambda n: (n.lower(), n))

    def size(self) -> int:
        return len(self._members)

    # -- speaking ---------------------------------------------------------------

    def say(self, session: Session, kind: str, text: str) -> Entry | None:
        """Commit a message (``kind`` 'msg' or 'action') and send it to every other member.

        Returns the history entry, or ``None`` if ``session`` is not (or no
        longer) the room's member for its name.
        """
        name = session.user
        word = "ACTION" if kind == "action" else "MSG"
        data = f"{word} {name} {text}\n".encode("utf-8")  # encoded once, the same bytes for everyone
        with self._lock:
            if self._members.get(name.lower()) is not session:
                return None
            entry = self.history.append(kind, name, text)  # committed before anyone can see it
            self._fan_out(data, skip=session)
            self._delivered_seq = entry.seq
        return entry

    def tell(self, target: str, line: str) -> bool:
        """Send one line to one member (``PRIV``); False if ``target`` is not here."""
        with self._lock:
            member = self._members.get(target.lower())
        return member is not None and member.write(line.encode("utf-8") + b"\n")

    def notice_all(self, text: str) -> int:
        """``NOTICE text`` to every member; returns how many were told."""
        data = f"NOTICE {text}\n".encode("utf-8")
        with self._lock:
            self._fan_out(data, skip=None)
            return len(self._members)

    def _fan_out(self, data: bytes, skip: Session | None) -> None:  # with _lock held
        for member in self._members.values():
            if member is not skip:
                member.write(data)  # never blocks; a member over its send queue is cut by the core
