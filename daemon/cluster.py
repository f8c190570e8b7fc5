"""This daemon as one node of a cluster: the shared Redis, this node's name, its heartbeat.

One :class:`Cluster` per daemon, made only when ``cluster.redis`` is set (the
``cluster`` extra's redis-py is imported then, never in a standalone daemon).
Plugins reach it as ``daemon.cluster`` (:class:`~daemon.api.DaemonAPI`) and keep
their shared state in its Redis under :meth:`Cluster.key`. The connection is
redis-py's pool: a command that finds Redis gone is retried once after a short
backoff, then :class:`ClusterUnavailable` is raised, so a plugin answers
``-ERR unavailable`` and acknowledges nothing that is not in Redis.

The heartbeat thread writes ``<prefix>node:<name>`` (this node's address, users and
the time) with a TTL of ``node_timeout`` seconds, every third of it: a node that
dies simply ages out, and :meth:`Cluster.nodes` lists the keys that are left.
While Redis is unreachable it retries with a doubling backoff (up to a third of
``node_timeout``) and logs once when Redis goes and once when it is back.

:meth:`Cluster.ask_all` asks every other node to do something and collects their
answers (``daemonctl kick`` on any node ends the user's sessions on all of them): the
question goes out on the pub/sub channel ``<prefix>control``, each node's listener
thread runs the handler registered for it with :meth:`Cluster.on` and pushes its
answer onto a list the asker waits on.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from daemon.addresses import url_without_password

log = logging.getLogger("daemond.cluster")


#: Redis's replies that mean "not now" (persistence failing, a replica, out of memory, a script
#: running, loading): a write refused, so a plugin answers ``-ERR unavailable`` as when it is gone
REFUSED_WRITES = ("MISCONF", "READONLY", "OOM", "NOREPLICAS", "MASTERDOWN", "BUSY", "LOADING", "TRYAGAIN")


class ClusterUnavailable(Exception):
    """The cluster's Redis cannot be reached (or did not answer in time): nothing was written.

    Raised by :meth:`Cluster.call`; a plugin answers the client ``-ERR unavailable`` and
    acknowledges nothing. The message says why, without the Redis password.

    Example::

        try:
            added = daemon.cluster.call(lambda r: r.hsetnx(daemon.cluster.key("users"), name, record))
        except ClusterUnavailable:
            session.send_line("-ERR unavailable")
    """


def shown_url(url: str) -> str:
    """``url`` without its password (``redis://:****@host:6379/0``), for status and logs."""
    return url_without_password(url)


def default_node_name() -> str:
    """``HOSTNAME-PID``: unique on one host at a time; a restarted node is a new name."""
    host = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in socket.gethostname())
    return f"{host[:50] or 'host'}-{os.getpid()}"


