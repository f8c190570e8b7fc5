"""The echo plugin and the connection machinery, over real sockets."""

import logging
import os
import random
import socket
import threading
import time

import pytest

ECHO = {"e": {"plugins": ["echo"]}}


def roundtrip(address, payload: bytes, chunk: int = 65536) -> bytes:
    """Send everything (while reading, so neither side stalls), half-close, read to EOF."""
    with socket.create_connection(address, timeout=30) as s:
        received = bytearray()

        def reader():
            while True:
                data = s.recv(1 << 20)
                if not data:
                    return
                received.extend(data)

        t = threading.Thread(target=reader)
        t.start()
        view = memoryview(payload)
        for i in range(0, len(view), chunk):
            s.sendall(view[i:i + chunk])
        s.shutdown(socket.SHUT_WR)
        t.join(60)
        assert not t.is_alive()
        return bytes(received)


def test_many_concurrent_clients_random_binary(daemond_factory):
    d = daemond_factory(ECHO)
    address = d.address("e")
    rng = random.Random(862)
    payloads = [rng.randbytes(rng.randint(1, 200_000)) for _ in range(50)]
    results = [None] * len(payloads)
    # every 10th client writes 1 byte at a time, every 10th from the 5th 7 bytes: tiny writes from a
    # Python client take long, so those payloads are kept small; the others write 1000 or 65536
    chunks = [1 if i % 10 == 0 else 7 if i % 10 == 5 else rng.choice([1000, 65536]) for i in range(len(payloads))]
    payloads = [p[:3000] if chunks[i] == 1 else p[:30_000] if chunks[i] == 7 else p for i, p in enumerate(payloads)]

    def client(i):
        results[i] = roundtrip(address, payloads[i], chunk=chunks[i])[:]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == payloads


def test_large_payload_and_half_close(daemond_factory):
    d = daemond_factory(ECHO)
    payload = os.urandom(24 * 1024 * 1024)
    assert roundtrip(d.address("e"), payload) == payload


def test_half_close_sends_the_rest_then_closes(daemond_factory):
    d = daemond_factory(ECHO)
    with socket.create_connection(d.address("e"), timeout=10) as s:
        s.sendall(b"last words\x00\xff")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(100):
            data += chunk
    assert data == b"last words\x00\xff"


def test_backpressure_stops_reading_a_client_that_does_not_read(daemond_factory):
    d = daemond_factory(ECHO)
    s = socket.create_connection(d.address("e"), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    payload = os.urandom(10 * 1024 * 1024)
    s.setblocking(False)
    sent = 0
    stalled_since = None
    while sent < len(payload):
        try:
            sent += s.send(payload[sent:sent + 65536])
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.0:
                break
            time.sleep(0.01)
    # The daemon stopped reading: what the client sent sits in kernel buffers (which
    # may be tens of MiB here), not in the daemon, whose queue stays bounded.
    (session,) = d.daemon.sessions("e")
    read_then = session.bytes_in
    time.sleep(0.5)
    assert session.bytes_in == read_then < len(payload)
    assert session.outbox.queued <= 2 * 256 * 1024
    # Now read: everything sent so far comes back byte-exact, then the rest flows.
    s.setblocking(True)
    s.settimeout(30)
    received = bytearray()
    rest = threading.Thread(target=lambda: (s.sendall(payload[sent:]), s.shutdown(socket.SHUT_WR)))
    rest.start()
    while chunk := s.recv(1 << 20):
        received.extend(chunk)
    rest.join(30)
    s.close()
    assert bytes(received) == payload


def test_max_connections_closes_the_excess_and_logs(daemond_factory, caplog):
    d = daemond_factory({"e": {"plugins": ["echo"], "max_connections": 3}})
    caplog.set_level(logging.WARNING, logger="daemond")
    held = [socket.create_connection(d.address("e"), timeout=5) for _ in range(3)]
    for s in held:  # each is served
        s.sendall(b"x")
        assert s.recv(1) == b"x"
    extra = socket.create_connection(d.address("e"), timeout=5)
    assert extra.recv(10) == b""  # closed at once
    assert "listener is full (3 connections)" in caplog.text
    assert d.daemon.listeners["e"].refused == 1
    held[0].close()
    deadline = time.monotonic() + 5
    while d.daemon.listeners["e"].connection_count() > 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    again = socket.create_connection(d.address("e"), timeout=5)
    again.sendall(b"y")
    assert again.recv(1) == b"y"
    for s in held[1:] + [extra, again]:
        s.close()


def test_idle_timeout_closes(daemond_factory):
    d = daemond_factory({"e": {"plugins": ["echo"], "idle_timeout": 0.3}})
    with socket.create_connection(d.address("e"), timeout=5) as s:
        s.sendall(b"a")
        assert s.recv(1) == b"a"
        assert s.recv(1) == b""  # closed after 0.3 s of silence


def test_a_raising_plugin_ends_only_its_connection(daemond_factory, caplog):
    d = daemond_factory({"r": {"plugins": ["tests.plugins.raiser"]}, "e": {"plugins": ["echo"]}})
    caplog.set_level(logging.ERROR, logger="daemond")
    with d.client("r") as bystander, d.client("r") as victim, socket.create_connection(d.address("e")) as echo:
        assert bystander.command("hello")[1] == "+OK hello"
        victim.send_line("boom")
        assert victim.expect_closed() == b""
        assert bystander.command("still here")[1] == "+OK still here"
        echo.sendall(b"z")
        assert echo.recv(1) == b"z"
    assert "plugin tests.plugins.raiser raised" in caplog.text
    assert "Boom: raised on purpose" in caplog.text  # the traceback is logged
    assert d.daemon.status()["plugins"]["tests.plugins.raiser"]["errors"] == 1


def test_threads_are_named(daemond_factory):
    d = daemond_factory(ECHO)
    with socket.create_connection(d.address("e")) as s:
        s.sendall(b"x")
        s.recv(1)
        local = "%s:%d" % s.getsockname()[:2]
        names = {t.name for t in threading.enumerate()}
    assert "listener-e" in names
    assert f"conn-e-{local}" in names


def test_ipv6_loopback(daemond_factory):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not configured on this machine")
    d = daemond_factory({"e": {"plugins": ["echo"], "host": "::1"}})
    with socket.create_connection(("::1", d.port("e")), timeout=5) as s:
        s.sendall(b"six")
        assert s.recv(3) == b"six"
