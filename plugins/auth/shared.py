"""auth on a cluster's Redis (docs/cluster.md): the users store, the throttles and the
registration limit that every node shares, behind the same methods as the standalone ones.

With ``cluster.redis`` set, auth uses these instead of the SQLite :class:`~plugins.auth.store.UserStore`
and the in-memory :class:`~plugins.auth.throttle.Throttle` and
:class:`~plugins.auth.limits.RegistrationLimit`, so a user registered on one node logs in on
any, a token works on every node, and a brute force spread over the nodes is throttled as one.

Each change is one Lua script, which Redis runs atomically: two nodes registering one name at
once get exactly one ``True``. A script's reply comes after Redis has written it to its
append-only file (with ``appendfsync always``, after fsync), so what auth acknowledges is in
Redis. Times for the throttles come from Redis's own clock (``TIME``), one clock for every node.
A Redis that cannot be reached, or refuses writes, raises :class:`~daemon.ClusterUnavailable`:
the dialogue answers ``-ERR unavailable`` and acknowledges nothing.

The keys, under the cluster's prefix: ``auth:user:KEY`` (a hash: name, hash, created,
last_login, last_ip), ``auth:users`` (the set of keys), ``auth:token:DIGEST`` (the user's key,
expiring with the token), ``auth:tokens:KEY`` (a sorted set: the user's token keys by expiry, the
expired ones dropped at each login), ``auth:seen`` (a hash:
address → ``KEY SEEN``), ``auth:ips:KEY`` (a user's addresses there), ``auth:fail:WHICH:KEY``
and ``auth:block:WHICH:KEY`` (throttles), ``auth:reg:ADDRESS`` and ``auth:reg`` (registrations).
"""

from __future__ import annotations

from typing import Any

from daemon import Cluster, ClusterUnavailable
from plugins.auth.store import LoginRecord, User

#: creates a user unless the key exists: KEYS user, users; ARGV key, name, hash, created
_ADD_USER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'hash', ARGV[3], 'created', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

#: notes a login: KEYS user, seen, token (or ''), tokens, ips; ARGV key, ip, now, new_hash, token_ttl_ms
#: returns nil (no such user) or {last_login, last_ip, seen_key, seen_at}
_RECORD_LOGIN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
local before = redis.call('HMGET', KEYS[1], 'last_login', 'last_ip')
local seen = redis.call('HGET', KEYS[2], ARGV[2])
local seen_key, seen_at = '', ''
if seen then seen_key, seen_at = string.match(seen, '^(%S+) (%S+)$') end
redis.call('HSET', KEYS[1], 'last_login', ARGV[3], 'last_ip', ARGV[2])
if KEYS[3] ~= '' then
  redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[5])
  local now_ms = tonumber(ARGV[3]) * 1000
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now_ms)  -- expired tokens leave the user's list
  redis.call('ZADD', KEYS[4], now_ms + tonumber(ARGV[5]), KEYS[3])
end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'hash', ARGV[4]) end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1] .. ' ' .. ARGV[3])
redis.call('SADD', KEYS[5], ARGV[2])
return {before[1] or '', before[2] or '', seen_key or '', seen_at or ''}
"""

#: takes back a login: KEYS user, seen, token (or ''); ARGV key, ip, at, before_login, before_ip,
#: seen_before ('KEY SEEN' or '')
_FORGET_LOGIN = """
if KEYS[3] ~= '' then redis.call('DEL', KEYS[3]) end
local now = redis.call('HMGET', KEYS[1], 'last_login', 'last_ip')
if now[1] == ARGV[3] and now[2] == ARGV[2] then
  if ARGV[4] == '' then redis.call('HDEL', KEYS[1], 'last_login', 'last_ip')
  else redis.call('HSET', KEYS[1], 'last_login', ARGV[4], 'last_ip', ARGV[5]) end
end
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] .. ' ' .. ARGV[3] then
  if ARGV[6] == '' then redis.call('HDEL', KEYS[2], ARGV[2]) else redis.call('HSET', KEYS[2], ARGV[2], ARGV[6]) end
