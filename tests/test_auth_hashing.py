"""Where passwords are hashed: a low-priority helper process, capped, replaced when it dies
(issue 9, item 9: a login storm must not slow the daemon's other connections)."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import argon2
import pytest

from daemon import CommandError
from plugins.auth import passwords, scheduling
from plugins.auth.passwords import Argon2Params, Hasher
from tests.auth_support import CHEAP_ARGON2, connect, gone, plugin_of, register, run_command, slices_of, start
from tests.robustness.helpers import wait_until


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def where(running) -> str:
    return running.daemon.status()["plugins"]["auth"]["hashing"]


def helper_pid(running) -> int:
    match = re.fullmatch(r"helper process (\d+)", where(running))
    assert match, where(running)
    return int(match.group(1))


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_hashes_run_in_one_low_priority_helper_elsewhere_that_ends_with_the_daemon(daemond_factory):
    d = start(daemond_factory, max_hashing=2)
    pid = helper_pid(d)  # started with the daemon, not at the first login
    clients = [register(d, f"user{i}", f"password-{i}")[0] for i in range(4)]
    assert helper_pid(d) == pid  # one helper serves them all
    assert Path(f"/proc/{pid}/status").read_text().count(f"PPid:\t{os.getpid()}\n") == 1
    assert threads_of(pid) == 1 + 2  # its main thread and one per hash at once (max_hashing)
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    # only the helper is niced: the kernel runs connection threads first while it hashes
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, ours + 10)
    # and it gives way at once to whatever wakes on its CPU (plugins/auth/scheduling.py)
    assert slices_of(pid) in ({scheduling.HASHING_SLICE_NS}, None)  # None: a kernel that does not show it
    sessions = [t for t in threading.enumerate() if t.name.startswith("conn-login-")]
    assert len(sessions) == 4 and {os.getpriority(os.PRIO_PROCESS, t.native_id) for t in sessions} == {ours}
    # and on the CPUs the daemon leaves for native work, away from the one its Python threads share
    native = d.daemon.api.native_cpus()
    allowed = os.sched_getaffinity(0)
    assert native == (allowed - {max(allowed)} if len(allowed) > 1 else None)
    assert os.sched_getaffinity(pid) == (native or allowed)
    # passwords travel through its pipes only: not its command line, not its environment
    assert b"password-" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert b"password-" not in Path(f"/proc/{pid}/environ").read_bytes()
    status = d.daemon.status()["plugins"]["auth"]
    assert (status["hashes"], status["verifications"]) == (4, 0)
    for client in clients:
        client.close()
    d.stop()
    assert gone(pid)


def test_the_helper_starts_its_threads_only_once_placed(daemond_factory, monkeypatch):
    # CPUs, nice and slice are per thread: threads it started before the daemon placed its
    # main thread would keep the starting thread's (which may be a connection's, at any nice)
    threads_before = []
    place = passwords._Helper._place

    def slow_place(helper, cpus):
        time.sleep(1.0)  # far longer than its start and imports take
        threads_before.append(threads_of(helper.pid))
        place(helper, cpus)

    monkeypatch.setattr(passwords._Helper, "_place", slow_place)
    d = start(daemond_factory, max_hashing=2)
    pid = helper_pid(d)
    assert threads_before == [1]
    assert wait_until(lambda: threads_of(pid) == 1 + 2, 10, 0.02)
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert {os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir(f"/proc/{pid}/task")} == {min(19, ours + 10)}
    assert {frozenset(os.sched_getaffinity(int(tid))) for tid in os.listdir(f"/proc/{pid}/task")} == \
        {frozenset(d.daemon.api.native_cpus() or os.sched_getaffinity(0))}
    assert slices_of(pid) in ({scheduling.HASHING_SLICE_NS}, None)
    register(d, "alice", "password-1")[0].close()


def test_a_killed_helper_is_replaced_and_logins_go_on(daemond_factory):
    d = start(daemond_factory)
    register(d, "alice", "password-1")[0].close()
    first = helper_pid(d)
    os.kill(first, signal.SIGKILL)
    assert gone(first)  # reaped by the daemon at once, not left a zombie
    # another started without waiting for a login
    assert wait_until(lambda: re.fullmatch(r"helper process \d+", where(d)) and helper_pid(d) != first,
                      10, 0.02), where(d)
    log = (d.config.state_dir / "daemond.log").read_text()
    assert f"auth: the hashing helper was killed by SIGKILL (pid {first}); starting another" in log
    second = helper_pid(d)
    client, _ = connect(d)
    assert client.command("/login alice password-1")[1].startswith("+OK logged in as alice ")
    assert helper_pid(d) == second
    client.close()


def test_a_helper_killed_during_a_hash_is_replaced_and_the_hash_done_again(daemond_factory):
    d = start(daemond_factory, argon2={"time_cost": 50, "memory_cost": 8192, "parallelism": 1})
    register(d, "alice", "password-1")[0].close()
    pid = helper_pid(d)
    client, _ = connect(d)
    idle = cpu_ticks(pid)
    client.send_line("/login alice password-1")
    assert wait_until(lambda: cpu_ticks(pid) >= idle + 2, 10, 0.01)  # busy hashing it (some 0.5 s of CPU a hash)
    os.kill(pid, signal.SIGKILL)
    assert client.reply()[1].startswith("+OK logged in as alice ")
    assert helper_pid(d) != pid and gone(pid)
    client.close()
    log = (d.config.state_dir / "daemond.log").read_text()
    # seen dead by the request (its pipe closed) or by its watcher, whichever came first
    assert re.search(rf"auth: the hashing helper (exited|was killed by SIGKILL)( \([^)]*\))? \(pid {pid}\); "
                     rf"starting another", log)


def fake_python(tmp_path, body: str) -> str:
    """A stand-in for the helper's interpreter, run as ``PYTHON -P SCRIPT CONFIG``: a Python
    program whose ``body`` sees ``fd``, the request pipe of the helper's first channel."""
    script = tmp_path / "python"
    script.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                      f"fd = json.loads(sys.argv[3])['channels'][0][0]\n{body}")
    script.chmod(0o755)
    return str(script)


