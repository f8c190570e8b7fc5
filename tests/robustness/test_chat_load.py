"""Items 1 and 15: a reader that stalls is cut at its bound; a flooder is slowed while the others talk freely."""

from __future__ import annotations

import re
import threading
import time

from tests.support.chat import Room, collect, listener, login, settings, small_receive_buffer_client
from tests.support.robustness import MIB, measured, proc_stats, wait_until

SENDERS = 10
ROUNDS = 30  # 10 senders x 30 rounds of 1 KiB at 100 messages a second: 3 s
BIG = 150  # then 150 lines of 40 kB: enough to fill a loopback socket's 4 MiB of kernel buffers


def test_a_stalled_reader_is_cut_at_send_queue_while_1kib_x_100_per_s_reaches_everyone_else(daemond_process):
    # Bound: listeners.NAME.send_queue (default 1 MiB; 64 KiB here, on the stalled
    # client's own listener). The room talks 1 KiB x 100 messages/s, then one sender
    # pushes 6 MB so that the stalled client's kernel buffers fill and its queue
    # passes the bound: it is cut; everyone else gets every message; daemon RSS grows < 50 MiB.
    chat = listener(max_line=65536)["chat"]
    d = daemond_process({"chat": chat, "slow": {**chat, "send_queue": 65536}}, settings())
    log_file = d.config.parent / "state" / "daemond.log"
    before = proc_stats(d.proc.pid)
    stalled = small_receive_buffer_client(d, "slow")
    login(stalled, "stalled")
    room = Room(d)
    senders = room.people(*[f"s{i}" for i in range(SENDERS)])
    readers = [room.connect(f"r{i}") for i in range(5)]
    padding = "p" * 1000
    big = "b" * 40_000
    peak = [0]

    start = time.monotonic()
    for n in range(ROUNDS):  # 100 messages a second; everyone's kernel buffers hold 300 kB
        for sender in senders:
            sender.send_line(f"{n} {padding}")
        peak[0] = max(peak[0], proc_stats(d.proc.pid).rss)
        time.sleep(max(0.0, start + (n + 1) * SENDERS / 100 - time.monotonic()))

    def push():  # s0's socket stays out of collect(), which makes sockets non-blocking
        for n in range(BIG):  # paced (2 MB/s), so that one Python thread reading 14 sockets keeps up
            senders[0].send_line(f"big {n} {big}")
            if n % 10 == 0:
                peak[0] = max(peak[0], proc_stats(d.proc.pid).rss)
            time.sleep(0.02)

    pusher = threading.Thread(target=push, name="test-pusher")
    pusher.start()
    total = ROUNDS * SENDERS + BIG
    others = readers + senders[1:]
    try:  # read while s0 pushes: the readers must not stall too
        got = collect(others, lambda i, lines: sum(x.startswith("MSG ") for x in lines)
                      >= total - (0 if i < len(readers) else ROUNDS), timeout=60)
    finally:
        pusher.join(60)
    got.append(collect([senders[0]], lambda i, lines: sum(x.startswith("MSG ") for x in lines)
                       >= (SENDERS - 1) * ROUNDS)[0])
    for i, lines in enumerate(got):
        me = i - len(readers) + 1 if len(readers) <= i < len(others) else (0 if i == len(others) else None)
        msgs = [x for x in lines if x.startswith("MSG ")]
        for j in range(SENDERS):
            want = [] if j == me else [f"MSG s{j} {n} {padding}" for n in range(ROUNDS)]
            if j == 0 and me != 0:
                want += [f"MSG s0 big {n} {big}" for n in range(BIG)]
            assert [m for m in msgs if m.startswith(f"MSG s{j} ")] == want
    received = stalled.expect_closed(timeout=15)
    assert len(received) < ROUNDS * SENDERS * len(padding) + BIG * len(big)  # cut before the end
    log = log_file.read_text()
    assert re.search(r"send queue exceeded: slow \S+ user=stalled has more than 65536 bytes unread", log)
    assert "send queue exceeded: chat" not in log
    measured(1, f"stalled reader cut after {len(received)} bytes; RSS +{(peak[0] - before.rss) / MIB:.1f} MiB")
    assert peak[0] - before.rss < 50 * MIB, f"RSS grew {(peak[0] - before.rss) / MIB:.1f} MiB"
    room.close()
    stalled.close()


def test_a_flooder_is_slowed_and_a_bystander_line_is_not_queued_behind_the_flood(daemond_factory):
    # Bound: plugins.chat.rate / burst (defaults 10/s, 20). The flooder's 60 lines
    # all arrive (on_flood: slow loses nothing), spread over ~ (60-burst)/rate seconds;
    # a line the bystander sends after the flood started overtakes the flood.
    d = daemond_factory(listener(), settings(rate=20, burst=5))
    room = Room(d)
    flooder, bystander, reader = room.people("flooder", "bystander", "reader")
    flooder.send(b"".join(b"spam %d\n" % n for n in range(60)))
    first = collect([reader], lambda i, lines: len(lines) >= 1)[0]
    assert first[0] == "MSG flooder spam 0"
    bystander.send_line("hello")
    lines = first + collect([reader], lambda i, lines: len(first) + len(lines) >= 61, timeout=20)[0]
    assert [x for x in lines if x.startswith("MSG flooder")] == [f"MSG flooder spam {n}" for n in range(60)]
    position = lines.index("MSG bystander hello")
    assert position < 30, f"the bystander's line waited behind {position} flood lines"
    assert wait_until(lambda: flooder.command("/who")[1] == "+OK bystander flooder reader")
    room.close()
