"""Item 24: soak — a busy chat room for an hour: RSS, threads and fds flat, p99 delivery latency stable.

Not in the default run (marker ``soak``; pyproject's addopts has ``-m "not soak"``). Run it with::

    python -m pytest -m soak tests/robustness/test_soak.py -s

Environment (defaults in brackets): DAEMOND_SOAK_SECONDS [3600], DAEMOND_SOAK_CLIENTS [200],
DAEMOND_SOAK_RATE [10] messages a second across the room (each goes to every other
client: 200 clients x 10 msg/s is ~2000 deliveries a second), DAEMOND_SOAK_WINDOW [60]
seconds per sample, DAEMOND_SOAK_REPORT [unset] a file for the samples as JSON.
Each sample also says what the machine did in its window (major page faults of daemond
and of this test, machine-wide I/O wait and steal seconds), so that a latency spike can
be told apart from a stall of the machine.
The figures go into bench/README-reliability.md.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import statistics
import threading
import time

import pytest

from tests.support.chat import Room, listener, settings
from tests.support.robustness import MIB, cpu_wait_seconds, major_faults, proc_stats

SECONDS = float(os.environ.get("DAEMOND_SOAK_SECONDS", 3600))
CLIENTS = int(os.environ.get("DAEMOND_SOAK_CLIENTS", 200))
RATE = float(os.environ.get("DAEMOND_SOAK_RATE", 10))
WINDOW = float(os.environ.get("DAEMOND_SOAK_WINDOW", 60))


@pytest.mark.soak
def test_soak_a_busy_room_keeps_memory_threads_fds_and_latency_flat(daemond_process):
    d = daemond_process(listener(max_unauthenticated_per_ip=None, max_per_ip=None),
                        settings(announce_limit=10), reload={"watch": False})
    room = Room(d)
    clients = [room.connect(f"u{i:03d}") for i in range(CLIENTS)]
    for c in clients:
        c._buf = b""
        c.sock.setblocking(False)
    latencies: list[float] = []
    delivered = [0]
    lock = threading.Lock()  # guards latencies and delivered (reader thread vs sampler)
    stop = threading.Event()

    def reader():
        sel = selectors.DefaultSelector()
        partial = {}
        for c in clients:
            sel.register(c.sock, selectors.EVENT_READ, c)
            partial[c] = b""
        while not stop.is_set():
            for key, _ in sel.select(0.5):
                try:
                    data = key.fileobj.recv(1 << 20)
                except BlockingIOError:
                    continue
                assert data, "a client was disconnected"
                now = time.monotonic()
                buf = partial[key.data] + data
                *lines, partial[key.data] = buf.split(b"\n")
                got = [now - float(line.split(b" ")[3]) for line in lines if line.startswith(b"MSG ")]
                with lock:
                    latencies.extend(got)
                    delivered[0] += len(got)
        sel.close()

    def sender():
        rng = random.Random(24)
        start = time.monotonic()
        n = 0
        while not stop.is_set():
            c = rng.choice(clients)
            msg = f"m{n} {time.monotonic():.6f} soak\n".encode()
            c.sock.setblocking(True)
            c.sock.sendall(msg)
            c.sock.setblocking(False)
            n += 1
            time.sleep(max(0.0, start + n / RATE - time.monotonic()))

    threads = [threading.Thread(target=reader, name="soak-reader"), threading.Thread(target=sender, name="soak-sender")]
    for t in threads:
        t.start()
    samples = []
    started = time.monotonic()
    # per window, what the machine did beside us: a latency spike with disk reads of evicted
    # pages, I/O wait or steal in the same window points at the machine, not the daemon
    before = (major_faults(d.proc.pid), major_faults(), *cpu_wait_seconds())
    try:
        while time.monotonic() - started < SECONDS:
            time.sleep(min(WINDOW, SECONDS - (time.monotonic() - started)))
            st = proc_stats(d.proc.pid)
            with lock:
                window, latencies[:] = list(latencies), []
                count = delivered[0]
            now = (major_faults(d.proc.pid), major_faults(), *cpu_wait_seconds())
            moved, before = [b - a for a, b in zip(before, now)], now
            samples.append({"t": round(time.monotonic() - started), "rss_mib": round(st.rss / MIB, 1),
                            "threads": st.threads, "fds": st.fds, "delivered": count,
                            "p99_ms": round(statistics.quantiles(window, n=100)[98] * 1e3, 2) if len(window) > 100 else None,
                            "daemon_majflt": moved[0], "test_majflt": moved[1],
                            "iowait_s": round(moved[2], 2), "steal_s": round(moved[3], 2)})
            print(samples[-1], flush=True)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    if os.environ.get("DAEMOND_SOAK_REPORT"):
        with open(os.environ["DAEMOND_SOAK_REPORT"], "w") as f:
            json.dump({"clients": CLIENTS, "rate": RATE, "seconds": SECONDS, "samples": samples}, f, indent=1)
    first, last = samples[min(1, len(samples) - 1)], samples[-1]  # the first window includes warm-up
    assert last["rss_mib"] - first["rss_mib"] < 20, samples
    assert abs(last["threads"] - first["threads"]) <= 2 and abs(last["fds"] - first["fds"]) <= 2, samples
    p99s = [s["p99_ms"] for s in samples[1:] if s["p99_ms"] is not None]
    assert p99s and max(p99s) < 4 * statistics.median(p99s), samples
    assert delivered[0] >= 0.95 * RATE * SECONDS * (CLIENTS - 1), delivered  # the room kept up
    room.close()
