"""One IRC client: registration, then its commands, on the connection's own thread.

:meth:`Connection.run` is the whole session: it reads lines with the core's
``session.read_line`` (over-long and badly encoded lines answered in IRC's
terms), registers the client (``CAP``, ``NICK``, ``USER``, ``PASS``,
``AUTHENTICATE``: :mod:`plugins.irc.registration`), then serves its commands, sending ``PING`` after
``ping_interval`` seconds of silence. A room's messages, joins, parts and
topics come from other threads, under the room's lock, rendered once per event
for every IRC member by a shared :class:`RoomLines` and written through
``Connection._room_write`` (the rooms API's ``render`` and ``write``); the rest
(a deleted room, private messages) through :meth:`Connection.on_event`.
Neither ever blocks. Every reply's exact format is in
``docs/irc.md`` and tested in ``tests/integration/test_irc_conformance.py``.
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from daemon import SessionEnd

from plugins.irc.message import BODY_LIMIT, BadMessage, body, closing_link, fit, format_message, parse
from plugins.irc.registration import TARGMAX, Registration

if TYPE_CHECKING:  # pragma: no cover
    from daemon import Session

    from plugins.irc import IrcPlugin

_batches = itertools.count(1)


class RoomLines:
    """A room event as the IRC line every member gets (the rooms API's ``render``): one per
    server name and server-time, shared by all connections, called once per event."""

    def __init__(self, server: str, server_time: bool):
        self.server = server
        self.server_time = server_time

    def __call__(self, event: Any) -> bytes:
        who = event.name
        source = self.server if who in (None, "*") else f"{who}!{who}@{self.server}"
        tags = {"time": _time_tag(event.time)} if self.server_time else None
        kind = event.kind
        if kind == "msg":
            line = format_message(source, "PRIVMSG", event.room, event.text, tags=tags)
        elif kind == "action":
            line = format_message(source, "PRIVMSG", event.room, f"\x01ACTION {event.text}\x01", tags=tags)
        elif kind == "topic":
            line = format_message(source, "TOPIC", event.room, event.text, tags=tags)
        else:  # join, part
            line = format_message(source, kind.upper(), event.room, tags=tags)
        return fit(line)


def _time_tag(when: float) -> str:
    moment = datetime.fromtimestamp(when, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Connection(Registration):
    def __init__(self, plugin: IrcPlugin, session: Session):
        self.plugin = plugin
        self.session = session
        settings = plugin.settings
        self.server = settings["server_name"]
        self.settings = settings
        self.nick: str | None = None
        self.username: str | None = None
        self.realname = ""
        self.password: str | None = None
        self.caps: set[str] = set()
        self.negotiating = False  # CAP LS/REQ seen and no CAP END yet: registration waits
        self.registered = False
        self.away: str | None = None
        self.sasl: list[str] | None = None  # base64 chunks of a SASL PLAIN exchange under way
        self.closed_with_error = False
        self.rooms = plugin.rooms()
        # _hold_lock guards _holding and _held: the rooms' lines that come while this client's
        # JOIN is being answered (JOIN, topic, names, replay), sent right after it
        self._hold_lock = threading.Lock()
        self._holding = False
        self._held: list[bytes] = []

    # -- writing ----------------------------------------------------------------

    @property
    def me(self) -> str:
        """The client's nickname in replies: ``*`` until it has registered."""
        return self.nick if self.registered else "*"

    def prefix(self, nick: str) -> str:
        return f"{nick}!{nick}@{self.server}"

    def send(self, *params: str, source: str | None = None, tags: dict[str, str] | None = None) -> bool:
        return self.session.write(fit(format_message(source or self.server, *params, tags=tags)))

    def numeric(self, code: str, *params: str) -> bool:
        """A numeric reply; its last parameter is trailing (text), but for the few that end in a token."""
        line = format_message(self.server, code, self.me, *params, trailing=code not in _TOKEN_LAST)
        return self.session.write(fit(line))

    def error(self, text: str) -> None:
        """The ERROR line before the connection closes (once)."""
        if not self.closed_with_error:
            self.closed_with_error = True
            self.session.write(closing_link(self.server, text))

    def _tags(self, when: float) -> dict[str, str] | None:
        return {"time": _time_tag(when)} if "server-time" in self.caps else None

    # -- the session ------------------------------------------------------------

    def run(self) -> None:
        deadline = time.monotonic() + self.settings["ping_timeout"]  # to register at all
        while not self.registered:
            left = deadline - time.monotonic()
            if left <= 0:
                self.error("Registration timeout")
                raise SessionEnd("timeout")
            line = self._read(left)
            if line is not None:
                self.dispatch(line)
        self.serve()

    def _read(self, timeout: float) -> str | None:
        try:
            line = self.session.read_line(timeout=timeout, on_bad_line=self._bad_line)
        except SessionEnd as end:
            if end.reason == "timeout":
                return None  # the caller's deadline decides
            raise
        if len(body(line).encode("utf-8")) > BODY_LIMIT:
            self.numeric("417", "Input line was too long")
            return None
        return line

    def _bad_line(self, token: str, text: str) -> None:
        if token == "line-too-long":
            self.numeric("417", "Input line was too long")
        else:
            self.send("NOTICE", self.me, "Lines must be UTF-8 text; line discarded")

    def serve(self) -> None:
        interval, timeout = self.settings["ping_interval"], self.settings["ping_timeout"]
        pinged = False
        deadline = time.monotonic() + interval
        while True:
            line = self._read(max(0.001, deadline - time.monotonic()))
            if line is None:
                if time.monotonic() < deadline:
                    continue  # a line answered with 417
                if pinged:
                    self.error(f"Ping timeout: {timeout:g} seconds")
                    raise SessionEnd("timeout")
                self.session.write(fit(format_message(None, "PING", self.server)))
                pinged, deadline = True, time.monotonic() + timeout
                continue
            pinged, deadline = False, time.monotonic() + interval
            self._pace()
            self.dispatch(line)

    def _pace(self) -> None:
        """Spend one of chat's flood-control tokens, as a line client's line does: per line, per
        target past a PRIVMSG's or NOTICE's first (to four users is four messages), and per room a
        JOIN makes past its first."""
        try:
            self.rooms.pace(self.session)
        except Exception as exc:
            if getattr(exc, "token", None) != "flood":
                raise
            self.plugin.log.warning("flood: %s from %s is over chat's rate; disconnecting",
                                    self.nick, self.session.peer_str)
            self.error("Excess Flood")
            raise SessionEnd("flood") from None

    def _targets(self, command: str, spec: str) -> list[str]:
        """The distinct targets of a comma-separated list, in order and not case-sensitive, at most
        TARGMAX of them (past it: one 407, none for NOTICE)."""
        distinct: dict[str, str] = {}
        for target in spec.split(","):
            if target:
                distinct.setdefault(target.lower(), target)
        targets = list(distinct.values())
        limit = TARGMAX[command]
        if limit is not None and len(targets) > limit:
            if command != "NOTICE":
                self.numeric("407", targets[limit], f"Too many targets: at most {limit} per {command}; not sent")
            targets = targets[:limit]
        return targets

    def dispatch(self, line: str) -> None:
        try:
            message = parse(line)
        except BadMessage:
            return  # an empty line, or tags alone: ignored, as the spec allows
        command = message.command
        if not self.registered and command not in _BEFORE_REGISTRATION:
            self.numeric("451", "You have not registered")
            return
        handler = _HANDLERS.get(command)
        if handler is None:
            self.numeric("421", command, "Unknown command")
            return
        minimum = _MIN_PARAMS.get(command, 0)
        if len(message.params) < minimum:
            self.numeric("461", command, "Not enough parameters")
            return
        try:
            handler(self, message.params)
        except Exception as exc:
            if getattr(exc, "token", None) != "unavailable":
                raise
            # cluster mode, Redis away: this command could not be done; the connection lives
            self.send("NOTICE", self.me, f"{command} not done: {exc.text}")

    def close(self, reason: str) -> None:
        """The session is ending (daemond_session_close): out of the rooms, the account logged out."""
        self.password = None  # a PASS never used (registration not finished) is not kept either
        if reason == "quit":
            pass  # QUIT sent its own ERROR
        elif reason == "shutdown":
            self.error("Server shutting down")
        elif reason == "replaced":
            self.error("Replaced by a new login of this nickname")
        elif reason == "error":  # a bug here (logged with its traceback): the client is told, as for any close
            self.error("Internal error")
        elif reason == "cluster":  # cluster mode: this node lost Redis, or the cluster took its users for gone
            self.error("Cut off from the cluster; reconnect")
        elif reason not in ("overflow", "reset", "eof", "too-many-connections", "kicked", "listener-removed"):
            # (the last three were told by daemond_farewell)
            self.error(reason)
        if self.registered and self.session.user is not None:
            self.rooms.disconnect(self.session, announce=not self.plugin.stopping.is_set())
            self.plugin.remove(self)
        self.session.daemon.hook.daemond_account_logout(session=self.session)

    # -- room events (any thread, under the room's lock) ---------------------------

    def on_event(self, event: Any) -> None:
        """What the room does not render for us: ``deleted``, private messages, ``replaced``."""
        data = self._event_line(event)
        if data is not None:
            self.session.write(data)

    def _room_write(self, data: bytes) -> bool:
        """A room's rendered line for this client (any thread, under the room's lock); held back
        while a JOIN's own lines are being written, so that nothing comes before them."""
        if self._holding:  # read without the lock: only a JOIN on this client's thread sets it
            with self._hold_lock:
                if self._holding:
                    self._held.append(data)
                    return True
        return self.session.write(data)

    def _event_line(self, event: Any) -> bytes | None:
        kind, who = event.kind, event.name
        source = self.server if who in (None, "*") else self.prefix(who)
        tags = self._tags(event.time)
        if kind in ("msg", "action", "join", "part", "topic"):  # the room renders these
            return RoomLines(self.server, tags is not None)(event)
        if kind == "deleted":
            line = format_message(self.server, "KICK", event.room, self.me, event.text or "room deleted", tags=tags)
        elif kind == "private":
            line = format_message(source, "PRIVMSG", self.me, event.text, tags=tags)
        elif kind == "private_action":
            line = format_message(source, "PRIVMSG", self.me, f"\x01ACTION {event.text}\x01", tags=tags)
        elif kind == "replaced":
            line = format_message(self.server, "NOTICE", self.me, f"replaced: {event.text}", tags=tags)
        else:
            return None
        return fit(line)

    # -- channels ---------------------------------------------------------------------

    def join(self, params: list[str]) -> None:
        if params[0] == "0":
            for room in self.rooms.joined(self.session):
                self._part(room.name, None)
            return
        for i, name in enumerate(self._targets("JOIN", params[0])):
            if self._in(name):
                continue  # a JOIN of a room already joined gets no reply
            if i and self._new_room(name):
                self._pace()  # a room made is a database write: each costs a line, as a /join would
            self._join(name)

    def _new_room(self, name: str) -> bool:
        try:
            self.rooms.get(name)
        except Exception as exc:
            return getattr(exc, "token", None) == "no-such-room"
        return False

    def _join(self, name: str) -> None:
        with self._hold_lock:
            self._holding = True
        try:
            render = self.plugin.room_lines(self.server, "server-time" in self.caps)
            try:  # another session of this name in the room is one being replaced: it goes quietly
                replay = self.rooms.join(self.session, name, self.on_event, replace=True, render=render,
                                         write=self._room_write)
                room = self.rooms.joined_room(self.session, name)
            except Exception as exc:
                self._room_error(exc, name)
                return
            self.send("JOIN", room.name, source=self.prefix(self.nick), tags=self._tags(time.time()))
            if room.topic:
                self._topic_reply(room)
            self._names(room.name)
            self._replay(room.name, replay)
        finally:
            with self._hold_lock:
                held, self._held, self._holding = self._held, [], False
                if held:
                    self.session.write(b"".join(held))

    def _replay(self, room: str, events: list[Any]) -> None:
        if not events:
            return
        if "server-time" in self.caps:
            batch = f"h{next(_batches)}" if "batch" in self.caps else None
            lines = []
            if batch:
                lines.append(format_message(self.server, "BATCH", f"+{batch}", "chathistory", room))
            for event in events:
                tags = {"time": _time_tag(event.time)}
                if batch:
                    tags["batch"] = batch
                text = event.text if event.kind == "msg" else f"\x01ACTION {event.text}\x01"
                lines.append(format_message(self.prefix(event.name), "PRIVMSG", room, text, tags=tags))
            if batch:
                lines.append(format_message(self.server, "BATCH", f"-{batch}"))
        else:
            lines = []
            for event in events:
                stamp = datetime.fromtimestamp(event.time, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
                said = f"<{event.name}> {event.text}" if event.kind == "msg" else f"* {event.name} {event.text}"
                lines.append(format_message(self.server, "NOTICE", room, f"[{stamp}] {said}"))
        self.session.write_block(b"".join(fit(line) for line in lines))

    def part(self, params: list[str]) -> None:
        reason = params[1] if len(params) > 1 else None
        for name in self._targets("PART", params[0]):
            self._part(name, reason)

    def _part(self, name: str, reason: str | None) -> None:
        try:
            room = self.rooms.joined_room(self.session, name)
            self.rooms.part(self.session, room.name)
        except Exception as exc:
            self._room_error(exc, name)
            return
        params = (room.name, reason) if reason else (room.name,)
        self.send("PART", *params, source=self.prefix(self.nick), tags=self._tags(time.time()))

    def _room_error(self, exc: Exception, name: str) -> None:
        token = getattr(exc, "token", None)
        if token is None:
            raise exc
        if token == "not-in-room":
            self.numeric("442", name, "You're not on that channel")
        elif token == "room-limit":
            self.numeric("405", name, "You have joined too many channels")
        elif token in ("bad-room", "no-such-room"):
            self.numeric("403", name, "No such channel")
        elif token == "unavailable":
            self.send("NOTICE", self.me, exc.text)
        else:
            self.numeric("403", name, exc.text)

    def topic(self, params: list[str]) -> None:
        name = params[0]
        try:
            room = self.rooms.get(name)
            if len(params) < 2:
                self._topic_reply(room)
                return
            text = self.rooms.topic(room.name, params[1], session=self.session)
        except Exception as exc:
            self._room_error(exc, name)
            return
        self.send("TOPIC", room.name, text, source=self.prefix(self.nick), tags=self._tags(time.time()))

    def _topic_reply(self, room: Any) -> None:
        if not room.topic:
            self.numeric("331", room.name, "No topic is set")
            return
        self.numeric("332", room.name, room.topic)
        by, when = self.rooms.topic_setter(room.name)
        self.numeric("333", room.name, by if by != "*" else self.server, str(int(when)))

    def names(self, params: list[str]) -> None:
        if not params:
            self.numeric("366", "*", "End of /NAMES list")
            return
        for name in list(self._targets("NAMES", params[0])) or [params[0]]:
            self._names(name)

    def _names(self, name: str) -> None:
        try:
            room = self.rooms.get(name)
        except Exception as exc:
            if getattr(exc, "token", None) is None:
                raise
            self.numeric("366", name, "End of /NAMES list")
            return
        head = f":{self.server} 353 {self.me} = {room.name} :"
        line: list[str] = []
        size = len(head.encode("utf-8"))
        for member in self.rooms.members(room.name):
            if line and size + len(member) + 1 > BODY_LIMIT:
                self.numeric("353", "=", room.name, " ".join(line))
                line, size = [], len(head.encode("utf-8"))
            line.append(member)
            size += len(member) + 1
        if line:
            self.numeric("353", "=", room.name, " ".join(line))
        self.numeric("366", room.name, "End of /NAMES list")

    def list_command(self, params: list[str]) -> None:
        wanted = {n.lower() for n in params[0].split(",")} if params else None
        self.numeric("321", "Channel", "Users  Name")
        for info in self.rooms.list():
            if wanted is None or info.name.lower() in wanted:
                self.numeric("322", info.name, str(info.members), info.topic)
        self.numeric("323", "End of /LIST")

    # -- messages ----------------------------------------------------------------------

    def privmsg(self, params: list[str], notice: bool = False) -> None:
        command = "NOTICE" if notice else "PRIVMSG"
        if not params or not params[0]:
            if not notice:
                self.numeric("411", f"No recipient given ({command})")
            return
        if len(params) < 2 or not params[1]:
            if not notice:
                self.numeric("412", "No text to send")
            return
        text = params[1]
        action = text.startswith("\x01ACTION ") or text == "\x01ACTION\x01"
        if action:
            text = text[len("\x01ACTION "):].rstrip("\x01")
        elif text.startswith("\x01"):
            return  # other CTCP (VERSION, PING…) is not passed on
        for i, target in enumerate(self._targets(command, params[0])):
            if i:
                self._pace()  # each target is a message: flood control counts it as a line of its own
            self._deliver(command, target, text, action, notice)

    def _deliver(self, command: str, target: str, text: str, action: bool, notice: bool) -> None:
        try:
            if target.startswith("#"):
                room = self.rooms.joined_room(self.session, target) if self._in(target) else None
                if room is None:
                    self.rooms.get(target)  # no-such-room / bad-room
                    if not notice:
                        self.numeric("404", target, "Cannot send to channel")
                    return
                (self.rooms.act if action else self.rooms.say)(self.session, room.name, text)
                shown = room.name
            else:
                self.rooms.tell(self.session, target, text, action=action)
                user = self.rooms.user(target)
                shown = user.name if user else target
                other = self.plugin.connection(target)
                if other is not None and other.away is not None and not notice:
                    self.numeric("301", shown, other.away)
        except Exception as exc:
            token = getattr(exc, "token", None)
            if token is None:
                raise
            if notice:
                return
            if token == "no-such-user":
                self.numeric("401", target, "No such nick/channel")
            elif token == "bad-text":
                self.numeric("412", "No text to send")
            elif token in ("bad-room", "no-such-room"):
                self.numeric("403", target, "No such channel")
            elif token == "unavailable":
                self.send("NOTICE", self.me, f"Message to {target} not sent: {exc.text}")
            else:
                self.numeric("404", target, "Cannot send to channel")
            return
        if "echo-message" in self.caps:
            sent = self.rooms.sanitize(text)
            echoed = f"\x01ACTION {sent}\x01" if action else sent
            self.send(command, shown, echoed, source=self.prefix(self.nick), tags=self._tags(time.time()))

    def _in(self, name: str) -> bool:
        key = name.lower()
        return any(r.name.lower() == key for r in self.rooms.joined(self.session))

    def notice(self, params: list[str]) -> None:
        self.privmsg(params, notice=True)

    # -- queries ------------------------------------------------------------------------

    def who(self, params: list[str]) -> None:
        mask = params[0] if params else "*"
        if mask.startswith("#"):
            try:
                room = self.rooms.get(mask)
                for member in self.rooms.members(room.name):
                    self._who_line(room.name, member)
                mask = room.name
            except Exception as exc:
                if getattr(exc, "token", None) is None:
                    raise
        else:
            user = self.rooms.user(mask)
            if user is not None:
                self._who_line("*", user.name)
        self.numeric("315", mask, "End of WHO list")

    def _who_line(self, channel: str, nick: str) -> None:
        other = self.plugin.connection(nick)
        here = "G" if other is not None and other.away is not None else "H"
        real = other.realname or nick if other is not None else nick
        self.numeric("352", channel, nick, self.server, self.server, nick, here, f"0 {real}")

    def whois(self, params: list[str]) -> None:
        target = params[-1]
        user = self.rooms.user(target)
        if user is None:
            self.numeric("401", target, "No such nick/channel")
            self.numeric("318", target, "End of /WHOIS list")
            return
        other = self.plugin.connection(user.name)
        self.numeric("311", user.name, user.name, self.server, "*", other.realname or user.name if other else user.name)
        if user.rooms:
            self.numeric("319", user.name, " ".join(user.rooms))
        self.numeric("312", user.name, self.server, self.settings["network"])
        if other is not None and other.away is not None:
            self.numeric("301", user.name, other.away)
        self.numeric("318", user.name, "End of /WHOIS list")

    def mode(self, params: list[str]) -> None:
        target = params[0]
        if target.startswith("#"):
            try:
                room = self.rooms.get(target)
            except Exception as exc:
                self._room_error(exc, target)
                return
            if len(params) == 1:
                self.numeric("324", room.name, "+nt")
            elif params[1] in ("b", "+b") and len(params) == 2:
                self.numeric("368", room.name, "End of channel ban list")
            else:
                self.numeric("482", room.name, "You're not channel operator")
            return
        if target.lower() != (self.nick or "").lower():
            if self.rooms.user(target) is None:
                self.numeric("401", target, "No such nick/channel")
            else:
                self.numeric("502", "Cant change mode for other users")
            return
        if len(params) == 1:
            self.numeric("221", "+i")
        elif params[1].lstrip("+") != "i" and params[1] != "+":
            self.numeric("501", "Unknown MODE flag")
        # "+i" (irssi's and WeeChat's default usermode): every user is +i already, nothing changes

    def away_command(self, params: list[str]) -> None:
        if params and params[0]:
            self.away = self.rooms.sanitize(params[0])[:300] or "away"
            self.numeric("306", "You have been marked as being away")
        else:
            self.away = None
            self.numeric("305", "You are no longer marked as being away")

    def quit(self, params: list[str]) -> None:
        self.error(f"Quit: {params[0]}" if params else "Quit")
        raise SessionEnd("quit")

    def ping(self, params: list[str]) -> None:
        if not params or not params[0]:
            self.numeric("409", "No origin specified")
            return
        self.send("PONG", self.server, params[0])

    def pong(self, params: list[str]) -> None:
        pass  # any line resets the ping timer


_HANDLERS = {
    "CAP": Connection.cap, "NICK": Connection.nick_command, "USER": Connection.user_command,
    "PASS": Connection.pass_command, "AUTHENTICATE": Connection.authenticate, "PING": Connection.ping,
    "PONG": Connection.pong, "QUIT": Connection.quit, "JOIN": Connection.join, "PART": Connection.part,
    "PRIVMSG": Connection.privmsg, "NOTICE": Connection.notice, "TOPIC": Connection.topic,
    "NAMES": Connection.names, "LIST": Connection.list_command, "WHO": Connection.who,
    "WHOIS": Connection.whois, "MODE": Connection.mode, "AWAY": Connection.away_command,
    "MOTD": Connection.motd,
}
#: numerics whose last parameter is a token, not text: sent without ':'
_TOKEN_LAST = frozenset({"004", "221", "324", "333"})
_BEFORE_REGISTRATION = frozenset({"CAP", "NICK", "USER", "PASS", "AUTHENTICATE", "PING", "PONG", "QUIT"})
_MIN_PARAMS = {"CAP": 1, "USER": 4, "PASS": 1, "AUTHENTICATE": 1, "JOIN": 1, "PART": 1, "TOPIC": 1,
               "WHOIS": 1, "MODE": 1}
