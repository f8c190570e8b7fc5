"""Chat under load: one global order, slow readers that hurt no one, flood control."""

from __future__ import annotations

import re

from tests.support.chat import (
    IN_PROCESS, Room, collect, listener, login, messages_at_least, settings, small_receive_buffer_client,
)
from tests.support.robustness import wait_until

SENDERS = 20
PER_SENDER = 200
RECEIVERS = 20


def test_all_receivers_see_one_global_order_which_is_the_history(chat):
    room = chat(max_history_request=SENDERS * PER_SENDER)
    senders = room.people(*[f"s{i:02d}" for i in range(SENDERS)])
    receivers = [room.connect(f"r{i:02d}") for i in range(RECEIVERS)]
    # senders interleave their bursts so the server threads really race
    for chunk in range(0, PER_SENDER, 20):
        for i, sender in enumerate(senders):
            sender.send(b"".join(f"s{i:02d} says {n}\n".encode() for n in range(chunk, chunk + 20)))
    total = SENDERS * PER_SENDER

    seen = [[line for line in lines if line.startswith("MSG ")]
            for lines in collect(receivers, messages_at_least(total), timeout=60)]
    first = seen[0]
    assert len(first) == total
    for other in seen[1:]:
        assert other == first  # every receiver: the same messages in the same order
    for i in range(SENDERS):  # and each sender's messages in the order it sent them
        mine = [line for line in first if line.startswith(f"MSG s{i:02d} ")]
        assert mine == [f"MSG s{i:02d} s{i:02d} says {n}" for n in range(PER_SENDER)]
    lines, final = receivers[0].command(f"/history {total}")
    assert final == f"+OK {total}"
    assert [re.sub(r"^HIST \S+ ", "MSG ", line) for line in lines] == first  # the order of the history
    # the senders got everyone's messages but their own, in the same order too
    for i, lines in enumerate(collect(senders, messages_at_least(total - PER_SENDER))):
        assert [x for x in lines if x.startswith("MSG ")] == [x for x in first if not x.startswith(f"MSG s{i:02d} ")]


def test_a_client_that_never_reads_is_cut_and_the_others_get_everything(daemond_factory):
    chatters = 50
    rounds = 3
    padding = "x" * 40_000
    # One room, two listeners: the chatters' with the default send queue, and one
    # with a 16 KiB queue for the client that stops reading. The kernel takes up
    # to 4 MiB for a loopback socket before anything is queued, so each round
    # sends 2 MB (50 lines of 40 kB) and the chatters read each round as it comes.
    listeners = {"chat": listener(max_line=65536)["chat"], "slow": listener(send_queue=16384, max_line=65536)["chat"]}
    running = daemond_factory(listeners, settings(), **IN_PROCESS)
    room = Room(running)
    stalled = small_receive_buffer_client(running, "slow")
    login(stalled, "stalled")
    clients = room.people(*[f"c{i:02d}" for i in range(chatters)])
    got: list[list[str]] = [[] for _ in clients]
    for n in range(rounds):
        for i, client in enumerate(clients):
            client.send_line(f"c{i:02d} {n} {padding}")
        fresh = collect(clients, messages_at_least(chatters - 1))
        for i, lines in enumerate(fresh):
            got[i] += lines
    for i, lines in enumerate(collect(clients, lambda i, lines: "PART stalled" in got[i] + lines, timeout=10)):
        got[i] += lines
    for i, lines in enumerate(got):
        messages = [line for line in lines if line.startswith("MSG ")]
        assert len(messages) == (chatters - 1) * rounds
        for j in range(chatters):
            if j != i:
                assert [m for m in messages if m.startswith(f"MSG c{j:02d} ")] == \
                    [f"MSG c{j:02d} c{j:02d} {n} {padding}" for n in range(rounds)]
    # the stalled client was cut: what it can still read ends early, then the connection is gone
    received = stalled.expect_closed(timeout=10)
    assert len(received) < chatters * rounds * len(padding)
    # the connection is closed first, the disconnect line logged a moment later
    log_file = running.config.log_file
    assert wait_until(lambda: re.search(r"disconnect slow \S+ user=stalled reason=overflow", log_file.read_text()), 10), \
        log_file.read_text()[-3000:]
    log = log_file.read_text()
    assert re.search(r"send queue exceeded: slow \S+ user=stalled has more than 16384 bytes unread", log)
    assert "send queue exceeded: chat" not in log
    assert clients[0].command("/who")[1] == "+OK " + " ".join(f"c{i:02d}" for i in range(chatters))
    room.close()
    stalled.close()


def test_flooding_can_cut_the_flooder(chat):
    burst = 5
    room = chat(rate=5, burst=burst, on_flood="cut")
    alice, bob, carol = room.people("alice", "bob", "carol")
    alice.send(b"".join(f"spam {n}\n".encode() for n in range(100)))
    flood = alice.expect_closed().decode().splitlines()
    assert flood[-1].startswith("-ERR flood")
    for client in (bob, carol):
        lines = collect([client], lambda i, lines: "PART alice" in lines)[0]
        assert burst - 1 <= len(lines) - 1 < 100  # the burst went through (less the /who of login), the flood did not
        assert lines[:-1] == [f"MSG alice spam {n}" for n in range(len(lines) - 1)]
    assert re.search(r"flood: alice from \S+ is over 5 lines/s; disconnecting", room.server.config.log_file.read_text())


def test_flooding_is_slowed_down_by_default_and_nothing_is_lost(chat):
    room = chat(rate=100, burst=5)
    alice, bob, carol = room.people("alice", "bob", "carol")
    alice.send(b"".join(f"burst {n}\n".encode() for n in range(40)))
    for lines in collect([bob, carol], lambda i, lines: len(lines) >= 40):
        assert lines == [f"MSG alice burst {n}" for n in range(40)]
    assert alice.command("/who") == ([], "+OK alice bob carol")