def test_helpers_that_die_under_every_request_cost_a_login_then_hashing_moves_into_the_daemon(
        daemond_factory, tmp_path, monkeypatch):
    # each one takes a request and exits without answering
    monkeypatch.setattr(passwords, "PYTHON", fake_python(tmp_path, "os.read(fd, 65536)\nsys.exit(3)\n"))
    d = start(daemond_factory)
    client, _ = connect(d)
    # the first helper dies under it, and the one it is sent to again: refused, the connection lives
    assert client.command("/register alice password-1")[1] == \
        "-ERR unavailable passwords cannot be checked just now; try again"
    # the third dies too: from then on hashes run in the daemon, and the login goes through
    assert client.command("/register alice password-1")[1].startswith("+OK registered and logged in as alice ")
    assert where(d) == (f"the daemon itself (no helper: {passwords.STILLBORN_LIMIT} in a row exited before "
                        f"answering; see the daemon's stderr)")
    client.close()
    log = (d.config.state_dir / "daemond.log").read_text()
    # each seen dead by the request (its pipe closed) or by its watcher, whichever came first
    assert len(re.findall(r"auth: the hashing helper exited[^(]*(\([^)]*\) )?\(pid \d+\)", log)) == 3
    assert re.search(r"password hashing failed \(the hashing helper exited( \([^)]*\))?\); "
                     r"a login or registration from 127\.0\.0\.1 was refused", log)


def test_helpers_that_cannot_run_at_all_leave_hashing_to_the_daemon_before_any_login(
        daemond_factory, tmp_path, monkeypatch):
    monkeypatch.setattr(passwords, "PYTHON", fake_python(tmp_path, "sys.exit(3)\n"))  # e.g. argon2 not importable
    d = start(daemond_factory)
    # each one's watcher starts the next at once
    assert wait_until(lambda: where(d).startswith("the daemon itself"), 10, 0.02), where(d)
    client, _ = connect(d)
    assert client.command("/register alice password-1")[1].startswith("+OK registered and logged in as alice ")
    client.close()
    log = (d.config.state_dir / "daemond.log").read_text()
    assert len(re.findall(r"auth: the hashing helper exited with status 3 \(pid \d+\)", log)) == 3
    assert "cannot run the password hashing helper (3 in a row exited before answering" in log


def test_without_a_helper_hashes_run_in_the_daemon_still_capped(daemond_factory, monkeypatch):
    monkeypatch.setattr(passwords, "PYTHON", "/nonexistent/python3")
    d = start(daemond_factory, max_hashing=2)
    status = d.daemon.status()["plugins"]["auth"]
    assert status["hashing"].startswith("the daemon itself (no helper: ")
    log = (d.config.state_dir / "daemond.log").read_text()
    assert "cannot run the password hashing helper" in log and "hashing in the daemon instead, at most 2" in log
    running = most = 0
    lock = threading.Lock()  # guards running and most (counted from the connections' threads)
    original = argon2.PasswordHasher.hash

    def slow_hash(self, password, *, salt=None):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.2)
        with lock:
            running -= 1
        return original(self, password)

    monkeypatch.setattr(argon2.PasswordHasher, "hash", slow_hash)
    clients = [connect(d)[0] for _ in range(6)]
    for i, client in enumerate(clients):
        client.send_line(f"/register user{i} password-{i}")
    finals = [client.reply()[1] for client in clients]
    assert all(f.startswith("+OK registered") for f in finals), finals
    assert most == 2
    for client in clients:
        client.close()


