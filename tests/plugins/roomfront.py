"""A second front end to the chat rooms, for tests: it uses the public room API and nothing else.

Behind a login plugin (``plugins: [tests.plugins.fakelogin, tests.plugins.roomfront]``),
one command per line, each answered with ``+OK``/``-ERR`` (the ``RoomError`` token):
``join #r`` (replay as ``EV`` lines), ``part #r``, ``say #r TEXT``, ``act #r TEXT``,
``topic #r [TEXT]``, ``history #r N``, ``members #r``, ``list``. Room events
arrive as ``EV <kind> <room> <name> <text>``.
"""

from daemon import hookimpl


def _line(event) -> bytes:
    return f"EV {event.kind} {event.room} {event.name} {event.text}".rstrip().encode("utf-8") + b"\n"


class RoomFront:
    def __init__(self):
        self.daemon = None

    @hookimpl
    def daemond_start(self, daemon):
        self.daemon = daemon

    def rooms(self):
        return self.daemon.hook.daemond_chat_rooms()

    @hookimpl
    def daemond_line_received(self, session, line):
        word, _, rest = line.partition(" ")
        room, _, text = rest.partition(" ")
        rooms = self.rooms()
        if rooms is None:
            session.err("unavailable", "chat is not loaded")
            return True
        try:
            if word == "join":
                replay = rooms.join(session, room, on_event=lambda event: session.write(_line(event)))
                session.write(b"".join(_line(e) for e in replay) + b"+OK\n")
            elif word == "part":
                rooms.part(session, room)
                session.ok()
            elif word in ("say", "act"):
                seq = (rooms.say if word == "say" else rooms.act)(session, room, text)
                session.ok(str(seq))
            elif word == "topic":
                session.ok(rooms.topic(room, text or None, session=session if text else None))
            elif word == "history":
                events = rooms.history(room, int(text))
                session.write(b"".join(_line(e) for e in events) + b"+OK\n")
            elif word == "members":
                session.ok(" ".join(rooms.members(room)))
            elif word == "list":
                session.ok(" ".join(f"{r.name}={r.members}/{r.messages}/{r.topic}" for r in rooms.list()))
            elif word == "joined":
                session.ok(" ".join(r.name for r in rooms.joined(session)))
            else:
                return None
        except Exception as exc:  # RoomError: its token and text are all this front end needs
            if not hasattr(exc, "token"):
                raise
            session.err(exc.token, exc.text)
        return True

    @hookimpl
    def daemond_session_close(self, session):
        rooms = self.rooms()
        if rooms is not None and session.user is not None:
            rooms.part_all(session)
