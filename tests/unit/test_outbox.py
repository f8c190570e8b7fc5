"""Outbox and Flusher on real socketpairs: never block the writer, drain a slow reader, cut an overflow."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from daemon.outbox import Flusher, Outbox

BUF = 8192  # small kernel buffers, so a few hundred KiB is enough to make the outbox queue


@pytest.fixture
def flusher():
    f = Flusher(name="test-flusher")
    f.start()
    yield f
    f.stop()
    assert not f.is_alive()


@pytest.fixture
def pair():
    """(writer, reader): a connected socketpair with small buffers; the outbox writes on ``writer``."""
    a, b = socket.socketpair()
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUF)
    yield a, b
    a.close()
    b.close()


def payload(n: int, seed: int = 0) -> bytes:
    """n bytes whose order matters (a reordering or a lost chunk changes them)."""
    return bytes((seed + i * 7 + i // 251) % 256 for i in range(n))


class SlowReader(threading.Thread):
    """Reads ``sock`` in small bites with pauses until ``total`` bytes came (or EOF)."""

    def __init__(self, sock: socket.socket, total: int, bite: int = 4096, pause: float = 0.001):
        super().__init__(name="slow-reader", daemon=True)
        self.sock, self.total, self.bite, self.pause = sock, total, bite, pause
        self.received = bytearray()

    def run(self):
        self.sock.settimeout(10)
        while len(self.received) < self.total:
            chunk = self.sock.recv(self.bite)
            if not chunk:
                return
            self.received += chunk
            time.sleep(self.pause)


def fill(outbox: Outbox, chunk: int = 16384) -> int:
    """Write until something is queued (the peer is not reading); return the bytes written."""
    written = 0
    for i in range(1000):
        assert outbox.write(payload(chunk, i))
        written += chunk
        if outbox.queued:
            return written
    raise AssertionError("the socket took everything: buffers larger than expected")


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_a_write_the_socket_takes_is_sent_at_once_and_queues_nothing(pair, flusher):
    writer, reader = pair
    outbox = Outbox(writer, flusher, limit=1 << 20)
    assert outbox.write(b"hello\n")
    assert outbox.queued == 0
    assert outbox.bytes_sent == 6
    assert reader.recv(100) == b"hello\n"


def test_a_slow_reader_gets_every_byte_in_order_and_the_writer_never_blocks(pair, flusher):
    writer, reader = pair
    outbox = Outbox(writer, flusher, limit=4 << 20)
    chunks = [payload(10_000 + i, i) for i in range(60)]  # ~630 KiB, far more than the buffers hold
    started = time.monotonic()
    for chunk in chunks:
        assert outbox.write(chunk)
    assert time.monotonic() - started < 1.0  # nothing waited for the reader
    assert outbox.queued > 0
    expected = b"".join(chunks)
    slow = SlowReader(reader, len(expected))
    slow.start()
    assert outbox.wait_empty(timeout=20)
    slow.join(20)
    assert outbox.queued == 0
    assert outbox.bytes_sent == len(expected)
    assert bytes(slow.received) == expected


def test_writes_while_the_flusher_drains_keep_their_order(pair, flusher):
    writer, reader = pair
    outbox = Outbox(writer, flusher, limit=4 << 20)
    chunks = [payload(3000, i) for i in range(200)]
    expected = b"".join(chunks)
    slow = SlowReader(reader, len(expected), bite=2048, pause=0.0005)
    slow.start()
    for chunk in chunks:  # some go out directly, some are queued behind others
        assert outbox.write(chunk)
        time.sleep(0.0002)
    assert outbox.wait_empty(timeout=20)
    slow.join(20)
    assert bytes(slow.received) == expected


def test_overflow_closes_the_outbox_drops_the_queue_and_calls_on_overflow_once(pair, flusher):
    writer, reader = pair
    calls = []
    outbox = Outbox(writer, flusher, limit=64 * 1024, on_overflow=lambda: calls.append(1))
    results = [outbox.write(payload(16384, i)) for i in range(40)]  # 640 KiB, nobody reading
    assert False in results
    first_refusal = results.index(False)
    assert all(results[:first_refusal]) and not any(results[first_refusal:])
    assert calls == [1]
    assert outbox.closed
    assert outbox.queued == 0
    assert not outbox.write(b"more")
    assert calls == [1]
    assert not outbox.wait_below(1 << 30, timeout=1)  # a closed outbox never lets a writer through


def test_the_queue_never_passes_the_limit(pair, flusher):
    writer, reader = pair
    limit = 100_000
    outbox = Outbox(writer, flusher, limit=limit)
    while outbox.write(payload(7000)):
        assert outbox.queued <= limit


def test_close_drops_the_queue_refuses_writes_and_releases_waiters(pair, flusher):
    writer, reader = pair
    outbox = Outbox(writer, flusher, limit=4 << 20)
    fill(outbox)
    waiting = []
    waiter = threading.Thread(target=lambda: waiting.append(outbox.wait_below(1, timeout=10)))
    waiter.start()
    time.sleep(0.05)
    outbox.close()
    waiter.join(5)
    assert waiting == [False]
    assert outbox.closed and outbox.queued == 0
    assert not outbox.write(b"x")


def test_wait_below_returns_once_the_reader_catches_up(pair, flusher):
    writer, reader = pair
    outbox = Outbox(writer, flusher, limit=4 << 20)
    written = fill(outbox)
    for i in range(10):
        assert outbox.write(payload(16384, 100 + i))
        written += 16384
    threshold = outbox.queued // 2
    assert not outbox.wait_below(threshold, timeout=0.2)  # nobody reads: it times out
    slow = SlowReader(reader, written)
    slow.start()
    assert outbox.wait_below(threshold, timeout=10)
    assert outbox.queued < threshold
    slow.join(20)


def test_interrupt_releases_wait_below_now_and_later_and_keeps_the_queue(pair, flusher):
    writer, reader = pair
    outbox = Outbox(writer, flusher, limit=4 << 20)
    fill(outbox)
    queued = outbox.queued
    result = []
    waiter = threading.Thread(target=lambda: result.append(outbox.wait_below(1, timeout=10)))
    waiter.start()
    time.sleep(0.05)
    started = time.monotonic()
    outbox.interrupt()
    waiter.join(5)
    assert result == [False]
    assert time.monotonic() - started < 1
    assert outbox.queued == queued and not outbox.closed
    assert not outbox.wait_below(1 << 30, timeout=5)  # from now on, even when below
    slow = SlowReader(reader, 1 << 30)
    slow.start()
    assert outbox.wait_empty(timeout=10)  # the queued bytes still go out
    outbox.close()
    writer.shutdown(socket.SHUT_WR)
    slow.join(10)


def test_wait_empty_times_out_while_the_peer_does_not_read(pair, flusher):
    writer, reader = pair
    outbox = Outbox(writer, flusher, limit=4 << 20)
    written = fill(outbox)
    assert not outbox.wait_empty(timeout=0.2)
    slow = SlowReader(reader, written)
    slow.start()
    assert outbox.wait_empty(timeout=10)
    slow.join(10)
    assert len(slow.received) == written


def test_a_peer_that_went_away_fails_the_outbox_without_a_signal(pair, flusher):
    writer, reader = pair
    outbox = Outbox(writer, flusher, limit=4 << 20)
    reader.close()
    assert not outbox.write(b"into the void")
    assert outbox.closed
    assert isinstance(outbox.error, OSError)


def test_a_reused_fd_is_drained_for_its_new_socket(flusher):
    """An outbox whose socket was closed while the flusher watched it must not hide the fd's next socket."""
    a1, b1 = socket.socketpair()
    for s in (a1, b1):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF)
    stale = Outbox(a1, flusher, limit=4 << 20)
    fill(stale)
    for i in range(20):
        assert stale.write(payload(16384, i))
    queued = stale.queued
    b1.setblocking(False)

    def read_some():
        try:
            b1.recv(BUF)
        except BlockingIOError:
            pass
        return stale.queued < queued

    assert wait_until(read_some)  # the flusher is sending on a1's fd: it watches it
    assert stale.queued > 0  # and still does

    fd = a1.fileno()
    a1.close()  # closed under the outbox's feet: the flusher still has the fd registered
    b1.close()
    opened = []
    try:
        for _ in range(10):
            x, y = socket.socketpair()
            opened += [x, y]
            if fd in (x.fileno(), y.fileno()):
                break
        else:
            pytest.skip(f"fd {fd} was not handed out again")
        writer, reader = (x, y) if x.fileno() == fd else (y, x)
        for s in (writer, reader):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUF)
        fresh = Outbox(writer, flusher, limit=4 << 20)
        written = fill(fresh)
        slow = SlowReader(reader, written)
        slow.start()
        assert fresh.wait_empty(timeout=10), f"{fresh.queued} bytes never left on the reused fd"
        slow.join(10)
        assert len(slow.received) == written
    finally:
        for s in opened:
            s.close()
        stale.close()


