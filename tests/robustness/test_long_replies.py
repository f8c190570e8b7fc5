"""Issue 19 item 7: a reply longer than the send queue reaches a client that reads slowly, whole.

``/history 1000``, the login replay and ``/join``'s replay are written as one
block that may pass the listener's ``send_queue`` by its own size; the session
that asked reads its next line only once the block has drained. The client here
reads as a slow link does: a small receive buffer, small reads, pauses.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time

from tests.support.chat import Room, collect, listener, login, settings, small_receive_buffer_client

SEND_QUEUE = 16 * 1024  # a small queue
MESSAGES = 1000  # replay's and max_history_request's most
#: ~3 KiB a HIST line, so each reply (~3 MB) is more than the queue and what the kernel takes at once
#: on loopback (~2 MB); over a real network far less is needed (37 lines in the issue's case)
TEXT = "x" * 3000


class SlowReader:
    """Reads a client's socket 4 KiB at a time with pauses, in a thread, into lines."""

    def __init__(self, client):
        self.client = client
        self.lines: list[str] = []
        self.closed = False
        self._buf = bytearray(client._buf)
        client._buf = b""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        sock = self.client.sock
        sock.settimeout(300)
        try:
            for n in itertools.count():
                data = sock.recv(4096)
                if not data:
                    break
                self._buf += data
                *done, rest = self._buf.split(b"\n")
                self.lines.extend(line.decode() for line in done)
                self._buf = bytearray(rest)
                if n % 16 == 0:
                    time.sleep(0.001)
        except OSError:
            pass
        self.closed = True

    def wait_for(self, predicate, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not predicate(self.lines):
            assert not self.closed, f"disconnected after {len(self.lines)} lines: {[x[:60] for x in self.lines[-2:]]}"
            assert time.monotonic() < deadline, f"{len(self.lines)} lines so far"
            time.sleep(0.05)


def _block_is_whole(lines, final_prefix):
    """The HIST lines come together, followed by the final line (live lines only around them)."""
    end = next(i for i, line in enumerate(lines) if line.startswith(final_prefix))
    hist = [i for i, line in enumerate(lines) if line.startswith("HIST ")]
    assert hist == list(range(hist[0], end)), "a live line landed inside the reply's block"
    return [lines[i] for i in hist]


def test_long_replies_reach_a_slow_reader_whole(daemond_factory):
    # Bound: the listener's send_queue (here 16 KiB); replies of ~3 MB each.
    d = daemond_factory(listener(send_queue=SEND_QUEUE), settings(replay=MESSAGES))
    room = Room(d)
    (alice,) = room.people("alice")
    assert alice.command("/join #dev") == ([], "+OK")
    for room_name in ("#lobby", "#dev"):
        alice.send(b"".join(f"/say {room_name} {TEXT} {n}\n".encode() for n in range(MESSAGES)))
        for _ in range(MESSAGES):
            assert alice.read_line() == "+OK"
    assert alice.command("/who")[1] == "+OK alice"

    # the login replay (the default room's last MESSAGES), on a slow link
    slow = small_receive_buffer_client(d)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    slow.send_line("/register bob pw-of-bob")
    reader = SlowReader(slow)
    talk = threading.Thread(target=lambda: [alice.send_line(f"/say #lobby live {n}") for n in range(50)])
    talk.start()  # live messages while the replays go out: they must not land inside a block
    reader.wait_for(lambda lines: any(line.startswith("+OK") for line in lines[1:]))
    assert len(_block_is_whole(reader.lines[1:], "+OK")) == MESSAGES
    talk.join()
    # each live message came once: in the replay, or after it
    reader.wait_for(lambda lines: sum(" alice live " in line for line in lines) == 50)

    # /history N with N = MESSAGES, then /join's replay of #dev
    for command, final, last in ((f"/history {MESSAGES}", f"+OK {MESSAGES}", "live 49"),
                                 ("/join #dev", "+OK", f"{TEXT} {MESSAGES - 1}")):
        reader.lines.clear()
        slow.send_line(command)
        reader.wait_for(lambda lines, final=final: final in lines)
        hist = _block_is_whole(reader.lines, final)
        assert len(hist) == MESSAGES and hist[-1].endswith(last), (command, len(hist))
    assert not reader.closed
    slow.send_line("/quit")
    reader.wait_for(lambda lines: "+OK bye" in lines)
    room.close()


def test_a_client_that_never_reads_still_cannot_grow_the_queue_past_the_reply(daemond_factory):
    # the block raises the bound by its own size only: a client that asks and stops reading is
    # cut once live messages fill the send queue on top of it, and the others go on
    d = daemond_factory(listener(send_queue=SEND_QUEUE), settings(replay=0))
    room = Room(d)
    alice, bob = room.people("alice", "bob")
    alice.send(b"".join(f"{TEXT} {n}\n".encode() for n in range(MESSAGES)))
    collect([bob], lambda i, got: len(got) >= MESSAGES)
    stalled = small_receive_buffer_client(d)
    login(stalled, "carol")
    assert alice.read_line() == "JOIN carol" and bob.read_line() == "JOIN carol"
    stalled.send_line(f"/history {MESSAGES}")  # and never read again
    big = "y" * 3000  # past what the kernel's buffers take on loopback (up to 4 MiB)
    lines = []
    for n in range(2500):
        alice.send_line(f"{big} {n}")
        if n % 100 == 99:
            lines += collect([bob], lambda i, got: len(got) >= 100)[0]
    if "PART carol" not in lines:
        lines += collect([bob], lambda i, got: "PART carol" in got, timeout=10)[0]
    assert "PART carol" in lines
    room.close()
