"""Items 5 and 14: connection churn leaves no thread or fd behind; echo back-pressure bounds memory."""

from __future__ import annotations

import socket
import threading
import time

from tests.support.robustness import (MIB, connect, measured, proc_stats, run_threads, tcp_buffer_ceiling,
                                     tcp_receive_queue, wait_until)


def test_thousands_of_connect_close_cycles_leave_threads_and_fds_at_baseline(daemond_process):
    # Bound: threads and fds of the daemond process back to their baseline ±2 after
    # 2400 connect/echo/close cycles (4 clients at once, some closing without reading),
    # once the threads kept for later connections (tuning.spare_threads, default 32; 8 here)
    # have waited tuning.spare_thread_timeout for one (default 60 s; 1 s here).
    spares, spare_timeout = 8, 1.0
    d = daemond_process({"e": {"plugins": ["echo"]}},
                        tuning={"spare_threads": spares, "spare_thread_timeout": spare_timeout})
    address = ("127.0.0.1", d.ports["e"])
    with connect(address) as s:  # warm up: the first connection's lazy imports and caches
        s.sendall(b"w")
        assert s.recv(1) == b"w"
    warm = proc_stats(d.proc.pid)  # ... with the thread it ran on, kept as a spare until it times out
    assert wait_until(lambda: proc_stats(d.proc.pid).threads < warm.threads, spare_timeout + 5)
    base = proc_stats(d.proc.pid)

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
    kept = proc_stats(d.proc.pid)
    settled = wait_until(lambda: (st := proc_stats(d.proc.pid)).threads <= base.threads + 2
                         and st.fds <= base.fds + 2 and st, spare_timeout + 10)
    now = proc_stats(d.proc.pid)
    measured(5, f"2400 cycles: threads {base.threads} -> {kept.threads} at the end (spares: at most {spares}) "
                f"-> {now.threads}, fds {base.fds} -> {now.fds}")
    assert settled, f"baseline {base}, now {now}"
    assert abs(now.threads - base.threads) <= 2 and abs(now.fds - base.fds) <= 2, (base, now)


def test_a_client_sending_10_mib_without_reading_is_held_by_tcp_and_gets_every_byte_back(daemond_process):
    # Bound: the session's high-water mark (256 KiB) plus listeners.NAME.send_queue:
    # the daemon stops reading a client that does not read; RSS grows < 16 MiB
    # while 10 MiB (and more, if the kernel's buffers take it) are offered; the echo
    # is byte-exact, NUL and all.
    d = daemond_process({"e": {"plugins": ["echo"], "idle_timeout": 60}})
    before = proc_stats(d.proc.pid)
    # The daemon's own socket buffers autotune up to tcp_rmem + tcp_wmem (32 + 4 MiB on
    # some kernels), so TCP alone may take all of 10 MiB before the daemon must read:
    # offer that much beyond 10 MiB, and prove the daemon stopped reading from its
    # socket's receive queue, not from how much was sent.
    payload = bytes(range(256)) * ((10 * MIB + tcp_buffer_ceiling()) // 256)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # before connect: a client
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)  # whose own buffers stay small
    sock.settimeout(30)
    sock.connect(("127.0.0.1", d.ports["e"]))
    client_port = sock.getsockname()[1]
    sent = 0
    sock.settimeout(0.5)
    view = memoryview(payload)
    while sent < len(payload):
        try:
            sent += sock.send(view[sent : sent + 65536])
        except TimeoutError:
            break  # held for half a second: TCP holds the sender
    assert sent < len(payload), f"the daemon read {len(payload) / MIB:.0f} MiB from a client that reads nothing"
    waiting = tcp_receive_queue(d.ports["e"], client_port)
    assert waiting, "the daemon's socket has nothing unread, yet the sender is held"
    held = proc_stats(d.proc.pid)
    time.sleep(0.5)
    # what the client's own buffer still held may arrive meanwhile; a reading daemon would shrink it
    assert tcp_receive_queue(d.ports["e"], client_port) >= waiting, "the daemon went on reading"
    measured(14, f"TCP took {sent / MIB:.1f} MiB before it held the sender, {waiting / MIB:.1f} MiB unread "
                 f"in the daemon's socket; RSS +{(held.rss - before.rss) / MIB:.1f} MiB")
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
