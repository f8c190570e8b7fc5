"""Issue 19 item 10: a flooder that leaves stops talking at once, and the operator can kick anyone.

Before: a client that sent 20,000 lines and disconnected went on talking under
``on_flood: slow`` for half an hour (10 lines/s), stayed in ``/who`` and blocked
its name's next login; nothing let the operator end it.
"""

from __future__ import annotations

import re
import subprocess
import time

from daemon.testing import LineClient, write_config
from tests.support.chat import CHEAP_ARGON2, Room, collect, listener, login, settings
from tests.support.process import installed
from tests.support.pty import Terminal
from tests.support.robustness import wait_until


def test_a_flooder_that_disconnects_leaves_the_room_at_once(daemond_factory):
    # Bound: plugins.chat.rate 10/s, burst 20, on_flood slow: 2,000 lines held back would take 200 s
    d = daemond_factory(listener(), settings(rate=10, burst=20, on_flood="slow"))
    room = Room(d)
    mallory, bob = room.people("mallory", "bob")
    mallory.send(b"".join(b"spam %d\n" % n for n in range(2000)))
    time.sleep(0.5)
    mallory.close()
    start = time.monotonic()
    lines = collect([bob], lambda i, got: "PART mallory" in got, timeout=10)[0]
    gone_after = time.monotonic() - start
    assert sum(line.startswith("MSG mallory") for line in lines) < 100, len(lines)
    assert bob.command("/who")[1] == "+OK bob"
    again = room.connect("mallory")  # the name is free again
    assert bob.read_line() == "JOIN mallory"
    assert again.command("/who")[1] == "+OK bob mallory"
    assert gone_after < 10
    room.close()


def _daemonctl(socket_path, *args):
    proc = subprocess.run([installed("daemonctl"), "--socket", str(socket_path), *args], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_daemonctl_kick_ends_every_session_of_a_user_on_every_listener(daemond_process):
    plugins = {**settings(rate=10, burst=20), "auth": {"argon2": CHEAP_ARGON2, "max_attempts": 1000}}
    d = daemond_process({**listener(), "echo": {"plugins": ["auth", "echo"]}}, plugins)
    socket_path = d.config.parent / "state" / "control.sock"
    if not socket_path.exists():
        socket_path = next(d.config.parent.rglob("control.sock"))
    room = Room(d)
    alice, bob = room.people("alice", "bob")
    echo = d.client("echo")
    login(echo, "alice")
    alice.send(b"".join(b"flood %d\n" % n for n in range(500)))  # alice is held back by flood control
    collect([bob], lambda i, got: len(got) >= 20)

    done = _daemonctl(socket_path, "kick", "ALICE", "--reason", "spamming the lobby")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "kicked alice: 2 sessions (chat, echo)"
    assert "NOTICE kicked by the operator: spamming the lobby" in alice.expect_closed(timeout=10).decode()
    echo.expect_closed(timeout=10)
    lines = collect([bob], lambda i, got: "PART alice" in got, timeout=10)[0]
    assert lines[-1] == "PART alice"
    assert bob.command("/who")[1] == "+OK bob"

    missing = _daemonctl(socket_path, "kick", "nobody")
    assert missing.returncode == 1 and "nobody is not connected" in missing.stderr + missing.stdout
    bad = _daemonctl(socket_path, "kick", "bob", "--reason", "two\nlines")
    assert bad.returncode != 0 and bob.command("/who")[1] == "+OK bob"
    room.close()


def test_kick_at_the_console(tmp_path):
    config = write_config(tmp_path, listener(), settings())
    with open(tmp_path / "stderr.log", "wb") as stderr:
        term = Terminal([installed("daemond"), "-c", str(config)], stderr=stderr, controlling=True)
        try:
            term.expect("daemond> ")
            port = int(wait_until(lambda: re.search(r"listening on 127\.0\.0\.1:(\d+) \(chat\)",
                                                     (tmp_path / "stderr.log").read_text()), timeout=15).group(1))
            alice = LineClient("127.0.0.1", port)
            login(alice, "alice")
            term.write("kick Alice --reason 'time out'\n")
            assert "kicked alice: 1 session (chat)" in term.expect("daemond> ")
            assert "NOTICE kicked by the operator: time out" in alice.expect_closed(timeout=10).decode()
            # the session is listed until its thread has ended it, a moment after the close; then it logs
            assert wait_until(lambda: re.search(r"disconnect chat \S+ user=alice reason=kicked",
                                                (tmp_path / "stderr.log").read_text()), timeout=15)
            term.write("kick alice\n")
            assert "alice is not connected" in term.expect("daemond> ")
        finally:
            term.close()
