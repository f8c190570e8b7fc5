"""Item 18: a full disk under the state directory: clear -ERR unavailable and log lines, no crash, and
service resumes when space returns. Uses a real 1 MiB tmpfs (root can mount one)."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.chat import Room, listener, login, password, settings


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system holding ``directory``; returns the filler file."""
    filler = directory / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    try:  # what is left in partial blocks too
        with open(filler, "ab") as f:
            while True:
                f.write(b"\0" * 512)
                f.flush()
    except OSError:
        pass
    return filler


# A read-only remount of a file system with files open for writing fails (EBUSY), so
# read-only is injected at the storage layer in the next test.
@pytest.mark.parametrize("fault", ["full"])
def test_a_full_disk_refuses_writes_with_unavailable_and_service_resumes(daemond_factory, small_disk, fault):
    d = daemond_factory(listener(), settings(), state_dir=str(small_disk))
    room = Room(d)
    alice, bob = room.people("alice", "bob")
    if fault == "full":
        filler = fill(small_disk)
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    padding = "x" * 2000
    refused = 0
    for n in range(300):  # until SQLite needs a page it cannot have
        alice.send_line(f"m{n} {padding}")
        _, final = alice.command("/who")
        if final.startswith("-ERR"):
            assert final.startswith("-ERR unavailable "), final
            refused += 1
            break
    assert refused, "the history never hit the full disk"
    # a new user cannot be stored either: told so, connection alive
    carol = d.client("chat")
    carol.read_line()
    _, final = carol.command("/register carol carol-password")
    assert final.startswith("-ERR unavailable "), final
    assert carol.command("/help")[1].startswith("+OK")
    assert d.daemon.status()["state"] == "running"
    # space returns: everything works again without a restart
    if fault == "full":
        os.unlink(filler)
    else:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    alice.send_line("back again")
    lines = []
    while "MSG alice back again" not in lines:
        lines.append(bob.read_line())
    assert all(not line.startswith("MSG alice m") or line.endswith(padding) for line in lines)
    _, final = carol.command("/register carol carol-password")
    assert final.startswith("+OK registered"), final
    log = "\n".join(d.daemon.logs.tail(10_000))
    assert "cannot be written" in log
    room.close()
    carol.close()


def test_a_read_only_store_and_history_refuse_writes_with_unavailable_and_recover(daemond_factory):
    # A read-only state directory, injected at the storage layer: both databases'
    # writing connections are swapped for read-only ones (SQLite's mode=ro), which
    # is what SQLite answers on a read-only mount too; then swapped back.
    import sqlite3

    d = daemond_factory(listener(), settings())
    room = Room(d)
    alice, bob = room.people("alice", "bob")
    chat = d.daemon.config.plugins["chat"].obj
    auth = d.daemon.config.plugins["auth"].obj
    history, store = chat.room.history, auth.store
    writer, db = history._writer, store._db
    history._writer = sqlite3.connect(f"file:{history.path}?mode=ro", uri=True, check_same_thread=False)
    store._db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, check_same_thread=False,
                                isolation_level=None)
    try:
        alice.send_line("lost")
        _, final = alice.command("/who")
        assert final.startswith("-ERR unavailable "), final
        carol = d.client("chat")
        carol.read_line()
        assert carol.command("/register carol carol-password")[1].startswith("-ERR unavailable ")
        assert bob.command("/who")[1] == "+OK alice bob"  # bob never saw "lost"
    finally:
        history._writer.close()
        store._db.close()
        history._writer, store._db = writer, db
    alice.send_line("found")
    assert bob.read_line() == "MSG alice found"
    assert carol.command("/register carol carol-password")[1].startswith("+OK registered")
    room.close()
    carol.close()



def test_a_login_the_store_cannot_record_is_refused_with_unavailable(daemond_factory):
    # auth records a login (token, last login) before any plugin sees it: a store that cannot
    # take the record refuses the login with -ERR unavailable, the connection lives, and nobody
    # in the room saw a JOIN.
    import sqlite3

    d = daemond_factory(listener(), settings())
    room = Room(d)
    (alice,) = room.people("alice")
    first = d.client("chat")
    login(first, "carol")
    assert alice.read_line() == "JOIN carol"
    first.close()
    assert alice.read_line() == "PART carol"  # carol has left the room: she may log in again
    store = d.daemon.config.plugins["auth"].obj.store
    db = store._db
    recorded = store.user("carol"), store.counts(0)
    store._db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, check_same_thread=False,
                                isolation_level=None)
    try:
        again = d.client("chat")
        again.read_line()
        _, final = again.command(f"/login carol {password('carol')}")
        assert final.startswith("-ERR unavailable "), final
        assert again.command("/help")[1].startswith("+OK")  # still connected, still logged out
    finally:
        store._db.close()
        store._db = db
    assert (store.user("carol"), store.counts(0)) == recorded  # nothing half-stored
    assert alice.command("/who") == ([], "+OK alice")  # no JOIN carol: nobody saw that login
    assert "cannot be written" in "\n".join(d.daemon.logs.tail(1000))
    # the store is back: the same connection logs in
    assert again.command(f"/login carol {password('carol')}")[1].startswith("+OK logged in as carol")
    assert alice.read_line() == "JOIN carol"
    room.close()
    again.close()
