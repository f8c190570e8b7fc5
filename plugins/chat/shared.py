"""chat on a cluster's Redis (docs/cluster.md): rooms whose order, members and history every node shares.

With ``cluster.redis`` set, chat keeps its rooms in Redis instead of SQLite, behind the
same room API (:class:`SharedRooms` is a :class:`~plugins.chat.rooms.Rooms`):

- **one order per room.** Every room event — a message, an action, a join, a part, a topic,
  the room's deletion — is one entry of the room's Redis Stream, numbered by the room's
  counter (entry ID ``SEQ-0``). A message is accepted (its sender may go on) when the
  script that appends it has returned: it is then in the history. No node fans out
  on the sender's thread: each node's **relay** thread reads the streams of the rooms
  its sessions are in (``XREAD``) and delivers each entry to its local members in
  stream order, so every member on every node sees the room's one order.
- **membership** is a hash per room (who, on which node, which session), changed only
  by scripts that also append the ``JOIN``/``PART`` entry, so the two never disagree.
  ``/who``, ``/rooms`` and topics read Redis; a session is a room's member from its join
  entry on (entries before it are the replay, entries after it are delivered).
- **users**: one hash says which node and session holds each connected name, so a
  duplicate login is found across nodes; ``/msg`` to a user on another node and
  "replaced" go to that node over pub/sub (``chat:node:NODE``) — private messages never
  enter a stream.
- **nodes that die**: every node looks, every third of ``node_timeout``, for connected
  users whose node's heartbeat has expired; one node (a lock per dead node) parts them
  from their rooms (``PART`` in each) and frees their names. A node that cannot reach
  Redis for half of ``node_timeout`` ends its chat sessions with a ``NOTICE`` rather than
  let the rooms split.
- **Redis unavailable**: a message, join or topic that cannot be written gets ``-ERR
  unavailable``; the relay retries with backoff and resumes each room from the last
  entry it delivered (no gap, no duplicate); parts that could not be written are
  written when Redis is back.

The keys, under the cluster's prefix: ``chat:rooms`` (set of room keys), ``chat:room:KEY``
(hash: name, topic, topic_by, topic_at, permanent, msgs), ``chat:log:KEY`` (the stream),
``chat:seq:KEY`` (the room's counter; dropped with a room left empty without a message), ``chat:members:KEY`` (hash: lower-cased
name → ``NODE/SID NAME``), ``chat:joined:NAME`` (the rooms a user is in), ``chat:users``
(hash: lower-cased name → ``NODE/SID NAME SINCE``), ``chat:reap:NODE`` (who parts a dead
node's users).
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from daemon import ClusterUnavailable

from plugins.chat.history import Entry, StoredRoom
from plugins.chat.room import AlreadyConnected, Member, Room, RoomEvent
from plugins.chat.rooms import RoomError, RoomInfo, Rooms, UserInfo, room_key
from plugins.chat.text import sanitize, visible

if TYPE_CHECKING:  # pragma: no cover
    from daemon import Cluster, Session

#: the lines every script appends with (ARGV: kind, name, text, time, origin): after INCR of the counter
_APPEND = """
local function append(log, seq_key, maxlen, kind, name, text, ts, origin)
  local seq = redis.call('INCR', seq_key)
  redis.call('XADD', log, 'MAXLEN', '~', maxlen, seq .. '-0', 'k', kind, 'n', name, 't', text, 'ts', ts, 'o', origin)
  return seq
end
local function alive(prefix, owner)
  return redis.call('EXISTS', prefix .. 'node:' .. string.match(owner, '^([^/]+)/')) == 1
end
"""

#: KEYS room, members, log, seq, joined; ARGV lname, value, replace, ts, maxlen, key, limit, name, prefix
#: -> {'gone'} | {'taken', old} | {'ok', old or '', since}
_JOIN = _APPEND + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old and old ~= ARGV[2] and ARGV[3] == '0' then
  if alive(ARGV[9], old) then return {'taken', old} end
  old = false  -- its node is dead: the seat is free
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[5], ARGV[6])
if not old and (ARGV[7] == '' or redis.call('HLEN', KEYS[2]) <= tonumber(ARGV[7])) then
  return {'ok', '', append(KEYS[3], KEYS[4], ARGV[5], 'join', ARGV[8], '', ARGV[4], ARGV[2])}
end
return {'ok', old or '', tonumber(redis.call('GET', KEYS[4]) or '0')}
"""

#: KEYS members, log, seq, joined, room, rooms; ARGV lname, value, ts, maxlen, key, announce, limit, name
_PART = _APPEND + """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
local size = redis.call('HLEN', KEYS[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[5])
if ARGV[6] == '1' and (ARGV[7] == '' or size <= tonumber(ARGV[7])) then
  append(KEYS[2], KEYS[3], ARGV[4], 'part', ARGV[8], '', ARGV[3], ARGV[2])
end
if size == 1 and redis.call('HGET', KEYS[5], 'permanent') == '0' and redis.call('HGET', KEYS[5], 'msgs') == '0' then
  -- made by a join, left empty, nothing said: gone, as standalone, counter and all (a node that
  -- still remembers a later entry lowers its mark at the next join: SharedRoom.join)
  redis.call('DEL', KEYS[5], KEYS[2], KEYS[3])
  redis.call('SREM', KEYS[6], ARGV[5])
end
return 1
"""

