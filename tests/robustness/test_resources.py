"""Items 5 and 14: connection churn leaves no thread or fd behind; echo back-pressure bounds memory."""

from __future__ import annotations

import socket
import threading

from tests.robustness.helpers import MIB, connect, measured, proc_stats, run_threads, wait_until


def test_thousands_of_connect_close_cycles_leave_threads_and_fds_at_baseline(daemond_process):
    # Bound: threads and fds of the daemond process back to their baseline ±2 after
    # 2400 connect/echo/close cycles (4 clients at once, some closing without reading).
    d = daemond_process({"e": {"plugins": ["echo"]}})
    address = ("127.0.0.1", d.ports["e"])
    with connect(address) as s:  # warm up: the first connection's lazy imports and caches
        s.sendall(b"w")
        assert s.recv(1) == b"w"
    base = wait_until(lambda: (st := proc_stats(d.proc.pid)) and st, 1)

    def churn(i):
        for n in range(600):
            s = connect(address)
            if n % 3 == 0:
                s.close()  # gone before the daemon even reads
                continue
            s.sendall(b"ping")
            assert s.recv(4) == b"ping"
            if n % 3 == 1:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
            s.close()

    run_threads(churn, 4)
    settled = wait_until(lambda: (st := proc_stats(d.proc.pid)).threads <= base.threads + 2
                         and st.fds <= base.fds + 2 and st, 10)
    now = proc_stats(d.proc.pid)
    measured(5, f"2400 cycles: threads {base.threads} -> {now.threads}, fds {base.fds} -> {now.fds}")
    assert settled, f"baseline {base}, now {now}"
    assert abs(now.threads - base.threads) <= 2 and abs(now.fds - base.fds) <= 2, (base, now)


def test_a_client_sending_10_mib_without_reading_is_held_by_tcp_and_gets_every_byte_back(daemond_process):
    # Bound: the session's high-water mark (256 KiB) plus listeners.NAME.send_queue:
    # the daemon stops reading a client that does not read; RSS grows < 16 MiB
    # while 10 MiB are offered; the echo is byte-exact, NUL and all.
    d = daemond_process({"e": {"plugins": ["echo"], "idle_timeout": 60}})
    before = proc_stats(d.proc.pid)
    payload = bytes(range(256)) * (10 * MIB // 256)
    sock = connect(("127.0.0.1", d.ports["e"]), timeout=30)
    sent = 0
    sock.settimeout(0.5)
    view = memoryview(payload)
    while sent < len(payload):
        try:
            sent += sock.send(view[sent : sent + 65536])
        except TimeoutError:
            break  # the daemon stopped reading: TCP holds the sender
    assert sent < len(payload), "the daemon read 10 MiB from a client that reads nothing"
    held = proc_stats(d.proc.pid)
    measured(14, f"read {sent / MIB:.1f} of 10 MiB before TCP held the sender; RSS +{(held.rss - before.rss) / MIB:.1f} MiB")
    assert held.rss - before.rss < 16 * MIB, f"RSS grew {(held.rss - before.rss) / MIB:.1f} MiB"

    received = bytearray()
    done = threading.Event()

    def reader():
        sock.settimeout(30)
        while len(received) < len(payload):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            received.extend(chunk)
        done.set()

    t = threading.Thread(target=reader, name="test-echo-reader")
    t.start()
    sock.settimeout(30)
    sock.sendall(view[sent:])
    t.join(60)
    sock.close()
    assert done.is_set() and bytes(received) == payload