end
return 1
"""

#: the tokens of one user, deleted: a helper inlined in the scripts below (KEYS[tokens])
_DROP_TOKENS = """
local function drop_tokens(tokens)
  for _, token in ipairs(redis.call('ZRANGE', tokens, 0, -1)) do redis.call('DEL', token) end
  redis.call('DEL', tokens)
end
"""

#: KEYS user, tokens; ARGV hash
_SET_HASH = _DROP_TOKENS + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'hash', ARGV[1])
drop_tokens(KEYS[2])
return 1
"""

#: KEYS user, users, tokens, seen, ips; ARGV key
_DELETE_USER = _DROP_TOKENS + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
drop_tokens(KEYS[3])
for _, ip in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  local seen = redis.call('HGET', KEYS[4], ip)
  if seen and string.match(seen, '^(%S+) ') == ARGV[1] then redis.call('HDEL', KEYS[4], ip) end
end
redis.call('DEL', KEYS[1], KEYS[5])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
"""

#: copies one user unless the key exists: KEYS user, users, tokens, seen, ips; ARGV key, name, hash,
#: created, last_login, last_ip, the number of tokens, then (token key, ttl ms) for each, then (ip, seen)
_IMPORT_USER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'hash', ARGV[3], 'created', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'last_login', ARGV[5], 'last_ip', ARGV[6]) end
redis.call('SADD', KEYS[2], ARGV[1])
local n = tonumber(ARGV[7])
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
for i = 0, n - 1 do
  redis.call('SET', ARGV[8 + 2 * i], ARGV[1], 'PX', ARGV[9 + 2 * i])
  redis.call('ZADD', KEYS[3], now_ms + tonumber(ARGV[9 + 2 * i]), ARGV[8 + 2 * i])
end
for i = 8 + 2 * n, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[1] .. ' ' .. ARGV[i + 1]) == 1 then redis.call('SADD', KEYS[5], ARGV[i]) end
end
return 1
"""

#: KEYS users, seen; ARGV the prefix of auth's keys. Returns {users, tokens} deleted.
_CLEAR = _DROP_TOKENS + """
local users, tokens = 0, 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local list = ARGV[1] .. 'tokens:' .. key
  for _, token in ipairs(redis.call('ZRANGE', list, 0, -1)) do tokens = tokens + redis.call('DEL', token) end
  redis.call('DEL', list, ARGV[1] .. 'user:' .. key, ARGV[1] .. 'ips:' .. key)
  users = users + 1
end
redis.call('DEL', KEYS[1], KEYS[2])
return {users, tokens}
"""

#: a failure: KEYS fail, block; ARGV max_attempts, window_ms, cooldown_ms. 1 if it just blocked the key.
_FAILURE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], now, now .. ':' .. t[2] .. ':' .. redis.call('ZCARD', KEYS[1]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[2], '1', 'PX', ARGV[3]) end
return 1
"""

#: a registration: KEYS reg:ADDRESS, reg; ARGV per_address (or ''), total (or ''), window_ms.
#: {0, 0}: counted; {1, ms} over per_address; {2, ms} over total
_TAKE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local window = tonumber(ARGV[3])
for i = 1, 2 do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window) end
local limits = {tonumber(ARGV[1]), tonumber(ARGV[2])}
for i = 1, 2 do
  local limit = limits[i]
  if limit and redis.call('ZCARD', KEYS[i]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[i], -limit, -limit, 'WITHSCORES')
    return {i, tonumber(oldest[2]) + window - now}
  end
end
local member = now .. ':' .. t[2] .. ':' .. redis.call('ZCARD', KEYS[2])
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], now, member)
  redis.call('PEXPIRE', KEYS[i], window)
end
return {0, 0}
"""


