"""Chat's line commands: what a logged-in user types, and the reply each gets.

Each handler is ``handler(plugin, session, args)`` on the session's own thread;
it answers with exactly one ``+OK``/``-ERR`` (a :class:`RoomError` becomes the
``-ERR``), except a plain line, which gets no reply unless it fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon import parse_count

from plugins.chat.rooms import RoomError, room_key

if TYPE_CHECKING:  # pragma: no cover
    from plugins.chat import ChatPlugin
    from plugins.chat.room import Room

#: chat's key in ``session.state``
STATE_KEY = "chat"

#: ``/help``'s lines: usage and what it does
USAGE = [
    ("/who", "list the users in the room (/who #room: in that room)"),
    ("/history [N]", "the last N messages (default 20; /history #room N: of that room)"),
    ("/msg NAME TEXT", "send TEXT to NAME only"),
    ("/me TEXT", "tell the room what you are doing"),
    ("/join #room", "join a room (made if new) and talk there"),
    ("/part [#room]", "leave a room (default: the current one)"),
    ("/room #room", "talk in another room you are in"),
    ("/say #room TEXT", "send TEXT to a room you are in, without switching"),
    ("/rooms", "list the rooms"),
    ("/topic [#room] [TEXT]", "show or set a room's topic"),
]


#: /history N: a larger N is a usage error (up to it, N is capped at max_history_request)
_MOST_ASKED = 999_999_999


def current(plugin: ChatPlugin, session) -> Room:
    """The session's current room; if it left that one: the default room if it is there,
    else the room it joined last; ``not-in-room`` if it is in none."""
    seat = session.state[STATE_KEY]
    room = seat.current
    if room is not None and not room.closed and room.has(session):
        return room
    joined = plugin.rooms.joined(session)
    room = plugin.rooms.default if plugin.rooms.default in joined else (joined[-1] if joined else None)
    seat.current = room
    if room is None:
        raise RoomError("not-in-room", "you are in no room: /join #room")
    return room


def _room_first(args: str) -> tuple[str | None, str]:
    """``("#dev", "rest")`` when ``args`` starts with a room name, else ``(None, args)``."""
    if args.startswith("#"):
        name, _, rest = args.partition(" ")
        room_key(name)  # bad-room
        return name, rest.strip()
    return None, args


def say_plain(plugin: ChatPlugin, session, text: str) -> None:
    plugin.rooms.speak(session, current(plugin, session), "msg", text)


def me(plugin: ChatPlugin, session, args: str) -> None:
    if not args:
        session.err("bad-argument", "usage: /me TEXT")
        return
    plugin.rooms.speak(session, current(plugin, session), "action", args)
    session.ok()


def say(plugin: ChatPlugin, session, args: str) -> None:
    name, text = _room_first(args)
    if name is None or not text.strip():
        session.err("bad-argument", "usage: /say #room TEXT")
        return
    plugin.rooms.say(session, name, text)
    session.ok()


def who(plugin: ChatPlugin, session, args: str) -> None:
    room = plugin.rooms.get(args) if args.startswith("#") else current(plugin, session)
    session.ok(" ".join(room.names()))


def history(plugin: ChatPlugin, session, args: str) -> None:
    name, args = _room_first(args)
    room = plugin.rooms.get(name) if name else current(plugin, session)
    count = 20 if not args else parse_count(args)
    if count is None or count > _MOST_ASKED:
        session.err("bad-argument", "usage: /history [#room] [N] with N a whole number")
        return
    entries = room.recent(min(count, plugin.settings["max_history_request"]))
    reply = room.hist_lines(entries) + f"+OK {len(entries)}\n"
    session.write_block(reply.encode("utf-8"))  # unsplit by live messages; the asker waits for it to drain


def msg(plugin: ChatPlugin, session, args: str) -> None:
    target, _, raw = args.partition(" ")
    if not target or not raw.strip():
        session.err("bad-argument", "usage: /msg NAME TEXT")
        return
    plugin.rooms.tell(session, target, raw)  # to a user of any front end; bad-text, no-such-user
    session.ok()


def join(plugin: ChatPlugin, session, args: str) -> None:
    if not args:
        session.err("bad-argument", "usage: /join #room")
        return
    plugin.rooms.join(session, args)  # the replay is written as the reply's data lines
    session.state[STATE_KEY].current = plugin.rooms.joined_room(session, args)
    session.ok()


def part(plugin: ChatPlugin, session, args: str) -> None:
    room = plugin.rooms.joined_room(session, args) if args else current(plugin, session)
    plugin.rooms.part(session, room.name)
    session.ok()


def switch(plugin: ChatPlugin, session, args: str) -> None:
    if not args:
        session.err("bad-argument", "usage: /room #room")
        return
    session.state[STATE_KEY].current = plugin.rooms.joined_room(session, args)
    session.ok()


def rooms(plugin: ChatPlugin, session, args: str) -> None:
    lines = "".join(f"ROOM {r.name} {r.members}{' ' + r.topic if r.topic else ''}\n" for r in plugin.rooms.list())
    session.write_block(f"{lines}+OK\n".encode("utf-8"))


def topic(plugin: ChatPlugin, session, args: str) -> None:
    name, text = _room_first(args)
    if name is None:
        name = current(plugin, session).name
    if not text:
        session.ok(plugin.rooms.topic(name))
        return
    plugin.rooms.topic(name, text, session=session)
    session.ok()


HANDLERS = {"/me": me, "/who": who, "/history": history, "/msg": msg, "/join": join, "/part": part,
            "/room": switch, "/say": say, "/rooms": rooms, "/topic": topic}