#: KEYS members, log, seq, room, said (this message's: a retry finds it); ARGV lname, value, kind, name,
#: text, ts, maxlen -> seq, 0 if not a member
_SAY = _APPEND + """
local done = redis.call('GET', KEYS[5])
if done then return tonumber(done) end  -- a retry of a call that had run: the same message, once
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HINCRBY', KEYS[4], 'msgs', 1)
local seq = append(KEYS[2], KEYS[3], ARGV[7], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[2])
redis.call('SET', KEYS[5], seq, 'PX', 60000)
return seq
"""

#: KEYS room, members, log, seq; ARGV lname ('': the operator), value, topic, by, ts, maxlen -> seq, 0, -1
_TOPIC = _APPEND + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'topic', ARGV[3], 'topic_by', ARGV[4], 'topic_at', ARGV[5])
return append(KEYS[3], KEYS[4], ARGV[6], 'topic', ARGV[4], ARGV[3], ARGV[5], ARGV[2])
"""

#: KEYS room, rooms, log; ARGV key, name, allowed, max_rooms, permanent, ts
#: -> {'exists', name} | {'made', name} | {'no', ''} | {'limit', count}
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'permanent', '1') end
  return {'exists', redis.call('HGET', KEYS[1], 'name')}
end
if ARGV[3] == '0' then return {'no', ''} end
local count = redis.call('SCARD', KEYS[2])
if count >= tonumber(ARGV[4]) then return {'limit', tostring(count)} end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'topic', '', 'topic_by', '*', 'topic_at', ARGV[6],
           'permanent', ARGV[5], 'msgs', '0')
redis.call('SADD', KEYS[2], ARGV[1])
return {'made', ARGV[2]}
"""

#: KEYS room, rooms, log, seq, members; ARGV key, ts, notice, prefix, maxlen -> the members' values, or -1
_DELETE = _APPEND + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local members = redis.call('HVALS', KEYS[5])
for _, lname in ipairs(redis.call('HKEYS', KEYS[5])) do
  redis.call('SREM', ARGV[4] .. 'chat:joined:' .. lname, ARGV[1])
