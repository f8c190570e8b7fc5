"""daemon.notify.Notifier against real AF_UNIX datagram sockets."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import pytest

from tests.support.notify import Receiver

from daemon.notify import Notifier

WATCHDOG_USEC = 200_000  # ping every 0.1 s


@pytest.fixture
def path_receiver(tmp_path):
    path = tmp_path / "notify.sock"
    r = Receiver(str(path), str(path))
    yield r
    r.close()


@pytest.fixture
def abstract_receiver():
    name = f"daemond-test-{os.getpid()}-{uuid.uuid4().hex}"
    r = Receiver(b"\0" + name.encode(), "@" + name)
    yield r
    r.close()


@pytest.fixture(params=["path", "abstract"])
def receiver(request):
    return request.getfixturevalue(f"{request.param}_receiver")


@pytest.fixture
def notifiers():
    made: list[Notifier] = []

    def make(env):
        n = Notifier(env)
        made.append(n)
        return n

    yield make
    for n in made:
        n.close()
        for t in threading.enumerate():
            assert t.name != "sd-watchdog", "watchdog thread left running"


def test_enabled_only_with_notify_socket(receiver):
    assert Notifier(receiver.env()).enabled is True
    assert Notifier({}).enabled is False


def test_each_message_arrives_exactly(receiver, notifiers):
    n = notifiers(receiver.env())
    assert n.ready()
    assert receiver.recv() == "READY=1"
    assert n.ready("listening on 127.0.0.1:9090")
    assert receiver.recv() == "READY=1\nSTATUS=listening on 127.0.0.1:9090"
    assert n.status("2 listeners, 5 sessions")
    assert receiver.recv() == "STATUS=2 listeners, 5 sessions"
    assert n.stopping()
    assert receiver.recv() == "STOPPING=1"
    assert n.send("A=1", "B=2")
    assert receiver.recv() == "A=1\nB=2"
    receiver.assert_empty()


def test_status_is_kept_on_one_line(receiver, notifiers):
    n = notifiers(receiver.env())
    n.status("reload refused:\nbad port")
    assert receiver.recv() == "STATUS=reload refused: bad port"


def test_reloading_is_one_datagram_with_monotonic_usec(receiver, notifiers):
    n = notifiers(receiver.env())
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    msg = receiver.recv()
    lines = msg.split("\n")
    assert lines[0] == "RELOADING=1"
    assert len(lines) == 2 and lines[1].startswith("MONOTONIC_USEC=")
    usec = int(lines[1].removeprefix("MONOTONIC_USEC="))
    assert before <= usec <= after
    # the reload protocol then expects READY=1 as a separate notification
    n.ready()
    assert receiver.recv() == "READY=1"
    receiver.assert_empty()


def test_one_socket_kept_open(receiver, notifiers):
    n = notifiers(receiver.env())
    n.ready()
    first = n._sock
    n.status("x")
    n.stopping()
    assert n._sock is first and first is not None
    assert first.get_inheritable() is False  # SOCK_CLOEXEC
    for _ in range(3):
        receiver.recv()
    n.close()
    assert n._sock is None


def test_absent_notify_socket_sends_nothing_and_never_raises(tmp_path, monkeypatch):
    n = Notifier({"WATCHDOG_USEC": str(WATCHDOG_USEC)})
    assert n.enabled is False
    created = []
    real_socket = socket.socket
    monkeypatch.setattr(socket, "socket", lambda *a, **k: created.append(a) or real_socket(*a, **k))
    assert n.send("READY=1") is False
    assert n.ready("x") is False
    assert n.reloading() is False
    assert n.stopping() is False
    assert n.status("x") is False
    n.start_watchdog(lambda: True)
    assert n._watchdog_thread is None
    n.stop_watchdog()
    n.close()
    assert created == []


def test_default_environ_is_os_environ(monkeypatch, path_receiver):
    monkeypatch.setenv("NOTIFY_SOCKET", path_receiver.env_value)
    n = Notifier()
    try:
        assert n.enabled
        n.ready()
        assert path_receiver.recv() == "READY=1"
    finally:
        n.close()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert Notifier().enabled is False


def test_send_failure_returns_false_and_logs(tmp_path, caplog):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    with caplog.at_level("DEBUG", logger="daemon.notify"):
        assert n.ready() is False
    assert "sd_notify" in caplog.text
    n.close()


def test_relative_notify_socket_is_ignored():
    assert Notifier({"NOTIFY_SOCKET": "relative.sock"}).enabled is False


def _wait_for(predicate, timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_watchdog_pings_while_healthy_and_stops(receiver, notifiers):
    n = notifiers(receiver.env(WATCHDOG_USEC=str(WATCHDOG_USEC)))
    assert n.watchdog_interval == pytest.approx(0.1)
    healthy = threading.Event()
    healthy.set()
    answered = []  # what each health probe said, in order

    def probe():
        answered.append(healthy.is_set())
        return answered[-1]

    started = time.monotonic()
    n.start_watchdog(probe)
    assert any(t.name == "sd-watchdog" for t in threading.enumerate())

    time.sleep(0.5)
    pings = receiver.drain()
    elapsed = time.monotonic() - started  # a loaded machine may have slept longer than asked
    assert len(pings) <= elapsed / 0.1 + 2  # about every 0.1 s, not a busy loop
    assert _wait_for(lambda: pings.extend(receiver.drain()) or pings, 10)
    assert set(pings) == {"WATCHDOG=1"}

    # unhealthy: pings stop. Once a probe has said no, a ping of an earlier probe (sent by the
    # same thread before it) is already queued: drain it, then nothing more may come.
    healthy.clear()
    assert _wait_for(lambda: False in answered, 10)
    receiver.drain()
    time.sleep(0.35)
    receiver.assert_empty()

    # healthy again: pings resume
    healthy.set()
    assert _wait_for(lambda: receiver.drain() != [], 10)

    started = time.monotonic()
    n.stop_watchdog()
    assert time.monotonic() - started < 1.0
    assert not any(t.name == "sd-watchdog" for t in threading.enumerate())
    receiver.drain()
    time.sleep(0.3)
    receiver.assert_empty()


def test_health_check_exception_skips_ping(receiver, notifiers):
    n = notifiers(receiver.env(WATCHDOG_USEC=str(WATCHDOG_USEC)))

    def broken():
        raise RuntimeError("probe failed")

    n.start_watchdog(broken)
    time.sleep(0.35)
    n.stop_watchdog()
    receiver.assert_empty()


def test_watchdog_pid_ours_pings(receiver, notifiers):
    n = notifiers(receiver.env(WATCHDOG_USEC=str(WATCHDOG_USEC), WATCHDOG_PID=str(os.getpid())))
    n.start_watchdog(lambda: True)
    assert receiver.recv() == "WATCHDOG=1"
    n.stop_watchdog()


def test_watchdog_pid_mismatch_no_pings(receiver, notifiers):
    other = os.getpid() + 1
    n = notifiers(receiver.env(WATCHDOG_USEC=str(WATCHDOG_USEC), WATCHDOG_PID=str(other)))
    assert n.watchdog_interval is None
    n.start_watchdog(lambda: True)
    assert not any(t.name == "sd-watchdog" for t in threading.enumerate())
    time.sleep(0.3)
    n.stop_watchdog()
    receiver.assert_empty()


@pytest.mark.parametrize("value", ["", "0", "-5", "soon"])
def test_no_or_bad_watchdog_usec_no_thread(receiver, notifiers, value):
    env = receiver.env()
    if value:
        env["WATCHDOG_USEC"] = value
    n = notifiers(env)
    n.start_watchdog(lambda: True)
    assert n._watchdog_thread is None
    n.stop_watchdog()
    receiver.assert_empty()


def test_start_watchdog_twice_keeps_one_thread(receiver, notifiers):
    n = notifiers(receiver.env(WATCHDOG_USEC=str(WATCHDOG_USEC)))
    n.start_watchdog(lambda: True)
    n.start_watchdog(lambda: True)
    assert sum(t.name == "sd-watchdog" for t in threading.enumerate()) == 1
    n.stop_watchdog()
    n.stop_watchdog()  # idempotent


def test_the_watchdog_sends_status_when_it_changed_only(receiver, notifiers):
    n = notifiers(receiver.env(WATCHDOG_USEC=str(WATCHDOG_USEC)))
    text = ["1 listeners, 0 connections"]
    n.ready(text[0])
    assert receiver.recv() == "READY=1\nSTATUS=1 listeners, 0 connections"
    n.start_watchdog(lambda: True, lambda: text[0])

    def some_pings(count=3):
        """The next ``count`` datagrams: as many watchdog rounds, however slow the machine."""
        return [receiver.recv(timeout=10) for _ in range(count)]

    assert set(some_pings()) == {"WATCHDOG=1"}  # unchanged: pings only
    text[0] = "1 listeners, 3 connections"
    seen = []
    assert _wait_for(lambda: "STATUS=1 listeners, 3 connections" in (seen.extend(receiver.drain()) or seen), 10)
    assert set(some_pings()) == {"WATCHDOG=1"}  # sent once, not with every ping
    n.status("paused")  # sent by the daemon itself: the watchdog knows it was
    seen = []
    assert _wait_for(lambda: "STATUS=paused" in (seen.extend(receiver.drain()) or seen), 10)
    assert _wait_for(lambda: "STATUS=1 listeners, 3 connections" in (seen.extend(receiver.drain()) or seen), 10)
    assert seen.index("STATUS=paused") < seen.index("STATUS=1 listeners, 3 connections")
