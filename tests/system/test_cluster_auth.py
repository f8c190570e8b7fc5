"""auth on a cluster (docs/cluster.md): three real daemond nodes sharing one real redis-server.

Users, tokens, the failed-login throttles and the registration limit are the cluster's: a
name registered on one node logs in on another, a token made on one works on a third, a
registration race over the nodes gives exactly one +OK, and with Redis gone nothing is
acknowledged (-ERR unavailable) while the sessions stay; what was acknowledged survives a
crash of Redis (appendfsync always)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.support.auth import TOKEN, auth_settings

PASSWORD = "correct horse"


@pytest.fixture
def nodes(daemond_process, redis_server):
    """start(count, **auth settings) -> the nodes, each with a listener ``login`` (auth, echo)."""

    def start(count: int = 3, **settings):
        return [daemond_process({"login": {"plugins": ["auth", "echo"]}}, {"auth": auth_settings(**settings)},
                                cluster={"redis": redis_server.url, "node": f"n{i}", "prefix": "t:"})
                for i in range(count)]

    return start


def client(node):
    c = node.client("login", timeout=10)
    greeting = c.read_line()
    assert greeting.startswith("+OK "), greeting
    return c


def say(node, line: str) -> str:
    with client(node) as c:
        c.send_line(line)
        return c.read_line()


def test_a_user_registered_on_one_node_logs_in_on_another_and_its_token_works_on_a_third(nodes, redis_server):
    a, b, c = nodes()
    reply = say(a, f"/register Alice {PASSWORD}")
    assert reply.startswith("+OK registered and logged in as Alice token="), reply
    assert say(b, f"/login alice {PASSWORD}").startswith("+OK logged in as Alice token=")
    token = TOKEN.search(reply).group(1)
    assert say(c, f"/login-token {token}") == "+OK logged in as Alice"
    assert say(c, f"/login alice wrong-password").startswith("-ERR bad-credentials")
    # what Redis holds: never the password or the token
    r = redis_server.client()
    assert r.hget("t:auth:user:alice", "name") == "Alice" and r.hget("t:auth:user:alice", "hash").startswith("$argon2id$")
    assert not any(PASSWORD in v or token in v for k in r.keys("*") if r.type(k) == "string" for v in [r.get(k)])
    # the "hello again" map is shared too: the last login from 127.0.0.1 was on another node
    with c.client("login") as cl:
        assert cl.read_line().startswith("+OK hello again, Alice;")


def test_registration_race_across_nodes_gives_exactly_one_ok(nodes):
    three = nodes()
    start = threading.Barrier(9)
    replies: list[str] = []
    lock = threading.Lock()

    def register(node):
        with client(node) as c:
            start.wait()
            c.send_line(f"/register Racer {PASSWORD}")
            line = c.read_line()
        with lock:
            replies.append(line)

    threads = [threading.Thread(target=register, args=(node,)) for node in three for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(replies) == 9
    assert sum(r.startswith("+OK registered") for r in replies) == 1, replies
    assert all(r.startswith(("+OK registered", "-ERR name-taken")) for r in replies), replies


def test_failed_logins_spread_over_nodes_are_throttled_as_one(nodes):
    a, b, c = nodes(max_attempts=3, attempt_window=60, cooldown=60)
    assert say(a, f"/register Bob {PASSWORD}").startswith("+OK")
    for node in (a, b, c):  # one failure on each node: three in all
        assert say(node, "/login bob nope-nope").startswith("-ERR bad-credentials")
    assert say(a, f"/login bob {PASSWORD}").startswith("-ERR too-many-attempts")  # even the right password


def test_registrations_count_over_every_node(nodes):
    a, b, c = nodes(register_per_address=2, register_total=None, register_window=600)
    assert say(a, f"/register u1 {PASSWORD}").startswith("+OK")
    assert say(b, f"/register u2 {PASSWORD}").startswith("+OK")
    assert say(c, f"/register u3 {PASSWORD}").startswith("-ERR too-many-registrations")


def test_daemonctl_users_and_clear_auth_act_on_the_cluster_from_any_node(nodes):
    a, b, c = nodes()
    assert say(a, f"/register Carol {PASSWORD}").startswith("+OK")
    listed = json.loads(b.ctl("--json", "users", "list").stdout)["result"]
    assert [u["name"] for u in listed] == ["Carol"]
    add = c.ctl("users", "add", "Dave", "--password", PASSWORD)
    assert add.returncode == 0, add
    assert say(a, f"/login dave {PASSWORD}").startswith("+OK logged in as Dave")
    assert b.ctl("users", "del", "carol").returncode == 0
    assert say(c, f"/login carol {PASSWORD}").startswith("-ERR bad-credentials")
    cleared = a.ctl("--yes", "clear-auth")
    assert cleared.returncode == 0 and cleared.stdout.startswith("deleted 1 users"), cleared
    assert say(b, f"/login dave {PASSWORD}").startswith("-ERR bad-credentials")
    assert json.loads(c.ctl("--json", "users", "list").stdout)["result"] == []


def test_with_redis_gone_nothing_is_acknowledged_and_acknowledged_writes_survive_its_crash(nodes, redis_server):
    a, b = nodes(2)
    assert say(a, f"/register Erin {PASSWORD}").startswith("+OK")
    logged_in = client(b)
    logged_in.send_line(f"/login erin {PASSWORD}")
    assert logged_in.read_line().startswith("+OK logged in as Erin")
    redis_server.kill()  # a crash: only what was fsynced survives, and with appendfsync always that is every reply
    assert say(a, f"/register Frank {PASSWORD}") == "-ERR unavailable the users store cannot be written; try again later"
    assert say(b, f"/login erin {PASSWORD}") == "-ERR unavailable the users store cannot be written; try again later"
    failed = a.ctl("users", "list")
    assert failed.returncode == 1 and "is unavailable" in failed.stderr and "nothing was changed" in failed.stderr
    logged_in.send_line("still here")  # a logged-in session is not cut by the outage
    assert logged_in.read_line() == "still here"
    redis_server.start()
    assert say(b, f"/login erin {PASSWORD}").startswith("+OK logged in as Erin")  # acknowledged before the crash
    assert say(a, f"/login frank {PASSWORD}").startswith("-ERR bad-credentials")  # refused: never written
    assert say(a, f"/register Frank {PASSWORD}").startswith("+OK registered")
    logged_in.close()


def test_daemonctl_cluster_counts_each_nodes_users(daemond_process, redis_server):
    a, b = (daemond_process({"login": {"plugins": ["auth", "echo"]}}, {"auth": auth_settings()},
                            cluster={"redis": redis_server.url, "node": name, "prefix": "t:", "node_timeout": 1.5})
            for name in ("a", "b"))
    with client(a) as c:
        c.send_line(f"/register Gina {PASSWORD}")
        assert c.read_line().startswith("+OK")
        deadline = time.monotonic() + 30  # the next heartbeat (node_timeout / 3), however slow the machine
        while True:
            seen = {n["node"]: n["users"] for n in json.loads(b.ctl("--json", "cluster").stdout)["result"]["nodes"]}
            if seen == {"a": 1, "b": 0} or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert seen == {"a": 1, "b": 0}


def test_a_node_started_while_redis_is_down_refuses_then_serves_once_it_is_back(daemond_process, redis_server):
    redis_server.kill()
    a = daemond_process({"login": {"plugins": ["auth", "echo"]}}, {"auth": auth_settings()},
                        cluster={"redis": redis_server.url, "node": "late", "prefix": "t:"})
    assert a.status()["cluster"]["connected"] is False
    assert say(a, f"/register Hank {PASSWORD}").startswith("-ERR unavailable")
    redis_server.start()
    assert say(a, f"/register Hank {PASSWORD}").startswith("+OK registered")
    assert a.status()["cluster"]["connected"] is True


def test_expired_tokens_leave_the_users_token_list(nodes, redis_server):
    a, = nodes(1, token_ttl=1)
    assert say(a, f"/register Eve {PASSWORD}").startswith("+OK")
    for _ in range(3):
        assert say(a, f"/login eve {PASSWORD}").startswith("+OK logged in as Eve token=")
    r = redis_server.client()
    assert r.zcard("t:auth:tokens:eve") == 4
    time.sleep(1.2)  # every token so far has expired
    token = TOKEN.search(say(a, f"/login eve {PASSWORD}")).group(1)
    assert r.zcard("t:auth:tokens:eve") == 1  # only the new one: the list does not grow with every login
    assert say(a, f"/login-token {token}") == "+OK logged in as Eve"
    assert a.ctl("users", "passwd", "eve", "--password", "another horse").returncode == 0
    assert r.exists("t:auth:tokens:eve") == 0 and say(a, f"/login-token {token}").startswith("-ERR")