end
append(KEYS[3], KEYS[4], ARGV[5], 'deleted', '*', ARGV[3], ARGV[2], '')
redis.call('PEXPIRE', KEYS[3], 60000)  -- long enough for every node's relay to read 'deleted'
redis.call('DEL', KEYS[1], KEYS[5])
redis.call('SREM', KEYS[2], ARGV[1])
return members
"""

#: KEYS users, joined; ARGV lname, value, replace, prefix, ts, maxlen, default room's key
#: -> {'ok', old or ''} | {'taken', old}. The session taken over (replaced, or of a dead node) is
#: parted from its rooms here, as the reaper or its node would: a dead node never will, and the
#: reaper no longer finds it once its name is this session's. The default room is left to the
#: join that follows (replace: the seat changes hands without a PART and JOIN), unless its node is dead.
_CONNECT = _APPEND + """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and old ~= ARGV[2] then
  local dead = not alive(ARGV[4], old)
  if not dead and ARGV[3] == '0' then return {'taken', old} end
  local mine = string.sub(old, 1, string.find(old, ' ', 1, true))
  for _, key in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    local members = ARGV[4] .. 'chat:members:' .. key
    local value = redis.call('HGET', members, ARGV[1])
    if (dead or key ~= ARGV[7]) and value and string.sub(value, 1, #mine) == mine then
      redis.call('HDEL', members, ARGV[1])
      redis.call('SREM', KEYS[2], key)
      append(ARGV[4] .. 'chat:log:' .. key, ARGV[4] .. 'chat:seq:' .. key, ARGV[6], 'part',
             string.sub(value, #mine + 1), '', ARGV[5], value)
    end
  end
  if dead then old = false end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {'ok', old or ''}
"""

#: KEYS users; ARGV lname, owner ('NODE/SID')
_DISCONNECT = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.sub(v, 1, #ARGV[2] + 1) == ARGV[2] .. ' ' then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
"""

#: a dead node's user, parted from every room and its name freed: KEYS users, joined;
#: ARGV lname, owner, prefix, ts, maxlen, force ('1': an earlier run of this node, whose name is alive)
#: -> the rooms parted (0 if its node is alive again)
_REAP = _APPEND + """
if ARGV[6] ~= '1' and alive(ARGV[3], ARGV[2] .. '/') then return 0 end
local mine = ARGV[2] .. ' '
local parted = 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local members = ARGV[3] .. 'chat:members:' .. key
  local value = redis.call('HGET', members, ARGV[1])
  if value and string.sub(value, 1, #mine) == mine then
    redis.call('HDEL', members, ARGV[1])
    redis.call('SREM', KEYS[2], key)
    append(ARGV[3] .. 'chat:log:' .. key, ARGV[3] .. 'chat:seq:' .. key, ARGV[5], 'part',
           string.sub(value, #mine + 1), '', ARGV[4], value)
    parted = parted + 1
  end
end
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.sub(v, 1, #mine) == mine then redis.call('HDEL', KEYS[1], ARGV[1]) end
return parted
"""

#: raises a room's counter to ARGV[1] unless it is past it already: KEYS seq
_RAISE_SEQ = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""

#: the state key of a session's owner string (``NODE/SID``) on this node
_OWNER_KEY = "chat.owner"
#: the state key set once a session's name is its own in ``chat:users``
_CONNECTED_KEY = "chat.connected"


@dataclass(frozen=True)
class Elsewhere:
    """A connected user's session on another node (what :meth:`SharedRooms.connect` returns to replace)."""

    owner: str  # NODE/SID
    name: str
    session = None

    @property
    def node(self) -> str:
        return self.owner.split("/", 1)[0]


class SharedChat:
    """The chat's keys and scripts on the cluster's Redis, and this node's sessions by owner."""

    def __init__(self, cluster: Cluster, settings: Callable[[], dict[str, Any]], log: logging.Logger):
        self.cluster = cluster
        self.node = cluster.node
        self._settings = settings
        self.log = log
        # a session is NODE/BOOT-N: BOOT tells this run of the node from an earlier one of the same name
        self.boot = secrets.token_hex(3)
        self._ids = itertools.count(1)
        # _lock guards _sessions: this node's connected chat sessions by owner (NODE/SID)
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self.default_key = ""  # the default room's (SharedRooms sets it)
        r = cluster.redis
        self._scripts = {name: r.register_script(text) for name, text in (
            ("join", _JOIN), ("part", _PART), ("say", _SAY), ("topic", _TOPIC), ("create", _CREATE),
            ("delete", _DELETE), ("connect", _CONNECT), ("disconnect", _DISCONNECT), ("reap", _REAP),
            ("raise_seq", _RAISE_SEQ))}

    def key(self, *parts: str) -> str:
        return self.cluster.key("chat", *parts)

    def channel(self, node: str) -> str:
        return self.key("node", node)

    def run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """One script; :class:`RoomError` ``unavailable`` if Redis cannot take it."""
        try:
            return self.cluster.call(lambda r: self._scripts[script](keys=keys, args=args))
        except ClusterUnavailable as exc:  # the client is told that much; the log has why (the cause)
            raise RoomError("unavailable", "the chat's store cannot be reached just now; nothing was done, "
                                           "try again") from exc

    def read(self, command: Callable[[Any], Any]) -> Any:
        try:
            return self.cluster.call(command)
        except ClusterUnavailable as exc:
            raise RoomError("unavailable", "the chat's store cannot be reached just now; try again") from exc

    @property
    def maxlen(self) -> int:
        return self._settings()["history_limit"]

    # -- this node's sessions ---------------------------------------------------------

    def owner(self, session: Session) -> str:
        """``NODE/SID``: who this session is, in every key that names it."""
        owner = session.state.get(_OWNER_KEY)
        if owner is None:
            owner = session.state[_OWNER_KEY] = f"{self.node}/{self.boot}-{next(self._ids)}"
        return owner

    def enter(self, session: Session) -> str:
        owner = self.owner(session)
        with self._lock:
            self._sessions[owner] = session
        return owner

    def leave(self, session: Session) -> None:
        owner = session.state.get(_OWNER_KEY)
        with self._lock:
            if owner is not None and self._sessions.get(owner) is session:
                del self._sessions[owner]

    def local(self, owner: str) -> Session | None:
        with self._lock:
            return self._sessions.get(owner)

    def sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    def member_value(self, session: Session) -> str:
        return f"{self.owner(session)} {session.user}"

    # -- rooms ------------------------------------------------------------------------

    def room(self, key: str) -> dict[str, str] | None:
        """A room's record (name, topic, topic_by, topic_at, permanent, msgs), None if there is none."""
        found = self.read(lambda r: r.hgetall(self.key("room", key)))
        return found or None

    def create(self, key: str, name: str, *, allowed: bool, max_rooms: int, permanent: bool) -> str:
        """Make the room unless it exists; its name as created. ``no-such-room``, ``room-limit``."""
        status, value = self.run("create", [self.key("room", key), self.key("rooms"), self.key("log", key)],
                                 [key, name, int(allowed), max_rooms, int(permanent), repr(time.time())])
        if status == "no":
            raise RoomError("no-such-room", f"there is no room {name}, and only the operator creates rooms")
        if status == "limit":
            raise RoomError("room-limit", f"there are {value} rooms already, the most allowed")
        return value

    def delete(self, key: str, notice: str) -> list[str] | None:
        """Delete a room (its members get ``deleted``); the members' values, None if there was no room."""
        found = self.run("delete", [self.key("room", key), self.key("rooms"), self.key("log", key),
                                    self.key("seq", key), self.key("members", key)],
                         [key, repr(time.time()), notice, self.cluster.prefix, self.maxlen])
        return None if found == -1 else found

    def join(self, key: str, session: Session, *, replace: bool, limit: int | None) -> tuple[str, str, int]:
        """``(status, old value, since)``: the script's answer (see _JOIN)."""
        reply = self.run("join", [self.key("room", key), self.key("members", key), self.key("log", key),
                                  self.key("seq", key), self.key("joined", session.user.lower())],
                         [session.user.lower(), self.member_value(session), int(replace), repr(time.time()),
                          self.maxlen, key, "" if limit is None else limit, session.user, self.cluster.prefix])
        return reply[0], (reply[1] if len(reply) > 1 else ""), (int(reply[2]) if len(reply) > 2 else 0)

    def part(self, key: str, session: Session, *, announce: bool, limit: int | None) -> None:
        self.run("part", [self.key("members", key), self.key("log", key), self.key("seq", key),
                          self.key("joined", session.user.lower()), self.key("room", key), self.key("rooms")],
                 [session.user.lower(), self.member_value(session), repr(time.time()), self.maxlen, key,
                  int(announce), "" if limit is None else limit, session.user])

    def say(self, key: str, session: Session, kind: str, text: str) -> Entry | None:
        now = time.time()
        # redis-py retries a call that timed out once; the script may have run: the said key makes the
        # retry find it instead of appending the message again
        said = self.key("said", secrets.token_hex(8))
        seq = self.run("say", [self.key("members", key), self.key("log", key), self.key("seq", key),
                               self.key("room", key), said],
                       [session.user.lower(), self.member_value(session), kind, session.user, text, repr(now),
                        self.maxlen])
        return Entry(int(seq), now, kind, session.user, text) if seq else None

    def set_topic(self, key: str, by: str, text: str, session: Session | None) -> int:
        """The topic entry's number; 0: ``session`` is not a member; -1: no such room."""
        return int(self.run("topic", [self.key("room", key), self.key("members", key), self.key("log", key),
                                      self.key("seq", key)],
                            ["" if session is None else session.user.lower(),
                             "" if session is None else self.member_value(session), text, by, repr(time.time()),
                             self.maxlen]))

    def members(self, key: str) -> list[str]:
        values = self.read(lambda r: r.hvals(self.key("members", key)))
        return sorted((v.split(" ", 1)[1] for v in values), key=lambda n: (n.lower(), n))

    def recent(self, key: str, count: int, up_to: int | None = None) -> list[Entry]:
        """The room's last ``count`` messages and actions up to entry ``up_to`` (None: all), oldest first."""
        if count <= 0:
            return []
        end, found = ("+" if up_to is None else f"{up_to}-0"), []
        page = max(2 * count, 64)
        while len(found) < count:
            batch = self.read(lambda r: r.xrevrange(self.key("log", key), end, "-", count=page))
            for entry_id, fields in batch:
                if fields.get("k") in ("msg", "action"):
                    found.append(_entry(entry_id, fields))
                    if len(found) == count:
                        break
            if len(batch) < page:
                break
            end = "(" + batch[-1][0]
        return found[::-1]

    def rooms(self) -> list[RoomInfo]:
        keys = sorted(self.read(lambda r: r.smembers(self.key("rooms"))))

        def read(r):
            pipe = r.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(self.key("room", key))
                pipe.hlen(self.key("members", key))
            return pipe.execute()

        replies = self.read(read) if keys else []
        found = []
        for index in range(0, len(replies), 2):
            record, members = replies[index], replies[index + 1]
            if record:
                found.append(RoomInfo(record["name"], members, min(int(record.get("msgs", 0)), self.maxlen),
                                      record.get("topic", "")))
        return found

    def count(self) -> int:
        return self.read(lambda r: r.scard(self.key("rooms")))

    # -- users ------------------------------------------------------------------------

    def connect(self, session: Session, *, replace: bool) -> tuple[str, str]:
        """``(status, old)``: ``ok`` and the value it replaced (``''``: none), or ``taken``."""
        value = f"{self.owner(session)} {session.user} {time.time():.3f}"
        status, old = self.run("connect", [self.key("users"), self.key("joined", session.user.lower())],
                               [session.user.lower(), value, int(replace), self.cluster.prefix, repr(time.time()),
                                self.maxlen, self.default_key])
        return status, old

    def disconnect(self, session: Session) -> None:
        self.run("disconnect", [self.key("users")], [session.user.lower(), self.owner(session)])

    def user(self, name: str) -> tuple[str, str, float] | None:
        """``(owner, name as spelled, since)`` of a connected user, or None."""
        value = self.read(lambda r: r.hget(self.key("users"), name.lower()))
        if not value:
            return None
        owner, spelled, since = value.split(" ", 2)
        return owner, spelled, float(since)

    def users(self) -> list[tuple[str, str]]:
        """``(owner, name)`` of every connected user."""
        values = self.read(lambda r: r.hvals(self.key("users")))
        return [tuple(v.split(" ", 2)[:2]) for v in values]

    def user_rooms(self, name: str) -> list[str]:
        return sorted(self.read(lambda r: r.smembers(self.key("joined", name.lower()))))

    def publish(self, node: str, message: dict[str, Any]) -> int:
        """Send ``message`` to ``node``'s chat; how many nodes took it (0: gone)."""
        return self.read(lambda r: r.publish(self.channel(node), json.dumps(message)))

    def reap(self, live: set[str]) -> int:
        """Part the users of nodes not in ``live`` from their rooms and free their names (one
        node does each dead node's: the first to take its lock). The users reaped."""
        values = self.cluster.call(lambda r: r.hgetall(self.key("users")))
        dead: dict[str, list[tuple[str, str]]] = {}
        earlier: list[tuple[str, str]] = []  # of an earlier run of this node (killed, restarted under its name)
        for lname, value in values.items():
            owner = value.split(" ", 1)[0]
            node, _, sid = owner.partition("/")
            if node == self.node:
                if not sid.startswith(self.boot + "-"):
                    earlier.append((lname, owner))
            elif node not in live:
                dead.setdefault(node, []).append((lname, owner))
        if earlier:
            self._reap(earlier, force=True)
            self.log.info("chat: %d users of an earlier run of this node (%s) parted from their rooms",
                          len(earlier), self.node)
        for node, users in dead.items():
            lock = self.key("reap", node)
            if not self.cluster.call(lambda r: r.set(lock, self.node, nx=True, px=int(self.cluster.node_timeout * 1000))):
                continue  # another node is at it
            self._reap(users, force=False)
            self.log.info("chat: node %s is gone; %d of its users parted from their rooms", node, len(users))
        return len(earlier) + sum(len(users) for users in dead.values())

    def _reap(self, users: list[tuple[str, str]], force: bool) -> None:
        for lname, owner in users:
            self.cluster.call(lambda r: self._scripts["reap"](
                keys=[self.key("users"), self.key("joined", lname)],
                args=[lname, owner, self.cluster.prefix, repr(time.time()), self.maxlen, int(force)]))


    # -- moving in --------------------------------------------------------------------

    def import_room(self, stored: StoredRoom, entries: list[Entry], default_key: str) -> tuple[int, int, int]:
        """Copy a standalone room and its messages in (``daemond cluster import``): the room is
        made unless it exists (its topic kept if the cluster's has none), and the messages are
        appended with their own numbers, in batches, so that an interrupted copy goes on where
        it stopped and a second one copies nothing. A room the cluster has filled with a history
        of its own (an entry numbered like one of these that is not the same message) gets
        nothing: its numbers are taken, and older messages cannot go after newer ones.
        ``(copied, already there, not copied)``."""
        key = stored.key
        self.create(key, stored.name, allowed=True, max_rooms=1 << 30,
                    permanent=stored.permanent or key == default_key)
        if stored.topic and not self.cluster.call(lambda r: r.hget(self.key("room", key), "topic")):
            self.cluster.call(lambda r: r.hset(self.key("room", key), "topic", stored.topic))
        top = self.cluster.call(lambda r: r.xrevrange(self.key("log", key), "+", "-", count=1))
        last = int(top[0][0].split("-", 1)[0]) if top else 0
        old = [e for e in entries if e.seq <= last]

        def there(r):
            pipe = r.pipeline(transaction=False)
            for e in old:
                pipe.xrange(self.key("log", key), f"{e.seq}-0", f"{e.seq}-0")
            return pipe.execute()

        found = self.cluster.call(there) if old else []
        if any(not got or _entry(*got[0]) != e for e, got in zip(old, found)):
            return 0, 0, len(entries)  # the cluster's own history: nothing of this room is copied
        new = [e for e in entries if e.seq > last]
        for start in range(0, len(new), 500):
            batch = new[start:start + 500]

            def append(r, batch=batch):
                pipe = r.pipeline(transaction=True)
                for e in batch:
                    pipe.xadd(self.key("log", key), {"k": e.kind, "n": e.name, "t": e.text, "ts": repr(e.ts), "o": ""},
                              id=f"{e.seq}-0", maxlen=self.maxlen, approximate=True)
                pipe.hincrby(self.key("room", key), "msgs", len(batch))
                return pipe.execute()

            self.cluster.call(append)
            self.cluster.call(lambda r, top=batch[-1].seq: self._scripts["raise_seq"](
                keys=[self.key("seq", key)], args=[top]))
        return len(new), len(old), 0


def _entry(entry_id: str, fields: dict[str, str]) -> Entry:
    return Entry(int(entry_id.split("-", 1)[0]), float(fields.get("ts", 0)), fields.get("k", "msg"),
                 fields.get("n", ""), fields.get("t", ""))


class SharedRoom(Room):
    """A room whose events come from its stream (see the module's docstring): this node's
    members of it, delivered to by the relay thread."""

    def __init__(self, key: str, name: str, shared: SharedChat, relay: Relay, *, tagged: bool, topic: str = "",
                 permanent: bool = False):
        super().__init__(key, name, None, tagged=tagged, topic=topic, permanent=permanent, delivered=0)
        self.shared = shared
        self.relay = relay
        # a sender waits on it until the relay has delivered its own entry (see say)
        self._delivered = threading.Condition(self._lock)
        # members joined but not yet given an entry: (since, session, seat them); guarded by _lock
        self._pending: collections.deque = collections.deque()

    def join(self, session: Session, *, replace: bool, replay: int, greeting: bytes = b"",
             announce_limit: int | None = None, on_event: Callable[[RoomEvent], None] | None = None,
             render: Callable[[RoomEvent], bytes | None] | None = None,
             write: Callable[[bytes], object] | None = None) -> tuple[Session | None, list[Entry]] | None:
        name = session.user
        key = name.lower()
        with self._lock:  # the relay delivers under it: nothing after the join entry can slip past
            if self.closed:
                return None
            old = self._members.get(key)
            if old is not None and old.session is not session and not replace:
                raise AlreadyConnected(name)
            status, _, since = self.shared.join(self.key, session, replace=replace, limit=announce_limit)
            if status == "gone":
                self.closed = True
                return None
            if status == "taken":
                raise AlreadyConnected(name)
            try:
                backlog = self.shared.recent(self.key, replay, up_to=since)
            except RoomError:  # joined in Redis but not here: take it back (when Redis is back)
                self.relay.retry(lambda: self.shared.part(self.key, session, announce=True, limit=announce_limit))
                raise
            if old is not None:
                self._forget(old.session)
            if not self._members or since < self._delivered_seq:
                # nobody here was given anything before the join entry (/history reads up to it); or the
                # counter went back: the room was dropped and made again, or Redis lost its data
                self._delivered_seq = since
                self._pending = collections.deque(sorted(self._pending, key=lambda p: p[0]))
            self._members[key] = Member(session, on_event)
            self._pending.append((since, session, lambda: self._seat(session, on_event, render, write)))
            self.relay.track(self.key, since)
            if on_event is None and (greeting or backlog):
                lines = "".join(e.hist_line(self._tag.strip()) + "\n" for e in backlog)
                session.write_block(greeting + lines.encode("utf-8"))
        return (old.session if old is not None and old.session is not session else None), backlog

    def leave(self, session: Session, announce: bool = True, announce_limit: int | None = None) -> bool:
        name = session.user
        with self._lock:
            member = self._members.get(name.lower()) if name is not None else None
            if member is None or member.session is not session:
                return False
            del self._members[name.lower()]
            self._forget(session)
            if not self._members:
                self.relay.untrack(self.key)
        try:
            self.shared.part(self.key, session, announce=announce, limit=announce_limit)
        except RoomError:  # Redis is away: written when it is back
            self.relay.retry(lambda: self.shared.part(self.key, session, announce=announce, limit=announce_limit))
        return True

    def close_if_unused(self) -> bool:
        return False  # the part script drops a room left empty

    def close(self, notice: str | None = None) -> list[Session]:
        members = super().close(notice)
        with self._delivered:
            self._delivered.notify_all()  # a sender waiting for its entry: the room is gone
        return members

    def recent(self, count: int) -> list[Entry]:
        with self._lock:
            bound = self._delivered_seq if self._members else None
        return self.shared.recent(self.key, count, up_to=bound)

    def names(self) -> list[str]:
        return self.shared.members(self.key)

    def say(self, session: Session, kind: str, text: str) -> Entry | None:
        """Append the message (it is accepted then); return once this node's relay has delivered
        it, so the sender's next command — and an IRC client's echo — comes after everything
        ordered before it, as standalone (after ``node_timeout`` it returns anyway)."""
        if not self.has(session):
            return None
        entry = self.shared.say(self.key, session, kind, text)  # delivered by the relay, to every node
        if entry is not None:
            with self._delivered:
                self._delivered.wait_for(lambda: self._delivered_seq >= entry.seq or self.closed or
                                         not self.has(session), self.shared.cluster.node_timeout)
        return entry

    def set_topic(self, by: str, text: str, session: Session | None = None) -> bool:
        done = self.shared.set_topic(self.key, by, text, session)
        if done == -1:
            raise RoomError("no-such-room", f"there is no room {self.name}")
        if done:
            self.topic, self.topic_by, self.topic_at = text, by, time.time()
        return done > 0

    def _forget(self, session: Session) -> None:  # with _lock held
        super()._forget(session)
        if any(s is session for _, s, _ in self._pending):
            self._pending = collections.deque(p for p in self._pending if p[1] is not session)

    def deliver(self, seq: int, fields: dict[str, str]) -> None:
        """One entry of the room's stream, to this node's members (the relay thread)."""
        kind, name, text = fields.get("k", ""), fields.get("n", ""), fields.get("t", "")
        origin = self.shared.local(fields.get("o", "").split(" ", 1)[0])
        with self._lock:
            if self.closed or seq <= self._delivered_seq:
                return
            while self._pending and self._pending[0][0] < seq:  # joined before this entry: seated now
                self._pending.popleft()[2]()
            ts = float(fields.get("ts", 0))
            if kind == "topic":
                self.topic, self.topic_by, self.topic_at = text, name, ts
            if kind in ("msg", "action", "join", "part", "topic"):
                self._fan_out(RoomEvent(kind, self.name, name, text, ts, seq if kind in ("msg", "action") else 0),
                              skip=origin)
            self._delivered_seq = seq
            if origin is not None:
                self._delivered.notify_all()  # its sender (and any other of this node's) may go on


class SharedRooms(Rooms):
    """:class:`~plugins.chat.rooms.Rooms` on the cluster's Redis: the same API, every room shared."""

    def __init__(self, shared: SharedChat, default_room: str, settings: Callable[[], dict[str, Any]],
                 stopping: threading.Event | None = None):
        self.store = None  # no SQLite history
        self.shared = shared
        self._settings = settings
        self._stopping = stopping or threading.Event()
        self._users_lock = threading.Lock()
        self._users: dict[str, Member] = {}
        self._lock = threading.Lock()
        self._rooms: dict[str, Room] = {}  # rooms this node has looked at: a cache of their names and topics
        self._joined: dict[Session, dict[str, Room]] = {}
        self.relay = Relay(shared, self)
        self._suspects: set[Session] = set()  # the relay thread's (reconcile)
        default_key = self._default_key = shared.default_key = room_key(default_room)
        name = shared.create(default_key, default_room, allowed=True, max_rooms=1 << 30, permanent=True)
        self.default = self._cached(default_key, name, shared.room(default_key) or {})
        self.default.permanent = True

    def _cached(self, key: str, name: str, record: dict[str, str]) -> SharedRoom:
        with self._lock:
            room = self._rooms.get(key)
            if room is None or room.closed:
                room = self._rooms[key] = SharedRoom(key, name, self.shared, self.relay, tagged=key != self._default_key,
                                                     permanent=record.get("permanent") == "1")
            if record:
                room.topic, room.topic_by = record.get("topic", ""), record.get("topic_by", "*")
                room.topic_at = float(record.get("topic_at", room.topic_at))
            return room

    # -- looking rooms up -------------------------------------------------------------

    def get(self, name: str) -> Room:
        key = room_key(name)
        record = self.shared.room(key)
        if record is None:
            with self._lock:
                room = self._rooms.get(key)
            if room is not None and room is not self.default and not room._members:
                with self._lock:
                    self._rooms.pop(key, None)
            raise RoomError("no-such-room", f"there is no room {name}")
        return self._cached(key, record["name"], record)

    def _room_for_join(self, name: str, key: str, create: bool | None) -> Room:
        settings = self._settings()["rooms"]
        allowed = create if create is not None else settings["create"] == "anyone"
        made = self.shared.create(key, name, allowed=allowed, max_rooms=settings["max_rooms"], permanent=False)
        return self._cached(key, made, self.shared.room(key) or {})

    def list(self) -> list[RoomInfo]:
        return self.shared.rooms()

    def count(self) -> int:
        return self.shared.count()

    def create(self, name: str) -> Room:
        key = room_key(name)
        made = self.shared.create(key, name, allowed=True, max_rooms=self._settings()["rooms"]["max_rooms"],
                                  permanent=True)
        room = self._cached(key, made, self.shared.room(key) or {})
        room.permanent = True
        return room

    def delete(self, name: str) -> list[Any]:
        key = room_key(name)
        if key == self.default.key:
            raise RoomError("bad-room", f"{self.default.name} is the default room; it cannot be deleted")
        members = self.shared.delete(key, f"{name} was deleted by the operator")
        if members is None:
            raise RoomError("no-such-room", f"there is no room {name}")
        return members  # each node's relay closes the room for its own members

    def deliver(self, key: str, seq: int, fields: dict[str, str]) -> None:
        """The relay's: an entry of ``key``'s stream for this node's members."""
        with self._lock:
            room = self._rooms.get(key)
        if room is None:
            return
        if fields.get("k") == "deleted":
            with self._lock:
                if self._rooms.get(key) is room:
                    del self._rooms[key]
            self.relay.untrack(key)
            for session in room.close(fields.get("t") or None):
                with self._lock:
                    self._joined.get(session, {}).pop(key, None)
            return
        room.deliver(seq, fields)

    # -- users ------------------------------------------------------------------------

    def connect(self, session: Session, on_event: Callable[[RoomEvent], None] | None = None, *,
                replace: bool | None = None) -> Member | Elsewhere | None:
        if replace is None:
            replace = self._settings()["on_duplicate_login"] == "replace"
        owner = self.shared.enter(session)
        try:
            status, old = self.shared.connect(session, replace=replace)
        except RoomError:
            self.shared.leave(session)
            raise
        if status == "taken":
            self.shared.leave(session)
            raise RoomError("already-connected", f"{session.user} is already connected; closing")
        session.state[_CONNECTED_KEY] = True
        key = session.user.lower()
        with self._users_lock:
            local = self._users.get(key)
            self._users[key] = Member(session, on_event)
        if not old:
            return None
        old_owner = old.split(" ", 1)[0]
        if old_owner == owner:
            return None
        if old_owner.split("/", 1)[0] == self.shared.node:
            return local if local is not None and local.session is not session else None
        return Elsewhere(old_owner, old.split(" ", 2)[1])

    def replaced(self, old: Member | Elsewhere, by: Session) -> None:
        if not isinstance(old, Elsewhere):
            super().replaced(old, by)
            return
        try:
            self.shared.publish(old.node, {"t": "replaced", "to": old.owner, "by": by.user,
                                           "notice": f"{by.user} logged in from {by.peer_str}"})
        except RoomError:
            pass  # its node cannot be told now; it ends its sessions itself when cut off

    def disconnect(self, session: Session, *, announce: bool = True) -> None:
        # always announced: when this node stops, the other nodes' members are still there to see it
        super().disconnect(session, announce=True)
        if session.user is not None and _OWNER_KEY in session.state:
            try:
                self.shared.disconnect(session)
            except RoomError:
                self.relay.retry(lambda: self.shared.disconnect(session))
        self.shared.leave(session)

    def user(self, name: str) -> UserInfo | None:
        found = self.shared.user(name)
        if found is None:
            return None
        rooms = []
        for key in self.shared.user_rooms(name):
            record = self.shared.room(key)
            if record:
                rooms.append(record["name"])
        return UserInfo(found[1], rooms, found[2])

    def users(self) -> list[str]:
        return sorted((name for _, name in self.shared.users()), key=lambda n: (n.lower(), n))

    def tell(self, session: Session, name: str, raw: str, *, action: bool = False) -> None:
        text = sanitize(raw)
        if not visible(text):
            raise RoomError("bad-text", "nothing visible left in that message")
        with self._users_lock:
            member = self._users.get(name.lower())
        if member is not None:
            if not self._private(member, session.user, text, action):
                raise RoomError("no-such-user", f"{sanitize(name)} is not connected")
            return
        found = self.shared.user(name)
        if found is None or found[0].split("/", 1)[0] == self.shared.node:
            raise RoomError("no-such-user", f"{sanitize(name)} is not connected")
        node = found[0].split("/", 1)[0]
        taken = self.shared.publish(node, {"t": "private", "to": found[0], "from": session.user, "text": text,
                                           "action": action})
        if not taken:
            raise RoomError("no-such-user", f"{sanitize(name)} is not connected")

    def on_node_message(self, message: dict[str, Any]) -> None:
        """A message from another node for one of this node's sessions (the listener thread)."""
        session = self.shared.local(str(message.get("to")))
        if session is None:
            return
        with self._users_lock:
            member = self._users.get(session.user.lower()) if session.user else None
        if member is None or member.session is not session:
            return
        if message.get("t") == "private":
            self._private(member, str(message.get("from")), str(message.get("text")), bool(message.get("action")))
        elif message.get("t") == "replaced":
            self._tell_replaced(member, str(message.get("notice")), str(message.get("by")))

    def cut_off(self, why: str, sessions: list[Session] | None = None) -> int:
        """Redis has been away too long: end this node's chat sessions (or those given) rather
        than split the rooms. A line client is told so; a front end says it in its own protocol
        when its session closes (IRC: ``ERROR :Closing Link: … (cluster)``)."""
        if sessions is None:
            sessions = self.shared.sessions()
        for session in sessions:
            with self._users_lock:
                member = self._users.get(session.user.lower()) if session.user else None
            if member is None or member.session is not session or member.on_event is None:
                session.write(f"NOTICE cut off from the cluster ({why}); closing\n".encode("utf-8"))
            session.close("cluster")
        return len(sessions)

    def reconcile(self) -> int:
        """End this node's sessions the cluster no longer counts as connected: their name in
        ``chat:users`` is gone or another session's two rounds running (this node was paused
        past ``node_timeout`` and reaped, or Redis lost its data). They would otherwise hear
        rooms they are no longer members of and be refused every line. How many were ended."""
        sessions = [s for s in self.shared.sessions() if s.state.get(_CONNECTED_KEY) and s.user]
        values = self.shared.read(lambda r: r.hmget(self.shared.key("users"), [s.user.lower() for s in sessions])) \
            if sessions else []
        lost = {s for s, v in zip(sessions, values) if not v or v.split(" ", 1)[0] != self.shared.owner(s)}
        suspects, self._suspects = self._suspects, lost  # a replaced one is told and closed meanwhile
        gone = [s for s in lost if s in suspects]
        if gone:
            self.cut_off("this node's sessions were taken for gone", gone)
            self.shared.log.warning("chat: %d sessions the cluster no longer counts as connected (this node "
                                    "was unreachable past node_timeout?) ended", len(gone))
        return len(gone)


class Relay:
    """This node's relay thread (reads the streams of the rooms this node's sessions are in,
    delivers each entry, and parts the users of dead nodes), and the listener of messages for this
    node's sessions from the others (:meth:`daemon.Cluster.listen`)."""

    #: longest wait of one XREAD, seconds: a room joined meanwhile is read from the next
    BLOCK = 0.1

    def __init__(self, shared: SharedChat, rooms: SharedRooms):
        self.shared = shared
        self.rooms = rooms
        # _lock guards _positions (the last entry delivered of each room this node reads) and _retries
        self._lock = threading.Lock()
        self._positions: dict[str, int] = {}
        self._retries: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def track(self, key: str, since: int) -> None:
        """Read ``key``'s stream after entry ``since`` (from where it is read already, if before)."""
        with self._lock:
            self._positions[key] = min(self._positions.get(key, since), since)

    def untrack(self, key: str) -> None:
        with self._lock:
            self._positions.pop(key, None)

    def retry(self, write: Callable[[], None]) -> None:
        with self._lock:
            self._retries.append(write)

    def start(self) -> None:
        thread = threading.Thread(target=self._relay, name="chat-relay", daemon=True)
        thread.start()
        self._threads.append(thread)
        # messages for this node's sessions from the others (a thread of the cluster's, until it stops)
        self.shared.cluster.listen(self.shared.channel(self.shared.cluster.node),
                                   lambda data: self.rooms.on_node_message(json.loads(data)), "chat-listener")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

    def _relay(self) -> None:
        cluster = self.shared.cluster
        prefix = self.shared.key("log", "")
        down_since: float | None = None
        cut = False
        next_reap = 0.0
        backoff = 0.0
        while not self._stop.is_set():
            if backoff:
                self._stop.wait(backoff)
            try:
                self._retry()
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + cluster.node_timeout / 3
                    self.shared.reap({n["node"] for n in cluster.nodes()} | {cluster.node})
                    self.rooms.reconcile()
                with self._lock:
                    streams = {prefix + key: f"{seq}-0" for key, seq in self._positions.items()}
                if not streams:
                    self._stop.wait(self.BLOCK)
                    continue
                reply = cluster.call(lambda r: r.xread(streams, count=1000, block=int(self.BLOCK * 1000)))
                down_since, cut, backoff = None, False, 0.0
            except (ClusterUnavailable, RoomError) as exc:
                now = time.monotonic()
                down_since = down_since or now
                backoff = min(1.0, max(0.05, backoff * 2))
                if not cut and now - down_since >= cluster.node_timeout / 2:
                    cut = True
                    told = self.rooms.cut_off("Redis unavailable")
                    self.shared.log.warning("chat: Redis unavailable for %.1f s (%s); ended %d chat sessions rather "
                                            "than split the rooms", now - down_since, exc, told)
                continue
            except Exception:  # the relay must not die: every room would go quiet
                self.shared.log.exception("chat: the relay failed; going on")
                backoff = 1.0
                continue
            for stream, entries in reply or []:
                key = stream[len(prefix):]
                for entry_id, fields in entries:
                    seq = int(entry_id.split("-", 1)[0])
                    try:
                        self.rooms.deliver(key, seq, fields)
                    except Exception:
                        self.shared.log.exception("chat: delivering %s of %s failed", entry_id, key)
                    with self._lock:
                        if key in self._positions and seq > self._positions[key]:
                            self._positions[key] = seq

    def _retry(self) -> None:
        while True:
            with self._lock:
                if not self._retries:
                    return
                write = self._retries[0]
            try:
                write()  # RoomError: Redis still away; kept for the next round
            except RoomError:
                raise
            except Exception:  # not Redis: trying again would fail the same way
                self.shared.log.exception("chat: a part that could not be written is dropped")
            with self._lock:
                self._retries.popleft()
