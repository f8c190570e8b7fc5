"""sd_notify from a running daemon: READY after bind, RELOADING/READY, STOPPING, watchdog health."""

import signal
import socket
import threading
import time

import yaml

from tests.support.notify import Receiver
from tests.support.robustness import wait_until


def recv_until(receiver, predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            message = receiver.recv(timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
        seen.append(message)
        if predicate(message):
            return message, seen
    raise AssertionError(f"no matching notification; got {seen}")


def test_ready_reloading_stopping_from_the_daemon_process(daemond_process, tmp_path):
    path = tmp_path / "notify.sock"
    receiver = Receiver(str(path), str(path))
    try:
        proc = daemond_process({"a": {"plugins": ["echo"]}}, env={"NOTIFY_SOCKET": str(path)}, ready=False,
                               reload={"watch": False})
        ready, _ = recv_until(receiver, lambda m: "READY=1" in m.splitlines())
        assert "STATUS=1 listeners, 0 connections" in ready.splitlines()
        proc.wait_ready(1)
        # READY came after bind: the listener accepts now
        socket.create_connection(("127.0.0.1", proc.ports["a"]), timeout=5).close()

        doc = yaml.safe_load(proc.config.read_text())
        doc["listeners"]["a"]["max_line"] = 100
        proc.config.write_text(yaml.safe_dump(doc))
        before_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        proc.proc.send_signal(signal.SIGHUP)
        reloading, _ = recv_until(receiver, lambda m: "RELOADING=1" in m)
        fields = dict(line.split("=", 1) for line in reloading.splitlines())
        assert set(fields) == {"RELOADING", "MONOTONIC_USEC"}  # one datagram, both fields
        assert before_ns // 1000 <= int(fields["MONOTONIC_USEC"]) <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        recv_until(receiver, lambda m: "READY=1" in m.splitlines())

        proc.proc.send_signal(signal.SIGTERM)
        recv_until(receiver, lambda m: m == "STOPPING=1")
        assert proc.proc.wait(10) == 0
    finally:
        receiver.close()


def test_no_notifications_without_notify_socket(daemond_process):
    proc = daemond_process({"a": {"plugins": ["echo"]}})
    assert proc.terminate() == 0
    assert "sd_notify" not in proc.stderr() and "NOTIFY_SOCKET" not in proc.stderr()


def test_watchdog_pings_stop_when_a_listener_thread_dies(daemond_factory, tmp_path, monkeypatch):
    path = tmp_path / "wd.sock"
    receiver = Receiver(str(path), str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        d = daemond_factory({"a": {"plugins": ["echo"]}, "b": {"plugins": ["echo"]}})
        recv_until(receiver, lambda m: m == "WATCHDOG=1", timeout=10)
        b = d.daemon.listeners["b"]
        probed = []  # what the watchdog's health checks found of b, in order
        alive = b.is_alive
        monkeypatch.setattr(b, "is_alive", lambda: probed.append(alive()) or probed[-1]
                            if threading.current_thread().name == "sd-watchdog" else alive())
        b.stop_accepting()  # its thread ends: the daemon is no longer healthy
        assert not d.daemon.healthy()
        # once a check of the watchdog's own has found b gone, any ping of an earlier check
        # (sent by that thread before it) is queued: drain it, then nothing more may come
        assert wait_until(lambda: False in probed, 10)
        receiver.drain()
        time.sleep(0.5)
        assert "WATCHDOG=1" not in receiver.drain()
    finally:
        receiver.close()
