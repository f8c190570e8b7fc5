"""Items 3 and 4: slowloris before login, and the connection caps (global, per address, not logged in)."""

from __future__ import annotations

import threading
import time

from tests.support.auth import auth_settings
from tests.support.robustness import connect, loopback, measured, recv_all, wait_until


def conn_threads(listener: str) -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(f"conn-{listener}-"))


def test_300_slowloris_connections_are_all_closed_at_the_login_deadline_and_a_real_login_completes(daemond_factory):
    # Bound: plugins.auth.login_timeout (default 30 s; 3 s here). 300 clients from 15
    # addresses (20 each: max_unauthenticated_per_ip's default) dribble a byte a second;
    # each gets "-ERR timeout" and is closed at the deadline although it keeps sending.
    login_timeout = 3.0
    d = daemond_factory({"login": {"plugins": ["auth", "echo"]}}, {"auth": auth_settings(login_timeout=login_timeout)})
    address = d.address("login")
    started = time.monotonic()
    slow = [connect(address, source=loopback(i // 20)) for i in range(300)]
    for s in slow:
        s.setblocking(False)
    closed_after: dict[int, float] = {}
    received: dict[int, bytes] = {i: b"" for i in range(len(slow))}
    real_done = threading.Event()

    def real_login():  # however long the 300 take to be accepted before it on a loaded machine
        with d.client("login", timeout=60) as c:
            c.read_line()
            _, final = c.command("/register carol carol-password")
            assert final.startswith("+OK registered"), final
            c.send(b"ping\n")
            assert c.read_line() == "ping"
        real_done.set()

    real = threading.Thread(target=real_login, name="test-real-login")
    real.start()
    try:
        while len(closed_after) < len(slow) and time.monotonic() - started < login_timeout + 10:
            for i, s in enumerate(slow):
                if i in closed_after:
                    continue
                try:
                    s.send(b"x")  # one byte of a name that never ends
                except OSError:
                    pass
                try:
                    while chunk := s.recv(4096):
                        received[i] += chunk
                    closed_after[i] = time.monotonic() - started
                except BlockingIOError:
                    pass
                except OSError:
                    closed_after[i] = time.monotonic() - started
            time.sleep(0.5)
    finally:
        real.join(30)
        for s in slow:
            s.close()
    assert real_done.is_set()
    if closed_after:
        measured(3, f"{len(closed_after)} of 300 closed between {min(closed_after.values()):.2f} s "
                    f"and {max(closed_after.values()):.2f} s (login_timeout {login_timeout:g} s)")
    assert len(closed_after) == 300, f"{300 - len(closed_after)} connections still open"
    assert all(b"-ERR timeout" in data for data in received.values())
    # None before the deadline; the 0.5 s dribble loop and 2 cores bound the lateness.
    assert min(closed_after.values()) >= login_timeout - 0.1
    assert max(closed_after.values()) < login_timeout + 8


def test_global_cap_plus_50_refused_without_threads_and_accepted_again(daemond_factory):
    # Bound: listeners.NAME.max_connections (default 1000; 30 here). 50 more are closed
    # at once (echo: a bare close; a login or chat listener: one -ERR line), no thread.
    d = daemond_factory({"e": {"plugins": ["echo"], "max_connections": 30},
                         "l": {"plugins": ["auth", "echo"], "max_connections": 30, "max_unauthenticated_per_ip": None}},
                        {"auth": auth_settings()})
    for name, refusal in (("e", b""), ("l", None)):
        held = [connect(d.address(name)) for _ in range(30)]
        assert wait_until(lambda: d.daemon.listeners[name].connection_count() == 30)
        extra = [connect(d.address(name)) for _ in range(50)]
        for s in extra:
            data = recv_all(s)
            if refusal is None:
                lines = data.decode().splitlines()
                assert len(lines) == 1 and lines[0].startswith("-ERR too-many-connections listener is full"), lines
            else:
                assert data == refusal
            s.close()
        # a session is counted at accept; a spare thread takes its name as it wakes to serve it
        assert wait_until(lambda: conn_threads(name) == 30), conn_threads(name)
        assert d.daemon.listeners[name].refused == 50
        for s in held[:10]:
            s.close()
        assert wait_until(lambda: d.daemon.listeners[name].connection_count() == 20)
        again = [connect(d.address(name)) for _ in range(10)]
        assert wait_until(lambda: d.daemon.listeners[name].connection_count() == 30)
        assert d.daemon.listeners[name].refused == 50
        for s in held[10:] + again:
            s.close()


def test_not_logged_in_connections_are_capped_per_address_and_logins_free_their_place(daemond_factory):
    # Bound: listeners.NAME.max_unauthenticated_per_ip (default 20, like sshd's
    # PerSourceMaxStartups; 5 here) on listeners behind a login.
    d = daemond_factory({"login": {"plugins": ["auth", "echo"], "max_unauthenticated_per_ip": 5},
                         "e": {"plugins": ["echo"], "max_unauthenticated_per_ip": 5}},
                        {"auth": auth_settings()})
    address = d.address("login")
    waiting = [d.client("login", source="127.0.0.2") for _ in range(5)]
    for c in waiting:
        assert c.read_line().startswith("+OK")
    refused = connect(address, source="127.0.0.2")
    assert recv_all(refused).decode().startswith("-ERR too-many-connections too many connections not logged in from 127.0.0.2")
    refused.close()
    other = d.client("login", source="127.0.0.3")  # another address is not affected
    assert other.read_line().startswith("+OK")
    for i, c in enumerate(waiting):  # logged-in sessions never count against the cap
        _, final = c.command(f"/register user{i} password-{i}")
        assert final.startswith("+OK registered"), final
    more = [d.client("login", source="127.0.0.2") for _ in range(5)]
    for c in more:
        assert c.read_line().startswith("+OK")
    sixth = connect(address, source="127.0.0.2")
    assert recv_all(sixth).startswith(b"-ERR too-many-connections")
    sixth.close()
    # A listener without a login plugin ignores the setting.
    plain = [connect(d.address("e"), source="127.0.0.2") for _ in range(8)]
    for s in plain:
        s.sendall(b"x")
        assert s.recv(1) == b"x"
    for c in waiting + more + [other]:
        c.close()
    for s in plain:
        s.close()


def test_max_per_ip_caps_every_connection_from_an_address(daemond_factory):
    # Bound: listeners.NAME.max_per_ip (default off; the shipped config sets 50 for chat).
    d = daemond_factory({"e": {"plugins": ["echo"], "max_per_ip": 3}})
    held = [connect(d.address("e"), source="127.0.0.2") for _ in range(3)]
    for s in held:
        s.sendall(b"x")
        assert s.recv(1) == b"x"
    extra = connect(d.address("e"), source="127.0.0.2")
    assert recv_all(extra) == b""
    extra.close()
    with connect(d.address("e"), source="127.0.0.3") as s:
        s.sendall(b"y")
        assert s.recv(1) == b"y"
    held[0].close()
    assert wait_until(lambda: d.daemon.listeners["e"].connection_count() == 2)
    with connect(d.address("e"), source="127.0.0.2") as s:
        s.sendall(b"z")
        assert s.recv(1) == b"z"
    for s in held[1:]:
        s.close()