def test_a_hasher_closed_while_hashing_lets_the_hash_finish_then_its_helper_ends(monkeypatch):
    hasher = Hasher(Argon2Params(time_cost=20, memory_cost=8192, parallelism=1), 1)
    hasher.start()
    pid = int(hasher.where().split()[-1])
    here = []  # hashes run in this process: none until the hasher is closed and its helper gone
    original_here = Hasher._here
    monkeypatch.setattr(Hasher, "_here", lambda self, op, *args: here.append(op) or original_here(self, op, *args))
    results = []
    idle = cpu_ticks(pid)
    worker = threading.Thread(target=lambda: results.append(hasher.hash("password-1")))
    worker.start()
    assert wait_until(lambda: cpu_ticks(pid) >= idle + 2, 10, 0.01)  # the helper is hashing it
    hasher.close(wait=False)  # what a reload does to a hasher it replaces
    worker.join(30)
    assert results and results[0].startswith("$argon2id$") and here == []  # the helper finished it
    assert gone(pid, within=10)
    assert hasher.hash("password-2").startswith("$argon2id$")  # a straggler: hashed on its own thread
    assert here == ["hash"]


def test_an_interrupted_request_does_not_lose_its_slot(monkeypatch):
    # Ctrl-C at the console during `users add` interrupts a hash on the main thread; its channel
    # must not be lost (with one slot, every later hash would fail) nor reused (its answer may
    # still arrive and be read as the next request's)
    hasher = Hasher(Argon2Params(**CHEAP_ARGON2), 1)
    try:
        first = hasher.hash("password-1")
        original = passwords.json.loads
        calls = []

        def interrupted(text):
            if not calls:
                calls.append(text)
                raise KeyboardInterrupt
            return original(text)

        monkeypatch.setattr(passwords.json, "loads", interrupted)
        pid = int(hasher.where().split()[-1])
        with pytest.raises(KeyboardInterrupt):
            hasher.hash("password-2")
        assert gone(pid)  # that helper is retired ...
        for i in range(3):  # ... and the one slot still works, with a new one
            assert hasher.verify(first, "password-1") is True
        assert hasher.where() != f"helper process {pid}"
    finally:
        hasher.close()


def test_a_rehash_that_cannot_be_done_now_does_not_refuse_a_right_password(daemond_factory, monkeypatch):
    d = start(daemond_factory)
    register(d, "alice", "password-1")[0].close()
    store = plugin_of(d).store
    old = argon2.PasswordHasher(time_cost=1, memory_cost=16, parallelism=1).hash("password-1")
    store.set_hash("alice", old)  # stored with other parameters: redone at the next login

    def failing_hash(self, password, timeout=None):
        raise passwords.HashingFailed("the hashing helper exited", retry=True)

    monkeypatch.setattr(Hasher, "hash", failing_hash)
    client, _ = connect(d)
    assert client.command("/login alice password-1")[1].startswith("+OK logged in as alice ")
    client.close()
    assert store.user("alice").hash == old  # kept, to be redone at a later login
    log = (d.config.state_dir / "daemond.log").read_text()
    assert "could not rehash the password of alice (the hashing helper exited); kept as it is until the next login" in log


def test_an_operator_command_that_cannot_hash_gets_a_clear_error(daemond_factory, monkeypatch):
    d = start(daemond_factory)

    def failing_hash(self, password, timeout=None):
        raise passwords.HashingFailed("the hashing helper exited", retry=True)

    monkeypatch.setattr(Hasher, "hash", failing_hash)
    with pytest.raises(CommandError, match=r"^the password cannot be hashed just now \(the hashing helper exited\); try again$"):
        run_command(d, "users", action="add", name="carol", password="operator-pw")
    assert plugin_of(d).store.user("carol") is None


def test_needs_rehash_tells_stored_hashes_apart_and_remembers_a_bounded_number(monkeypatch):
    monkeypatch.setattr(passwords, "REHASH_VERDICTS", 3)
    hasher = Hasher(Argon2Params(**CHEAP_ARGON2), 1)
    try:
        current = hasher.dummy_hash
        weaker = argon2.PasswordHasher(time_cost=1, memory_cost=16, parallelism=1).hash("password-1")
        for _ in range(2):  # the second time from what it remembers
            assert hasher.needs_rehash(current) is False
            assert hasher.needs_rehash(weaker) is True
            assert hasher.needs_rehash("$argon2id$garbage") is True
        others = [argon2.PasswordHasher(time_cost=1, memory_cost=16 + i, parallelism=1).hash("p") for i in range(5)]
        assert all(hasher.needs_rehash(h) for h in others)
        assert len(hasher._rehash_verdicts) <= 3
        assert hasher.needs_rehash(current) is False
    finally:
        hasher.close()