class Cluster:
    """This daemon as a node of a cluster (``cluster:`` in the config): ``daemon.cluster``.

    Every member may be used from any thread. Keep shared state in :attr:`redis` under
    :meth:`key`, and wrap each command in :meth:`call`, which turns an unreachable Redis
    into :class:`ClusterUnavailable`.

    Example (a plugin counting logins across the cluster)::

        @hookimpl
        def daemond_session_login(session, user):
            cluster = session.daemon.cluster
            if cluster is not None:
                cluster.call(lambda r: r.incr(cluster.key("logins", user)))
    """

    node: str
    """This node's name, unique in the cluster (``cluster.node``, else ``HOSTNAME-PID``)."""
    prefix: str
    """What every key of this cluster begins with (``cluster.prefix``); see :meth:`key`."""
    node_timeout: float
    """Seconds without a heartbeat before a node counts as dead (``cluster.node_timeout``)."""
    url: str
    """The Redis URL without its password, for messages."""
    redis: Any
    """The redis-py client (``redis.Redis``, replies decoded as UTF-8 ``str``), shared by every
    thread; use it inside :meth:`call`."""
    connected: bool
    """Whether the last command reached Redis."""
    last_error: str | None
    """Why the last command did not reach Redis (None while connected)."""

    #: seconds a command may take, and a connection attempt, before Redis counts as unreachable
    COMMAND_TIMEOUT = 2.0
    CONNECT_TIMEOUT = 1.0
    #: connections to Redis a node opens at most, shared by all its threads
    POOL_SIZE = 64

    def __init__(self, settings: Any, describe: Callable[[], dict[str, Any]]):
        import redis  # the cluster extra
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        self._redis_module = redis
        self.node = settings.node or default_node_name()
        self.prefix = settings.prefix
        self.node_timeout = settings.node_timeout
        self.url = shown_url(settings.redis)
        self._describe = describe
        # one pool for every thread: a thread waits (up to COMMAND_TIMEOUT) for one of POOL_SIZE
        # connections rather than fail (redis-py's plain pool raises at its limit, 100 by default)
        pool = redis.BlockingConnectionPool.from_url(
            settings.redis, max_connections=self.POOL_SIZE, timeout=self.COMMAND_TIMEOUT,
            decode_responses=True, socket_timeout=self.COMMAND_TIMEOUT,
            socket_connect_timeout=self.CONNECT_TIMEOUT, health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=1),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError])
        self.redis = redis.Redis(connection_pool=pool)
        # _lock guards connected, last_error and _stopping; _wake (a Condition on it) ends the
        # heartbeat thread's wait at stop()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self.connected = False
        self.last_error = None
        self.started_at = time.time()
        self._thread: threading.Thread | None = None
        self._listeners: list[threading.Thread] = []
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}

    # -- for plugins -------------------------------------------------------------

    def key(self, *parts: str) -> str:
        """A Redis key of this cluster: the prefix and ``parts`` joined by ``:``
        (``key("users", "alice")`` is ``daemond:users:alice``)."""
        return self.prefix + ":".join(parts)

    def call(self, command: Callable[[Any], Any]) -> Any:
        """``command(redis)``'s result; :class:`ClusterUnavailable` if Redis cannot be reached
        or does not answer in time (after one retry), or refuses writes just now (persistence
        failing, out of memory, a read-only replica). Other errors Redis replies with
        (``redis.ResponseError``) are raised as they are."""
        redis = self._redis_module
        try:
            result = command(self.redis)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._went_away(exc)
            raise ClusterUnavailable(f"Redis at {self.url} is unavailable: {_reason(exc)}") from None
        except redis.ResponseError as exc:
            # redis-py strips the error code off some replies and raises its own class for them
            refused = (redis.exceptions.ReadOnlyError, redis.exceptions.OutOfMemoryError,
                       redis.exceptions.MasterDownError, redis.exceptions.BusyLoadingError)
            if not isinstance(exc, refused) and str(exc).split(" ", 1)[0] not in REFUSED_WRITES:
                raise
            raise ClusterUnavailable(f"Redis at {self.url} refuses writes just now: {_reason(exc)}") from None
        self._is_back()
        return result

    def nodes(self) -> list[dict[str, Any]]:
        """The live nodes (those whose heartbeat has not expired), by name: each a dict with
        ``node``, ``pid``, ``host``, ``listeners`` (``["NAME HOST:PORT", …]``), ``users``
        (sessions logged in), ``started_at`` and ``heartbeat`` (epoch seconds).
        :class:`ClusterUnavailable` if Redis cannot be reached."""
        pattern = _glob_escape(self.key("node", "")) + "*"

        def read(r):
            keys = sorted(r.scan_iter(match=pattern, count=1000))
            return keys, (r.mget(keys) if keys else [])

        keys, values = self.call(read)
        found = []
        for value in values:
            if value is None:  # expired between SCAN and MGET
                continue
            try:
                found.append(json.loads(value))
            except ValueError:
                continue
        return sorted(found, key=lambda n: n.get("node", ""))

    #: seconds :meth:`ask_all` waits for the other nodes' answers
    ASK_TIMEOUT = 2.0

    def on(self, kind: str, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Answer the other nodes' :meth:`ask_all` of ``kind`` with ``handler(question)`` (a dict,
        run on this node's listener thread). Register before :meth:`start`."""
        self._handlers[kind] = handler

    def ask_all(self, kind: str, question: dict[str, Any]) -> list[dict[str, Any]]:
        """Ask every other live node to do ``kind`` (see :meth:`on`); their answers, each with
        its ``node``. A node that does not answer within :attr:`ASK_TIMEOUT` is left out.
        :class:`ClusterUnavailable` if Redis cannot be reached."""
        reply = self.key("reply", secrets.token_hex(8))
        message = json.dumps({**question, "kind": kind, "from": self.node, "reply": reply})
        listening = self.call(lambda r: r.publish(self.key("control"), message))
        answers: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.ASK_TIMEOUT
        try:
            while len(answers) < listening - 1:  # every listener but this node's own
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                got = self.call(lambda r: r.blpop([reply], timeout=min(left, self.COMMAND_TIMEOUT / 2)))
                if got is not None:
                    answers.append(json.loads(got[1]))
        finally:
            try:
                self.call(lambda r: r.delete(reply))
            except ClusterUnavailable:
                pass
        return answers

    def listen(self, channel: str, handler: Callable[[str], None], name: str) -> None:
        """Call ``handler(data)`` for every message published on the Redis pub/sub ``channel``,
        on a thread of its own (``name``), until :meth:`stop`; it subscribes again after an outage
        (what is published meanwhile is lost: pub/sub keeps nothing). An exception from
        ``handler`` is logged and the thread goes on."""
        thread = threading.Thread(target=self._listen, args=(channel, handler), name=name, daemon=True)
        thread.start()
        self._listeners.append(thread)

    def _listen(self, channel: str, handler: Callable[[str], None]) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
            pubsub = None
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(channel)
                while not self._stopping:
                    message = pubsub.get_message(timeout=0.5)
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        handler(message["data"])
                    except Exception:  # the listener must not die: the node would stop hearing the others
                        log.exception("cluster: a message on %s could not be handled; going on", channel)
            except self._redis_module.RedisError:  # Redis away: subscribe again when it is back
                with self._lock:
                    self._wake.wait_for(lambda: self._stopping, 0.5)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        pass

    def _answer(self, data: str) -> None:
        try:
            question = json.loads(data)
        except ValueError:
            return
        handler = self._handlers.get(question.get("kind")) if isinstance(question, dict) else None
        if handler is None or question.get("from") == self.node or not isinstance(question.get("reply"), str):
            return
        answer = {**handler(question), "node": self.node}
        reply = question["reply"]
        self.call(lambda r: r.pipeline().rpush(reply, json.dumps(answer)).expire(reply, 30).execute())

    # -- for the daemon ----------------------------------------------------------

    def start(self) -> None:
        """Beat once now (logging whether Redis answered), then every third of node_timeout;
        warn if another live process has this node's name."""
        self._warn_if_name_taken()
        self.beat()
        if self.connected:
            log.info("cluster: node %s joined through Redis at %s", self.node, self.url)
        self._thread = threading.Thread(target=self._beat_loop, name="cluster-heartbeat", daemon=True)
        self._thread.start()
        if self._handlers:
            self.listen(self.key("control"), self._answer, "cluster-listener")

    def stop(self) -> None:
        """Stop beating and remove this node's heartbeat, so the others see it leave at once."""
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        for thread in [self._thread, *self._listeners]:
            if thread is not None:
                thread.join(10)
        try:
            self.call(lambda r: r.delete(self.key("node", self.node)))
        except ClusterUnavailable:
            pass
        self.redis.close()

    def beat(self) -> bool:
        """Write this node's heartbeat now; False if Redis could not be reached."""
        facts = {"node": self.node, "pid": os.getpid(), "host": socket.gethostname(),
                 "started_at": self.started_at, "heartbeat": time.time(), **self._describe()}
        try:
            self.call(lambda r: r.set(self.key("node", self.node), json.dumps(facts),
                                      px=int(self.node_timeout * 1000)))
        except ClusterUnavailable:
            return False
        except self._redis_module.RedisError as exc:  # e.g. "DB index is out of range": the URL is wrong
            self._went_away(exc)
            return False
        return True

    def _warn_if_name_taken(self) -> None:
        try:
            found = self.call(lambda r: r.get(self.key("node", self.node)))
        except (ClusterUnavailable, self._redis_module.RedisError):
            return  # start() reports it
        try:
            other = json.loads(found) if found else None
        except ValueError:
            return
        if other and (other.get("pid"), other.get("host")) != (os.getpid(), socket.gethostname()):
            log.warning("cluster: node name %s is already used by pid %s on %s (heartbeat %.1f s ago); two "
                        "live nodes must not share a name (cluster.node): their heartbeats overwrite each other",
                        self.node, other.get("pid"), other.get("host"),
                        max(0.0, time.time() - float(other.get("heartbeat", time.time()))))

    def status(self) -> dict[str, Any]:
        """For ``daemonctl status``: the URL (no password), connected or not, this node's name."""
        with self._lock:
            return {"redis": self.url, "connected": self.connected, "node": self.node, "prefix": self.prefix,
                    "node_timeout": self.node_timeout, "error": self.last_error}

    def _beat_loop(self) -> None:
        interval = self.node_timeout / 3
        backoff = 0.0
        while True:
            with self._lock:
                self._wake.wait_for(lambda: self._stopping, backoff or interval)
                if self._stopping:
                    return
            try:
                beaten = self.beat()
            except Exception:  # the heartbeat thread must not die: the node would vanish while serving
                log.exception("cluster: the heartbeat failed; trying again")
                beaten = False
            backoff = 0.0 if beaten else min(interval, max(0.1, backoff * 2))

    def _went_away(self, exc: Exception) -> None:
        with self._lock:
            was, self.connected = self.connected, False
            self.last_error = _reason(exc)
        if was or self._thread is None:
            log.warning("cluster: Redis at %s is unavailable (%s); retrying with backoff", self.url, _reason(exc))

    def _is_back(self) -> None:
        with self._lock:
            if self.connected:
                return
            self.connected, self.last_error = True, None
            back = self._thread is not None
        if back:
            log.warning("cluster: Redis at %s is reachable again", self.url)


def _reason(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern (SCAN MATCH)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