class SharedUserStore:
    """:class:`~plugins.auth.store.UserStore`'s methods on the cluster's Redis."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        #: where the users are, for log lines (the password never)
        self.path = f"Redis {cluster.url} ({cluster.key('auth:')}*)"
        r = cluster.redis
        self._add_user = r.register_script(_ADD_USER)
        self._record_login = r.register_script(_RECORD_LOGIN)
        self._forget_login = r.register_script(_FORGET_LOGIN)
        self._set_hash = r.register_script(_SET_HASH)
        self._delete_user = r.register_script(_DELETE_USER)
        self._clear = r.register_script(_CLEAR)
        self._import_user = r.register_script(_IMPORT_USER)

    def _key(self, *parts: str) -> str:
        return self.cluster.key("auth", *parts)

    def close(self) -> None:
        pass  # the connection is the cluster's

    # -- users ------------------------------------------------------------------

    def add_user(self, key: str, name: str, password_hash: str, now: float) -> bool:
        keys = [self._key("user", key), self._key("users")]
        return bool(self.cluster.call(lambda r: self._add_user(keys=keys, args=[key, name, password_hash, repr(now)])))

    def user(self, key: str) -> User | None:
        return _user(key, self.cluster.call(lambda r: r.hgetall(self._key("user", key))))

    def users(self) -> list[User]:
        def read(r):
            keys = sorted(r.smembers(self._key("users")))
            pipe = r.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(self._key("user", key))
            return keys, pipe.execute()

        keys, rows = self.cluster.call(read)
        return [user for user in (_user(k, row) for k, row in zip(keys, rows)) if user is not None]

    def exists(self, key: str) -> bool:
        return bool(self.cluster.call(lambda r: r.exists(self._key("user", key))))

    def record_login(self, key: str, ip: str, now: float, new_hash: str | None = None,
                     token: tuple[str, float] | None = None) -> LoginRecord | None:
        token_key = self._key("token", token[0]) if token else ""
        ttl_ms = max(1, int((token[1] - now) * 1000)) if token else 0
        keys = [self._key("user", key), self._key("seen"), token_key, self._key("tokens", key), self._key("ips", key)]
        row = self.cluster.call(lambda r: self._record_login(keys=keys, args=[key, ip, repr(now), new_hash or "",
                                                                                ttl_ms]))
        if row is None:
            return None
        last_login, last_ip, seen_key, seen_at = row
        before = (float(last_login) if last_login else None, last_ip or None)
        seen = (seen_key, float(seen_at)) if seen_key else None
        return LoginRecord(key, ip, now, token[0] if token else None, before, seen)

    def forget_login(self, record: LoginRecord) -> None:
        keys = [self._key("user", record.key), self._key("seen"),
                self._key("token", record.token_digest) if record.token_digest else ""]
        before_login, before_ip = record.before
        seen = f"{record.seen_before[0]} {record.seen_before[1]!r}" if record.seen_before else ""
        args = [record.key, record.ip, repr(record.at), "" if before_login is None else repr(before_login),
                before_ip or "", seen]
        self.cluster.call(lambda r: self._forget_login(keys=keys, args=args))

    def set_hash(self, key: str, password_hash: str) -> bool:
        keys = [self._key("user", key), self._key("tokens", key)]
        return bool(self.cluster.call(lambda r: self._set_hash(keys=keys, args=[password_hash])))

    def delete_user(self, key: str) -> bool:
        keys = [self._key("user", key), self._key("users"), self._key("tokens", key), self._key("seen"),
                self._key("ips", key)]
        return bool(self.cluster.call(lambda r: self._delete_user(keys=keys, args=[key])))

    def last_user_from(self, ip: str) -> str | None:
        def read(r):
            seen = r.hget(self._key("seen"), ip)
            return r.hget(self._key("user", seen.split(" ", 1)[0]), "name") if seen else None

        return self.cluster.call(read)

    # -- tokens -----------------------------------------------------------------

    def token_user(self, digest: str, now: float) -> User | None:
        key = self.cluster.call(lambda r: r.get(self._key("token", digest)))  # expires with the token
        return self.user(key) if key else None

    def import_user(self, user: User, tokens: list[tuple[str, float]], seen: list[tuple[str, float]],
                    now: float) -> bool:
        """Copy a user from a standalone store with their unexpired tokens and "hello again"
        addresses (those no other user holds in the cluster), in one step; False, copying nothing,
        if the cluster has that user already (``daemond cluster import`` is idempotent)."""
        keys = [self._key("user", user.key), self._key("users"), self._key("tokens", user.key), self._key("seen"),
                self._key("ips", user.key)]
        live = [(digest, expires) for digest, expires in tokens if expires > now]
        args: list[Any] = [user.key, user.name, user.hash, repr(user.created),
                           "" if user.last_login is None else repr(user.last_login), user.last_ip or "", len(live)]
        for digest, expires in live:
            args += [self._key("token", digest), max(1, int((expires - now) * 1000))]
        for ip, at in seen:
            args += [ip, repr(at)]
        return bool(self.cluster.call(lambda r: self._import_user(keys=keys, args=args)))

    # -- the whole store ----------------------------------------------------------

    def clear(self) -> tuple[int, int]:
        users, tokens = self.cluster.call(lambda r: self._clear(keys=[self._key("users"), self._key("seen")],
                                                                args=[self._key("")]))
        return int(users), int(tokens)

    def counts(self, now: float) -> dict[str, int]:
        def read(r):
            tokens = sum(1 for _ in r.scan_iter(match=_glob(self._key("token", "")) + "*", count=1000))
            return {"users": r.scard(self._key("users")), "tokens": tokens}

        return self.cluster.call(read)


class SharedThrottle:
    """:class:`~plugins.auth.throttle.Throttle`'s methods on the cluster's Redis: ``max_attempts``
    failures of one key within ``window`` seconds, on any node, block it for ``cooldown`` seconds
    on every node."""

    def __init__(self, cluster: Cluster, which: str, max_attempts: int, window: float, cooldown: float):
        self.cluster, self.which = cluster, which
        self.max_attempts, self.window, self.cooldown = max_attempts, window, cooldown
        self._failure = cluster.redis.register_script(_FAILURE)

    def configure(self, max_attempts: int, window: float, cooldown: float) -> None:
        self.max_attempts, self.window, self.cooldown = max_attempts, window, cooldown

    def _key(self, kind: str, key: str) -> str:
        return self.cluster.key("auth", kind, self.which, key)

    def blocked_for(self, key: str) -> float:
        left = self.cluster.call(lambda r: r.pttl(self._key("block", key)))
        return left / 1000 if left > 0 else 0.0

    def failure(self, key: str) -> bool:
        keys = [self._key("fail", key), self._key("block", key)]
        args = [self.max_attempts, max(1, int(self.window * 1000)), int(self.cooldown * 1000)]
        return bool(self.cluster.call(lambda r: self._failure(keys=keys, args=args)))

    def success(self, key: str) -> None:
        self.cluster.call(lambda r: r.delete(self._key("fail", key)))

    def blocked_count(self) -> int:
        pattern = _glob(self.cluster.key("auth", "block", self.which, "")) + "*"
        return self.cluster.call(lambda r: sum(1 for _ in r.scan_iter(match=pattern, count=1000)))


class SharedRegistrationLimit:
    """:class:`~plugins.auth.limits.RegistrationLimit`'s methods on the cluster's Redis: the
    registrations of every node count together."""

    def __init__(self, cluster: Cluster, per_address: int | None, total: int | None, window: float):
        self.cluster = cluster
        self.per_address, self.total, self.window = per_address, total, window
        self._take = cluster.redis.register_script(_TAKE)

    def configure(self, per_address: int | None, total: int | None, window: float) -> None:
        self.per_address, self.total, self.window = per_address, total, window

    def take(self, address: str) -> tuple[str, float] | None:
        keys = [self.cluster.key("auth", "reg", address), self.cluster.key("auth", "reg")]
        args = ["" if self.per_address is None else self.per_address, "" if self.total is None else self.total,
                max(1, int(self.window * 1000))]
        which, left_ms = self.cluster.call(lambda r: self._take(keys=keys, args=args))
        if which == 0:
            return None
        return ("address" if which == 1 else "total"), left_ms / 1000

    def give_back(self, address: str) -> None:
        def undo(r):
            for key in (self.cluster.key("auth", "reg", address), self.cluster.key("auth", "reg")):
                r.zpopmax(key)

        self.cluster.call(undo)


def _user(key: str, row: dict[str, Any]) -> User | None:
    if not row or "name" not in row:
        return None
    return User(key, row["name"], row["hash"], float(row["created"]),
                float(row["last_login"]) if row.get("last_login") else None, row.get("last_ip") or None)


def _glob(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


__all__ = ["SharedRegistrationLimit", "SharedThrottle", "SharedUserStore", "ClusterUnavailable"]