def test_a_block_passes_the_limit_by_its_own_size_until_settled(pair, flusher):
    writer, reader = pair
    limit = 64 * 1024
    outbox = Outbox(writer, flusher, limit=limit)
    block = payload(400_000, 3)
    assert outbox.write_block(block) and outbox.in_block  # six times the limit, accepted whole
    live = payload(1000, 9)
    accepted = 0
    while outbox.write(live):  # others' writes still fit in the limit, on top of the block
        accepted += 1
        assert outbox.queued <= limit + len(block)
    # what the kernel took of the block at once leaves that much more room: at most its buffers
    assert outbox.closed and limit - 1000 < accepted * 1000 <= limit + 1000 + 4 * BUF


def test_a_block_is_never_interleaved_and_settle_drops_the_allowance(pair, flusher):
    writer, reader = pair
    outbox = Outbox(writer, flusher, limit=32 * 1024)
    block = b"B" * 200_000
    got = bytearray()

    def read():
        while len(got) < len(block) + 3000:
            got.extend(reader.recv(4096))

    assert outbox.write(b"a" * 1000) and outbox.write_block(block) and outbox.write(b"c" * 2000)
    thread = threading.Thread(target=read)
    thread.start()
    assert outbox.settle(8 * 1024, timeout=10)
    assert not outbox.in_block
    thread.join(10)
    assert bytes(got) == b"a" * 1000 + block + b"c" * 2000
