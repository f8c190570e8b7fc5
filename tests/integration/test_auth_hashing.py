"""Where passwords are hashed: one low-priority helper process, capped, replaced when it dies,
and no hashing at all (``-ERR unavailable``) while it cannot run."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
from pathlib import Path

import argon2
import pytest

from daemon import CommandError
from plugins.auth import hashing
from plugins.auth.hashing import Argon2Params, Hasher, HashingUnavailable
from plugins.auth.hashing.helper import HASHING_NICE
from tests.support.auth import CHEAP_ARGON2, connect, gone, plugin_of, register, run_command, start
from tests.support.robustness import wait_until


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def where(running) -> str:
    return running.daemon.status()["plugins"]["auth"]["hashing"]


def helper_pid(running) -> int:
    match = re.fullmatch(r"helper process (\d+)", where(running))
    assert match, where(running)
    return int(match.group(1))


def tids_of(pid: int) -> list[int]:
    return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]


def log_of(running) -> str:
    return (running.config.state_dir / "daemond.log").read_text()


def swap_hasher(running, python: str) -> Hasher:
    """Give the running auth plugin a hasher whose helper runs ``python``, as a reload would."""
    plugin = plugin_of(running)
    old = plugin.hasher
    plugin.hasher = Hasher(old.params, old.max_concurrent, old.cpus, on_request=plugin.count, python=python)
    old.close()
    plugin.hasher.start()
    return plugin.hasher


def test_hashes_run_in_one_low_priority_helper_elsewhere_that_ends_with_the_daemon(daemond_factory):
    d = start(daemond_factory, max_hashing=2)
    pid = helper_pid(d)  # started with the daemon, not at the first login
    clients = [register(d, f"user{i}", f"password-{i}")[0] for i in range(4)]
    assert helper_pid(d) == pid  # one helper serves them all
    assert Path(f"/proc/{pid}/status").read_text().count(f"PPid:\t{os.getpid()}\n") == 1
    assert len(tids_of(pid)) == 1 + 2  # its main thread and one per hash at once (max_hashing)
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    # every thread of the helper, and only the helper, is niced: connection threads run first
    assert {os.getpriority(os.PRIO_PROCESS, tid) for tid in tids_of(pid)} == {min(19, ours + HASHING_NICE)}
    sessions = [t for t in threading.enumerate() if t.name.startswith("conn-login-")]
    assert len(sessions) == 4 and {os.getpriority(os.PRIO_PROCESS, t.native_id) for t in sessions} == {ours}
    # and on the CPUs the daemon leaves for native work, away from the one its Python threads share
    native = d.daemon.api.native_cpus()
    allowed = os.sched_getaffinity(0)
    assert native == (allowed - {max(allowed)} if len(allowed) > 1 else None)
    assert {frozenset(os.sched_getaffinity(tid)) for tid in tids_of(pid)} == {frozenset(native or allowed)}
    # passwords travel through its pipes only: not its command line, not its environment
    assert b"password-" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert b"password-" not in Path(f"/proc/{pid}/environ").read_bytes()
    status = d.daemon.status()["plugins"]["auth"]
    assert (status["hashes"], status["verifications"]) == (4, 0)
    for client in clients:
        client.close()
    d.stop()
    assert gone(pid)


def test_a_helper_killed_with_sigkill_is_replaced_and_logins_go_on(daemond_factory):
    d = start(daemond_factory)
    register(d, "alice", "password-1")[0].close()
    first = helper_pid(d)
    os.kill(first, signal.SIGKILL)
    assert gone(first)  # reaped by the daemon at once, not left a zombie
    # another started without waiting for a login
    def replaced() -> bool:
        # one read of the status: the old pid, then "(not running)", then the new pid is a legal sequence
        match = re.fullmatch(r"helper process (\d+)", where(d))
        return bool(match) and int(match.group(1)) != first

    assert wait_until(replaced, 10, 0.02), where(d)
    assert f"auth: the hashing helper was killed by SIGKILL (pid {first}); starting another" in log_of(d)
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
    assert wait_until(lambda: cpu_ticks(pid) >= idle + 2, 10, 0.01)  # busy hashing it
    os.kill(pid, signal.SIGKILL)
    assert client.reply()[1].startswith("+OK logged in as alice ")
    assert helper_pid(d) != pid and gone(pid)
    client.close()
    # seen dead by the request (its pipe closed) or by its watcher, whichever came first
    assert re.search(rf"auth: the hashing helper (exited|was killed by SIGKILL)( \([^)]*\))? \(pid {pid}\); "
                     rf"starting another", log_of(d))


def test_a_helper_that_cannot_start_fails_logins_closed_until_it_can(daemond_factory, tmp_path):
    d = start(daemond_factory)
    register(d, "alice", "password-1")[0].close()
    python = tmp_path / "python3"  # does not exist yet
    hasher = swap_hasher(d, str(python))
    assert where(d) == "helper process (not running)"
    client, _ = connect(d)
    for command in ("/login alice password-1", "/register bob password-2"):
        assert client.command(command)[1] == "-ERR unavailable passwords cannot be checked just now; try again"
    log = log_of(d)
    assert f"auth: cannot start the password hashing helper {python} (No such file or directory); " \
           "hashes fail until another is tried in 1s" in log
    assert "password hashing failed (the hashing helper cannot run just now); " \
           "a login or registration from 127.0.0.1 was refused" in log
    assert plugin_of(d).store.user("bob") is None
    # the interpreter appears: after the delay the next login starts a helper and goes through
    python.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    assert wait_until(lambda: client.command("/login alice password-1")[1].startswith("+OK logged in as alice "),
                      30, 0.25)
    assert re.fullmatch(r"helper process \d+", hasher.where())
    client.close()


def fake_python(tmp_path, body: str) -> str:
    """A stand-in interpreter for the helper, run as ``PYTHON -P SCRIPT CONFIG``: a Python program
    whose ``body`` sees ``fd``, the request pipe of the helper's first channel."""
    script = tmp_path / "python"
    script.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                      f"fd = json.loads(sys.argv[3])['channels'][0][0]\n{body}")
    script.chmod(0o755)
    return str(script)


