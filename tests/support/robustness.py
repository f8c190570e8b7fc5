"""Shared helpers for the robustness suite: process figures from /proc, waiting, bulk clients."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: for daemond subprocesses, so they can import test plugins (tests.plugins.*)
ENV = {"PYTHONPATH": str(ROOT)}
#: cheap argon2id parameters: the suite logs in hundreds of users
CHEAP_ARGON2 = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}
MIB = 1024 * 1024


@dataclass(frozen=True)
class ProcStats:
    rss: int  # bytes
    threads: int
    fds: int


def proc_stats(pid: int | None = None) -> ProcStats:
    """RSS, thread count and open file descriptors of a process, read from /proc."""
    pid = pid or os.getpid()
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return ProcStats(rss=int(fields["VmRSS"].split()[0]) * 1024, threads=int(fields["Threads"]),
                     fds=len(os.listdir(f"/proc/{pid}/fd")))


def major_faults(pid: int | None = None) -> int:
    """Page faults that had to read from disk (``majflt`` in /proc/PID/stat): code or files the
    kernel had evicted. A stall they cause is the machine's, not the daemon's logic."""
    fields = Path(f"/proc/{pid or os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[9])


def disk_reads(pid: int) -> int:
    """Bytes a process has had read from storage (``read_bytes`` in /proc/PID/io): page-cache
    hits are not counted, a read-before-write of an evicted page is."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    raise AssertionError(f"no read_bytes in /proc/{pid}/io")


def evict(path: Path) -> None:
    """Write a file's dirty pages back and drop its pages from the page cache, as memory
    pressure would; pages some process has locked in memory (or mapped) stay."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def tcp_receive_queue(local_port: int, remote_port: int) -> int | None:
    """Bytes that arrived on the TCP connection ``local_port``<->``remote_port`` and wait
    unread in the kernel (``rx_queue`` in /proc/net/tcp{,6}); None if no such connection."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            if int(local.rsplit(":", 1)[1], 16) == local_port and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                return int(queues.split(":")[1], 16)
    return None


def tcp_buffer_ceiling() -> int:
    """The most one socket's kernel buffers may grow to (tcp_rmem + tcp_wmem maxima): what
    TCP alone may absorb from a sender before the receiving process has to read."""
    rmem = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
    wmem = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    return rmem + wmem


def cpu_wait_seconds() -> tuple[float, float]:
    """Machine-wide (iowait, steal) CPU seconds so far, from /proc/stat: time the CPUs waited
    for the disk, and time the hypervisor gave them to someone else."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[5]) / tick, int(fields[8]) / tick


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns something true; returns it, or the last value at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def loopback(i: int) -> str:
    """The i-th extra loopback address, 127.0.0.2 onwards (Linux routes all of 127/8 to lo)."""
    return f"127.0.0.{2 + i}"


def connect(address: tuple[str, int], source: str | None = None, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(address, timeout=timeout, source_address=(source, 0) if source else None)


def recv_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything until the peer closes (or resets)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def run_threads(target, count: int, *args) -> list:
    """Run ``target(i, *args)`` on ``count`` threads, join them all; returns results, re-raising the first error."""
    results: list = [None] * count
    errors: list[BaseException] = []

    def body(i):
        try:
            results[i] = target(i, *args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), name=f"test-client-{i}") for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return results


def measured(item: int, text: str) -> None:
    """Print a figure for bench/README-reliability.md (see it with ``pytest -s tests/robustness | grep MEASURED``)."""
    print(f"\nMEASURED item {item}: {text}", flush=True)
