"""The installed ``daemonctl rooms`` against a running ``daemond``: list, ``--json``, create, topic, delete."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support.chat import ENV, Room, assert_nothing_pending, listener, settings
from tests.support.process import installed
from tests.support.pty import Terminal

DELETE_QUESTION = "Delete room #dev, its history and topic, and part its members?"


@pytest.fixture
def running(daemond_process):
    """A daemond subprocess with a chat listener; alice and bob in #lobby, both also in #Dev."""
    d = daemond_process(listener(), settings(), env=ENV)
    room = Room(d)
    alice, bob = room.people("alice", "bob")
    assert alice.command("/join #Dev") == ([], "+OK")
    assert bob.command("/join #dev") == ([], "+OK")
    assert alice.read_line() == "JOIN #Dev bob"
    alice.send_line("hello dev")
    assert bob.read_line() == "MSG #Dev alice hello dev"
    yield d, alice, bob
    room.close()


def daemonctl(d, *args: str) -> subprocess.CompletedProcess:
    """``daemonctl -c CONFIG ARGS`` as an operator runs it: it finds the socket through the config."""
    environ = {k: v for k, v in os.environ.items() if k not in ("DAEMOND_SOCKET", "DAEMOND_CONFIG", "RUNTIME_DIRECTORY")}
    proc = subprocess.run([installed("daemonctl"), "-c", str(d.config), *args], capture_output=True, text=True,
                          timeout=30, env=environ, stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def test_rooms_lists_for_people_and_for_machines(running):
    d, alice, bob = running
    text = daemonctl(d, "rooms")
    assert (text.returncode, text.stderr) == (0, "")
    assert text.stdout == "#Dev    2 members  1 messages\n#lobby  2 members  0 messages\n"  # in columns
    assert daemonctl(d, "rooms", "list").stdout == text.stdout
    machine = daemonctl(d, "--json", "rooms")
    assert machine.returncode == 0
    assert json.loads(machine.stdout) == {"ok": True, "result": [
        {"name": "#Dev", "members": 2, "messages": 1, "topic": ""},
        {"name": "#lobby", "members": 2, "messages": 0, "topic": ""}]}
    assert json.loads(daemonctl(d, "rooms", "--json").stdout) == json.loads(machine.stdout)  # --json after it
    assert_nothing_pending(alice)  # listing tells nobody anything


def test_rooms_create_makes_a_room_that_stays_and_refuses_bad_names(running):
    d, alice, bob = running
    made = daemonctl(d, "rooms", "create", "ops")  # without its #: the shell reads #ops as a comment
    assert (made.returncode, made.stdout, made.stderr) == (0, "created #ops\n", "")
    assert daemonctl(d, "rooms", "create", "#Ops").stdout == "created #ops\n"  # the same room: names ignore case
    assert alice.command("/rooms") == (["ROOM #Dev 2", "ROOM #lobby 2", "ROOM #ops 0"], "+OK")
    bad = daemonctl(d, "rooms", "create", "#bad!")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("daemonctl: '#bad!' is not a room name: # and 1-32 of A-Z a-z 0-9 _ . -"), bad.stderr
    failed = daemonctl(d, "--json", "rooms", "create", "#bad!")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["error"]["details"] == {"error": "bad-room"}  # the protocol's token
    which = daemonctl(d, "rooms", "create")
    assert which.returncode == 1 and "rooms create: which room? (rooms create NAME, its # left out or quoted)" in which.stderr
    assert "#bad!" not in daemonctl(d, "rooms").stdout


def test_rooms_topic_sets_announces_and_shows(running):
    d, alice, bob = running
    out = daemonctl(d, "rooms", "topic", "dev", "ship", "it", "friday")  # the rest of the line, unquoted
    assert (out.returncode, out.stdout) == (0, "topic of #dev: ship it friday\n")
    assert alice.read_line() == "TOPIC #Dev * ship it friday"  # "*": the operator
    assert bob.read_line() == "TOPIC #Dev * ship it friday"
    assert daemonctl(d, "rooms", "topic", "#dev").stdout == "ship it friday\n"
    assert "#Dev    2 members  1 messages  topic: ship it friday\n" in daemonctl(d, "rooms").stdout
    assert bob.command("/topic #dev") == ([], "+OK ship it friday")
    missing = daemonctl(d, "rooms", "topic", "nope", "x")
    assert (missing.returncode, missing.stderr) == (1, "daemonctl: there is no room #nope\n")


def test_rooms_delete_without_yes_and_no_terminal_does_nothing(running):
    d, alice, bob = running
    out = daemonctl(d, "rooms", "delete", "dev")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == f"daemonctl: rooms asks: {DELETE_QUESTION} — answer on a terminal, or pass --yes\n"
    assert "#Dev    2 members  1 messages" in daemonctl(d, "rooms").stdout
    assert_nothing_pending(alice)
    alice.send_line("still here")
    assert bob.read_line() == "MSG #Dev alice still here"


def test_rooms_delete_with_yes_parts_the_members_and_drops_the_history(running):
    d, alice, bob = running
    out = daemonctl(d, "rooms", "delete", "dev", "--yes")
    assert (out.returncode, out.stdout, out.stderr) == (0, "deleted #dev; 2 members parted\n", "")
    for client, name in ((alice, "alice"), (bob, "bob")):
        assert client.read_line() == "NOTICE #Dev was deleted by the operator"  # the name as created
        assert client.read_line() == f"PART #Dev {name}"
    assert daemonctl(d, "rooms").stdout == "#lobby  2 members  0 messages\n"
    alice.send_line("back in the lobby")  # the current room is the default room again
    assert bob.read_line() == "MSG alice back in the lobby"
    assert alice.command("/join #dev") == ([], "+OK")  # a new room: no history replayed
    assert daemonctl(d, "-y", "rooms", "delete", "dev").returncode == 0  # -y before the command too
    gone = daemonctl(d, "rooms", "delete", "dev", "--yes")
    assert (gone.returncode, gone.stderr) == (1, "daemonctl: there is no room #dev\n")
    lobby = daemonctl(d, "--json", "rooms", "delete", "lobby", "--yes")
    assert lobby.returncode == 1
    assert json.loads(lobby.stdout)["error"] == {"code": "failed", "details": {"error": "bad-room"},
                                                 "message": "#lobby is the default room; it cannot be deleted"}


@pytest.mark.parametrize("answer, deleted", [("y", True), ("n", False)])
def test_rooms_delete_asks_on_a_terminal(running, answer, deleted):
    d, alice, bob = running
    term = Terminal([installed("daemonctl"), "-c", str(d.config), "rooms", "delete", "dev"], env=ENV)
    try:
        term.expect(f"{DELETE_QUESTION} [y/N] ")
        term.write(answer + "\n")
        rest = term.read_to_end()
        status = term.wait()
    finally:
        term.close()
    assert "Traceback" not in rest
    listed = daemonctl(d, "rooms").stdout
    if deleted:
        assert status == 0 and "deleted #dev; 2 members parted" in rest
        assert "#Dev" not in listed
        assert alice.read_line() == "NOTICE #Dev was deleted by the operator"  # the name as created
    else:
        assert status == 1 and "daemonctl: rooms: not confirmed; nothing done" in rest
        assert "#Dev    2 members  1 messages" in listed
        assert_nothing_pending(alice)