def test_helpers_that_die_under_every_request_refuse_it_and_back_off(daemond_factory, tmp_path):
    d = start(daemond_factory)
    # each one takes a request and exits without answering
    swap_hasher(d, fake_python(tmp_path, "os.read(fd, 65536)\nsys.exit(3)\n"))
    client, _ = connect(d)
    # the first helper dies under it, and the one it is sent to again: refused, the connection lives
    assert client.command("/register alice password-1")[1] == \
        "-ERR unavailable passwords cannot be checked just now; try again"
    assert client.command("/help")[1].startswith("+OK")
    client.close()
    log = log_of(d)
    # the second try found no helper (waiting out the delay) or saw the next one die too
    assert re.search(r"password hashing failed \(the hashing helper (exited( \([^)]*\))?|cannot run just now)\); "
                     r"a login or registration from 127\.0\.0\.1 was refused", log)
    assert re.search(r"auth: the hashing helper exited[^;]*\(pid \d+\) before answering anything; "
                     r"hashes fail until another is tried in 1s", log)


def test_a_hasher_closed_while_hashing_lets_the_hash_finish_then_its_helper_ends():
    hasher = Hasher(Argon2Params(time_cost=20, memory_cost=8192, parallelism=1), 1)
    hasher.start()
    pid = int(hasher.where().split()[-1])
    results = []
    idle = cpu_ticks(pid)
    worker = threading.Thread(target=lambda: results.append(hasher.hash("password-1")))
    worker.start()
    assert wait_until(lambda: cpu_ticks(pid) >= idle + 2, 10, 0.01)  # the helper is hashing it
    hasher.close(wait=False)  # what a reload does to a hasher it replaces
    worker.join(30)
    assert results and results[0].startswith("$argon2id$")  # the helper finished it
    assert gone(pid, within=10)
    with pytest.raises(HashingUnavailable, match="closed"):
        hasher.hash("password-2")


def test_an_interrupted_request_does_not_lose_its_slot(monkeypatch):
    # Ctrl-C at the console during `users add` interrupts a hash on the main thread; its channel
    # must not be lost (with one slot, every later hash would fail) nor reused (its answer may
    # still arrive and be read as the next request's)
    hasher = Hasher(Argon2Params(**CHEAP_ARGON2), 1)
    try:
        first = hasher.hash("password-1")
        original = hashing.helper.json.loads
        calls = []

        def interrupted(text):
            if not calls:
                calls.append(text)
                raise KeyboardInterrupt
            return original(text)

        monkeypatch.setattr(hashing.helper.json, "loads", interrupted)
        pid = int(hasher.where().split()[-1])
        with pytest.raises(KeyboardInterrupt):
            hasher.hash("password-2")
        assert gone(pid)  # that helper is retired ...
        for _ in range(3):  # ... and the one slot still works, with a new one
            assert hasher.verify(first, "password-1") is True
        assert hasher.where() != f"helper process {pid}"
    finally:
        hasher.close()


def failing_hash(self, password, timeout=None):
    raise HashingUnavailable("the hashing helper exited", retry=True)


def test_a_rehash_that_cannot_be_done_now_does_not_refuse_a_right_password(daemond_factory, monkeypatch):
    d = start(daemond_factory)
    register(d, "alice", "password-1")[0].close()
    store = plugin_of(d).store
    old = argon2.PasswordHasher(time_cost=1, memory_cost=16, parallelism=1).hash("password-1")
    store.set_hash("alice", old)  # stored with other parameters: redone at the next login
    monkeypatch.setattr(Hasher, "hash", failing_hash)
    client, _ = connect(d)
    assert client.command("/login alice password-1")[1].startswith("+OK logged in as alice ")
    client.close()
    assert store.user("alice").hash == old  # kept, to be redone at a later login
    assert "could not rehash the password of alice (the hashing helper exited); kept as it is until the " \
           "next login" in log_of(d)


def test_an_operator_command_that_cannot_hash_gets_a_clear_error(daemond_factory, monkeypatch):
    d = start(daemond_factory)
    monkeypatch.setattr(Hasher, "hash", failing_hash)
    with pytest.raises(CommandError, match=r"^the password cannot be hashed just now \(the hashing helper "
                                           r"exited\); try again$"):
        run_command(d, "users", action="add", name="carol", password="operator-pw")
    assert plugin_of(d).store.user("carol") is None


def test_needs_rehash_tells_stored_hashes_apart():
    hasher = Hasher(Argon2Params(**CHEAP_ARGON2), 1)
    try:
        assert hasher.needs_rehash(hasher.hash("password-1")) is False
        assert hasher.needs_rehash(hasher.dummy_hash) is False
        assert hasher.needs_rehash("$argon2id$garbage") is True
        for params in ({"memory_cost": 16}, {"time_cost": 2}, {"parallelism": 2, "memory_cost": 16},
                       {"salt_len": 24}, {"hash_len": 16}):
            other = argon2.PasswordHasher(**{**CHEAP_ARGON2, **params}).hash("password-1")
            assert hasher.needs_rehash(other) is True, params
        argon2i = argon2.PasswordHasher(**CHEAP_ARGON2, type=argon2.Type.I).hash("password-1")
        assert hasher.needs_rehash(argon2i) is True
    finally:
        hasher.close()
