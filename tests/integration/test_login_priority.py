"""tuning.login_nice: connections not logged in yet run at a low priority, and return at login.

The accepting thread of a login-gated listener runs at ``tuning.login_nice`` (19), the
sessions it starts inherit that, and a session goes back to the daemon's own priority when it
logs in. Only where a thread may go back up: CAP_SYS_NICE, or an RLIMIT_NICE that allows it
(systemd's ``LimitNICE=+0``); otherwise nothing is lowered and the log says why.
"""

from __future__ import annotations

import os
import pwd
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from daemon.testing import LineClient
from plugins.auth.dialogue import token_digest
from plugins.auth.store import UserStore
from tests.support.auth import CHEAP_ARGON2, auth_settings
from tests.support.process import installed
from tests.support.robustness import wait_until


def nice_of(tid: int, pid: int | None = None) -> int:
    """A thread's nice value, from /proc (field 19 of stat)."""
    stat = Path(f"/proc/{pid or os.getpid()}/task/{tid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


CAP_SYS_NICE = 23


def may_go_back_up() -> bool:
    """Whether this process's threads may raise their priority back to where they started:
    CAP_SYS_NICE (root in a container may lack it), or an RLIMIT_NICE that allows it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:") and int(line.split()[1], 16) >> CAP_SYS_NICE & 1:
            return True
    return resource.getrlimit(resource.RLIMIT_NICE)[1] >= 20 - os.getpriority(os.PRIO_PROCESS, 0)


needs_renice = pytest.mark.skipif(not may_go_back_up(), reason="needs root, or RLIMIT_NICE that allows nice 0 again")
#: it lowers threads only where the Python threads have a CPU without password hashing
needs_two_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning only happens with two CPUs or more")


def two_listeners(daemond_factory, **tuning):
    return daemond_factory({"login": {"plugins": ["auth", "echo"]}, "e": {"plugins": ["echo"]}},
                           {"auth": auth_settings()}, **({"tuning": tuning} if tuning else {}))


def accepting(d, name):
    return d.daemon.listeners[name]._thread


def only_session(d, listener):
    (session,) = wait_until(lambda: d.daemon.sessions(listener), 5)
    return session


@needs_two_cpus
@needs_renice
def test_a_connection_runs_at_login_nice_until_it_logs_in_then_at_the_daemons_priority(daemond_factory):
    base = os.getpriority(os.PRIO_PROCESS, 0)
    d = two_listeners(daemond_factory)
    assert wait_until(lambda: nice_of(accepting(d, "login").native_id) == 19, 5)  # set by the thread as it starts
    assert nice_of(accepting(d, "e").native_id) == base  # echo asks for no login: left alone
    with LineClient(*d.address("login")) as client, LineClient(*d.address("e")) as echo:
        assert client.read_line().startswith("+OK")
        waiting = only_session(d, "login")
        assert nice_of(waiting.thread.native_id) == 19
        echo.send(b"x")
        assert echo.read_bytes(1) == b"x"
        assert nice_of(only_session(d, "e").thread.native_id) == base

        assert client.command("/register ann correct-horse-1")[1].startswith("+OK")
        assert nice_of(waiting.thread.native_id) == base  # served now: the same thread, back up
        client.send(b"after\n")
        assert client.read_line() == "after"  # echo behind auth: served at its new priority
        assert nice_of(accepting(d, "login").native_id) == 19  # the next one waits low again


@needs_two_cpus
@needs_renice
def test_a_reload_can_turn_it_off_and_on_and_follows_the_plugins(daemond_factory):
    base = os.getpriority(os.PRIO_PROCESS, 0)
    d = two_listeners(daemond_factory, login_nice=10)
    assert wait_until(lambda: nice_of(accepting(d, "login").native_id) == 10, 5)
    report = d.reconfigure(lambda doc: doc["tuning"].update(login_nice=None))
    assert any("login_nice None" in change for change in report["changes"]), report
    assert nice_of(accepting(d, "login").native_id) == base
    with LineClient(*d.address("login")) as client:
        assert client.read_line().startswith("+OK")
        session = only_session(d, "login")
        assert nice_of(session.thread.native_id) == base
    d.reconfigure(lambda doc: doc["tuning"].update(login_nice=15))
    assert nice_of(accepting(d, "login").native_id) == 15
    d.reconfigure(lambda doc: doc["listeners"]["login"].update(plugins=["echo"]))  # no login asked now
    assert nice_of(accepting(d, "login").native_id) == base
    d.reconfigure(lambda doc: doc["listeners"]["e"].update(plugins=["auth", "echo"]))  # and here it is
    assert nice_of(accepting(d, "e").native_id) == 15


@needs_two_cpus
@needs_renice
def test_connections_accepted_while_a_reload_changes_it_end_up_where_their_plugins_say(daemond_factory, monkeypatch):
    # A reload changes the listener's plugins, then (later) its priority; connections accepted
    # in between inherit the accepting thread's old priority and must set their own.
    base = os.getpriority(os.PRIO_PROCESS, 0)
    d = two_listeners(daemond_factory)
    assert wait_until(lambda: nice_of(accepting(d, "login").native_id) == 19, 5)
    listener = d.daemon.listeners["login"]
    real = listener.policy_changed
    held = threading.Event()
    go = threading.Event()

    def late_prioritize():
        held.set()
        go.wait(10)  # the reload is between the new plugins and the new priority
        real()

    monkeypatch.setattr(listener, "policy_changed", late_prioritize)
    reload = threading.Thread(target=d.reconfigure, args=(lambda doc: doc["listeners"]["login"].update(plugins=["echo"]),))
    reload.start()
    assert held.wait(10)
    with LineClient(*d.address("login")) as between:
        between.send(b"x")
        assert between.read_bytes(1) == b"x"  # echo, no login: served at the daemon's priority
        session = only_session(d, "login")
        assert nice_of(session.thread.native_id) == base
        go.set()
        reload.join(10)
    assert nice_of(accepting(d, "login").native_id) == base


@needs_two_cpus
@needs_renice
def test_a_spare_thread_takes_the_priority_of_each_connection_it_serves(daemond_factory):
    # Threads outlive their connections (tuning.spare_threads): one that served echo at the
    # daemon's priority serves a login at 19, and one whose connection ended at 19 without a
    # login waits, and serves echo, at the daemon's priority again.
    base = os.getpriority(os.PRIO_PROCESS, 0)
    d = two_listeners(daemond_factory)
    threads = []
    for listener, wanted in (("e", base), ("login", 19), ("e", base), ("login", 19)):
        with LineClient(*d.address(listener)) as client:
            if listener == "e":
                client.send(b"x")
                assert client.read_bytes(1) == b"x"
            else:
                assert client.read_line().startswith("+OK")  # the greeting; then gone without a login
            session = only_session(d, listener)
            assert nice_of(session.thread.native_id) == wanted, listener
            threads.append(session.thread)
        assert wait_until(lambda: d.daemon.threads.counts()[1] == 1, 5)
        assert session.thread is None  # its thread may serve another connection now
        assert nice_of(threads[-1].native_id) == base  # it waits at the daemon's priority, whatever comes
    assert len(set(threads)) == 1 and d.daemon.threads.reused == 3


@needs_two_cpus
@needs_renice
def test_a_hashing_helper_started_by_a_connection_not_logged_in_runs_at_the_daemons_priority_plus_10():
    from plugins.auth.hashing import Argon2Params
    from plugins.auth.hashing.helper import HASHING_NICE, Helper

    base = os.getpriority(os.PRIO_PROCESS, 0)
    ended = threading.Event()
    made = []

    def as_a_waiting_connection():
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        made.append(Helper(sys.executable, Argon2Params(**CHEAP_ARGON2), 1, None, lambda helper: ended.set()))

    starter = threading.Thread(target=as_a_waiting_connection)
    starter.start()
    starter.join(30)
    (helper,) = made
    try:
        assert nice_of(helper.pid, helper.pid) == min(19, base + HASHING_NICE)
        watcher = next(t for t in threading.enumerate() if t.name == f"auth-helper-{helper.pid}")
        assert wait_until(lambda: nice_of(watcher.native_id) == base, 5)  # it starts the next helper
    finally:
        helper.kill()
    assert ended.wait(10)


def test_without_pinning_nothing_is_lowered_and_the_log_says_why(daemond_factory, caplog):
    # Spread over the CPUs, a thread at 19 holding the GIL would be preempted by password
    # hashing at +10 and every connection would wait for it (bench/README-reliability.md, item 9).
    base = os.getpriority(os.PRIO_PROCESS, 0)
    d = two_listeners(daemond_factory, pin_threads=False)
    with LineClient(*d.address("login")) as client:
        assert client.read_line().startswith("+OK")
        session = only_session(d, "login")
        assert nice_of(session.thread.native_id) == base
    assert nice_of(accepting(d, "login").native_id) == base
    assert "tuning.login_nice: connections not logged in run at the daemon's own priority: the threads " \
           "that run Python do not have a CPU of their own" in caplog.text


# -- as an unprivileged user, as systemd runs it ------------------------------------------------------

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]

#: bob's login token in the store start_unprivileged makes: a login that needs no hashing helper
#: (one run as nobody may not be able to run this venv's interpreter, e.g. one under /root)
TOKEN = "token-of-bob"


def users_store(state: Path) -> None:
    """A users store in ``state`` with bob and his TOKEN, owned by whoever runs the daemon."""
    store = UserStore(state / "auth.db")
    store.add_user("bob", "bob", "$argon2id$unused", time.time())
    store.record_login("bob", "127.0.0.1", time.time(), token=(token_digest(TOKEN), time.time() + 3600))
    store.close()
    if os.geteuid() == 0:
        for path in state.glob("auth.db*"):
            os.chown(path, pwd.getpwnam("nobody").pw_uid, -1)


def start_unprivileged(directory: Path, caps: list[str]) -> subprocess.Popen | None:
    """daemond with a ``login: [auth, echo]`` listener as nobody (we are root) with no RLIMIT_NICE
    and the capabilities ``caps``; not root, as ourselves if we cannot raise priority either."""
    directory.chmod(0o755)
    (directory / "state").mkdir(mode=0o700)  # the daemon's own: no one else may write in it
    users_store(directory / "state")
    if os.geteuid() == 0:
        os.chown(directory / "state", pwd.getpwnam("nobody").pw_uid, -1)
    config = directory / "d.yaml"
    config.write_text(f"state_dir: {directory / 'state'}\nlogging: {{file: null}}\n"
                      f"plugins: {{auth: {{argon2: {CHEAP_ARGON2}}}}}\n"
                      "listeners:\n  login: {port: 0, plugins: [auth, echo]}\n".replace("'", ""))
    config.chmod(0o644)
    if os.geteuid() == 0 and shutil.which("setpriv") and shutil.which("prlimit"):
        # RLIMIT_NICE 0, as a login's default: no way back up without the capability
        command = ["prlimit", "--nice=0:0", *NOBODY, *caps, installed("daemond")]
        probe = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=30)
        if probe.returncode != 0:
            pytest.skip(f"cannot run this venv's daemond as nobody {' '.join(caps)} here: {probe.stderr.strip()[:200]}")
    elif not caps and not may_go_back_up():
        command = [installed("daemond")]
    else:
        return None
    with open(directory / "stderr.log", "wb") as out:
        return subprocess.Popen([*command, "-c", str(config), "--no-console"], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=out)


def nices(pid: int) -> list[int]:
    """The nice values of a process's threads (one that ends meanwhile is left out)."""
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            found.append(nice_of(int(tid), pid))
        except FileNotFoundError:
            pass
    return sorted(found)


# The unit's LimitNICE=+0 (RLIMIT_NICE 20) is the other way to allow it; raising a hard limit
# needs CAP_SYS_RESOURCE, which test machines may lack, so it is AmbientCapabilities= here.
@needs_two_cpus
@pytest.mark.parametrize("caps", [[], ["--inh-caps=+sys_nice", "--ambient-caps=+sys_nice"]],
                         ids=["unprivileged", "CAP_SYS_NICE"])
def test_unprivileged_it_lowers_only_what_it_can_raise_again(caps):
    base = os.getpriority(os.PRIO_PROCESS, 0)  # the daemon's own: it inherits ours
    directory = Path(tempfile.mkdtemp(prefix="daemond-nice-"))  # not under /root: nobody must read it
    try:
        proc = start_unprivileged(directory, caps)
        if proc is None:
            pytest.skip("needs root (and setpriv) to run daemond as nobody" + (" with CAP_SYS_NICE" if caps else ""))
        log = directory / "stderr.log"
        try:
            def listening():
                text = log.read_text(errors="replace")
                assert proc.poll() is None, text
                found = re.search(r"listening on (\S+):(\d+) \(login\)", text)
                return found and "daemond: ready: " in text and (found.group(1), int(found.group(2)))

            address = wait_until(listening, 15)
            assert address, log.read_text()
            idle = wait_until(lambda: (n := nices(proc.pid)).count(19) == (1 if caps else 0) and n, 5)  # the accepting thread
            assert idle, nices(proc.pid)
            with LineClient(*address) as client:
                assert client.read_line().startswith("+OK")
                waiting = wait_until(lambda: len(n := nices(proc.pid)) > len(idle) and n, 5)
                assert waiting, (idle, nices(proc.pid))
                if not caps:
                    # it could not go back up, so nothing went down; the log says why and what to do
                    assert set(idle) == set(waiting) == {base}, (idle, waiting)
                    text = log.read_text()
                    assert "tuning.login_nice: connections not logged in run at the daemon's own priority" in text
                    assert "LimitNICE=+0" in text
                else:
                    assert waiting.count(19) == 2, (idle, waiting)  # accepting + this one
                    assert "connections not logged in run at nice 19 until they log in" in log.read_text()
                assert client.command(f"/login-token {TOKEN}")[1] == "+OK logged in as bob", log.read_text()
                after = wait_until(lambda: (n := nices(proc.pid)).count(19) == (1 if caps else 0) and n, 5)
                assert after and after.count(base) == len(after) - (1 if caps else 0), nices(proc.pid)  # back, in both
                client.send(b"served\n")
                assert client.read_line() == "served"
        finally:
            proc.terminate()
            proc.wait(10)
        assert "Traceback" not in log.read_text()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
