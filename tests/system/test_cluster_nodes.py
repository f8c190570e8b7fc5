"""Cluster nodes on a real redis-server (docs/cluster.md): heartbeats, the live nodes from any
node (`daemonctl cluster`), `daemonctl status`, an outage of Redis, and standalone untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.support.redis import started

ECHO = {"e": {"plugins": ["echo"]}}


def cluster_of(redis_url: str, node: str, **more) -> dict:
    return {"redis": redis_url, "node": node, "prefix": "t:", **more}


def nodes_seen(proc) -> dict[str, dict]:
    out = proc.ctl("--json", "cluster")
    assert out.returncode == 0, out
    return {n["node"]: n for n in json.loads(out.stdout)["result"]["nodes"]}


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.1)


def test_every_node_sees_the_live_nodes_and_a_dead_one_ages_out(daemond_process, redis_server):
    a = daemond_process(ECHO, cluster=cluster_of(redis_server.url, "a", node_timeout=4))
    b = daemond_process(ECHO, cluster=cluster_of(redis_server.url, "b", node_timeout=4))
    seen = wait_until(lambda: (n := nodes_seen(b)) and set(n) == {"a", "b"} and n, 30, "both nodes listed")
    assert seen["a"]["listeners"] == [f"e 127.0.0.1:{a.ports['e']}"] and seen["a"]["users"] == 0
    assert seen["a"]["pid"] == a.proc.pid and seen["b"]["pid"] == b.proc.pid
    text = a.ctl("cluster").stdout
    assert "a *" in text and f"e 127.0.0.1:{b.ports['e']}" in text and "2 nodes (* this one)" in text, text
    b.kill()  # kill -9: no goodbye; its heartbeat expires after node_timeout
    wait_until(lambda: set(nodes_seen(a)) == {"a"}, 30, "the killed node aged out")
    # still beating: a is listed long after its own first heartbeat would have expired
    time.sleep(2.5)
    assert set(nodes_seen(a)) == {"a"}


def test_a_node_that_stops_leaves_at_once(daemond_process, redis_server):
    a = daemond_process(ECHO, cluster=cluster_of(redis_server.url, "a", node_timeout=60))
    b = daemond_process(ECHO, cluster=cluster_of(redis_server.url, "b", node_timeout=60))
    wait_until(lambda: set(nodes_seen(a)) == {"a", "b"}, 30, "both nodes listed")
    assert b.terminate() == 0
    assert set(nodes_seen(a)) == {"a"}


def test_status_shows_the_cluster_without_the_password(daemond_process, tmp_path):
    server = started(tmp_path / "redis", password="s3cret-pw")
    try:
        a = daemond_process(ECHO, cluster={"redis": server.url, "node": "n1"})
        text = a.ctl("status").stdout
        assert f"cluster:     node n1, Redis redis://:****@127.0.0.1:{server.port}/0 connected" in text, text
        result = a.status()["cluster"]
        assert result["connected"] is True and result["node"] == "n1" and result["prefix"] == "daemond:"
        assert result["redis"] == f"redis://:****@127.0.0.1:{server.port}/0"
        assert server.client().exists("daemond:node:n1") == 1  # the default prefix
        a.terminate()
        assert "s3cret-pw" not in a.stderr() and "s3cret-pw" not in a.ctl("--json", "status").stdout
    finally:
        server.stop()


def test_a_node_serves_through_a_redis_outage_and_reconnects(daemond_process, redis_server):
    a = daemond_process(ECHO, cluster=cluster_of(redis_server.url, "a", node_timeout=1.5))
    redis_server.kill()
    status = wait_until(lambda: (c := a.status()["cluster"]) and not c["connected"] and c, 30, "seen disconnected")
    assert status["error"]
    assert "NOT CONNECTED" in a.ctl("status").stdout
    failed = a.ctl("cluster")
    assert failed.returncode == 1 and failed.stderr.startswith(f"daemonctl: Redis at {redis_server.url} is unavailable")
    with a.client("e") as c:  # what needs no Redis goes on
        c.send_line("still here")
        assert c.read_line() == "still here"
    redis_server.start()  # same port, same directory
    wait_until(lambda: a.status()["cluster"]["connected"], 30, "reconnected")
    wait_until(lambda: set(nodes_seen(a)) == {"a"}, 30, "its heartbeat is back")
    log = a.stderr()
    assert log.count("is unavailable") == 1 and log.count("is reachable again") == 1, log  # once each, not per beat


def test_standalone_imports_nothing_of_redis_and_says_so(tmp_path, daemond_process):
    a = daemond_process(ECHO)
    assert a.status()["cluster"] is None
    assert "cluster:     standalone (cluster.redis not set)" in a.ctl("status").stdout
    failed = a.ctl("cluster")
    assert failed.returncode == 1 and "runs standalone" in failed.stderr
    code = ("import sys, yaml\n"
            "from daemon.testing import write_config\n"
            "from daemon.config import load_config\n"
            "from daemon.loader import PluginLoader\n"
            "from daemon.core import Daemon\n"
            "from pathlib import Path\n"
            f"path = write_config(Path({str(tmp_path / 'inproc')!r}), {{'e': {{'plugins': ['echo']}}}})\n"
            "d = Daemon(load_config(path, PluginLoader()), log_to_stderr=False)\n"
            "d.start(); d.stop()\n"
            "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith(('redis.', 'hiredis'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_redis_that_refuses_the_url_is_reported_and_the_node_keeps_serving(daemond_process, redis_server):
    wrong = redis_server.url.rsplit("/", 1)[0] + "/99"  # no database 99
    a = daemond_process(ECHO, cluster=cluster_of(wrong, "a", node_timeout=1))
    status = wait_until(lambda: (c := a.status()["cluster"]) and c["error"] and c, 30, "an error reported")
    assert status["connected"] is False and "DB index is out of range" in status["error"]
    time.sleep(1)  # several heartbeats later the heartbeat thread is still there, and said it once
    assert "cluster-heartbeat" not in a.stderr() and a.stderr().count("DB index is out of range") == 1, a.stderr()
    with a.client("e") as c:
        c.send_line("hello")
        assert c.read_line() == "hello"


def test_a_second_live_node_with_the_same_name_is_warned_of(daemond_process, redis_server):
    a = daemond_process(ECHO, cluster=cluster_of(redis_server.url, "same"))
    b = daemond_process(ECHO, cluster=cluster_of(redis_server.url, "same"))
    assert f"node name same is already used by pid {a.proc.pid} on " in b.stderr(), b.stderr()
    assert "already used" not in a.stderr()
