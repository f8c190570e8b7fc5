"""Items 2 and 13: over-long lines and badly encoded input are refused, memory stays flat, nothing is forwarded."""

from __future__ import annotations

import pytest

from tests.support.chat import Room, listener, settings
from tests.support.robustness import ENV, MIB, connect, measured, proc_stats, run_threads

RAISER = "tests.plugins.raiser"  # answers "+OK <line>" to each line


def test_ten_clients_sending_megabytes_without_a_newline_get_line_too_long_and_memory_stays_flat(daemond_process):
    # Bound: listeners.NAME.max_line (default 4096). Each client sends 4 MiB of one line
    # (40 MiB in all); the daemon keeps at most max_line of it, so RSS grows < 10 MiB.
    d = daemond_process({"lines": {"plugins": [RAISER]}}, env=ENV)
    address = ("127.0.0.1", d.ports["lines"])
    before = proc_stats(d.proc.pid)

    def client(i):
        sock = connect(address)
        with sock:
            chunk = bytes([65 + i]) * 65536
            for _ in range(4 * MIB // len(chunk)):
                sock.sendall(chunk)
            peak = proc_stats(d.proc.pid).rss
            sock.sendall(b"\nafter\n")
            reply = b""
            while reply.count(b"\n") < 2:
                data = sock.recv(4096)
                assert data, reply
                reply += data
            return reply.decode().splitlines()[:2], peak

    results = run_threads(client, 10)
    for lines, _ in results:
        assert lines[0].startswith("-ERR line-too-long "), lines
        assert lines[1] == "+OK after"
    peak = max(p for _, p in results)
    measured(2, f"10 clients x 4 MiB without a newline: RSS +{(peak - before.rss) / MIB:.1f} MiB")
    assert peak - before.rss < 10 * MIB, f"RSS grew {(peak - before.rss) / MIB:.1f} MiB"


BAD = {
    "invalid byte": b"\xff\xfeabc",
    "overlong slash": b"\xc0\xaf",
    "overlong NUL": b"a\xc0\x80b",
    "surrogate": b"\xed\xa0\x80",
    "NUL": b"a\x00b",
    "truncated sequence": b"\xe2\x82",
    "above U+10FFFF": b"\xf4\x90\x80\x80",
}


@pytest.mark.parametrize("bad", list(BAD.values()), ids=list(BAD))
def test_badly_encoded_chat_lines_are_refused_and_nothing_is_forwarded(daemond_factory, bad):
    d = daemond_factory(listener(), settings())
    room = Room(d)
    alice, bob = room.people("alice", "bob")
    try:
        bob.send(bad + b"\n")
        _, final = bob.reply()
        assert final.startswith("-ERR bad-encoding "), final
        bob.send_line("fine")  # the connection lives; the next line alice sees is this one
        assert alice.read_line() == "MSG bob fine"
        lines, final = alice.command("/history 5")  # the history holds only the good line
        assert final.startswith("+OK") and len(lines) == 1 and lines[0].endswith(" bob fine"), lines
    finally:
        room.close()
