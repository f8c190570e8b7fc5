"""Failed-login throttling (issue 3, "Must have" 5)."""

from __future__ import annotations

from plugins.auth.throttle import Throttle
from tests.support.auth import connect, plugin_of, register, start

BAD = "-ERR bad-credentials wrong name or password"


def attempt(d, line, source):
    client, _ = connect(d, source=source)
    try:
        return client.command(line)[1]
    finally:
        client.close()


def test_failures_for_one_name_from_many_addresses_block_that_name(daemond_factory):
    d = start(daemond_factory, max_attempts=3)
    register(d, "alice", "password-1")[0].close()
    register(d, "bob", "password-2")[0].close()
    for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):  # one failure per address: no address is blocked
        assert attempt(d, "/login alice wrong-guess", source) == BAD
    # alice is blocked, even with her right password, even as "ALICE", from a new address …
    assert attempt(d, "/login alice password-1", "127.0.0.5").startswith(
        "-ERR too-many-attempts too many failed logins for this name; try again in ")
    assert attempt(d, "/login ALICE password-1", "127.0.0.6").startswith("-ERR too-many-attempts ")
    # … in the prompt flow too …
    client, _ = connect(d, source="127.0.0.7")
    assert client.command("alice")[1] == "+OK password for alice?"
    assert client.command("password-1")[1].startswith("-ERR too-many-attempts ")
    client.close()
    # … while other names and those addresses are fine
    assert attempt(d, "/login bob password-2", "127.0.0.2").startswith("+OK logged in as bob")


def test_failures_from_one_address_block_that_address(daemond_factory):
    d = start(daemond_factory, max_attempts=3)
    register(d, "alice", "password-1")[0].close()
    client, _ = connect(d, source="127.0.0.8")
    for name in ("x1", "x2", "x3"):  # unknown names count as much as wrong passwords
        assert client.command(f"/login {name} whatever-pw")[1] == BAD
    _, final = client.command("/login alice password-1")
    assert final.startswith("-ERR too-many-attempts too many failed logins from 127.0.0.8; try again in ")
    assert client.command("/login-token anything")[1].startswith("-ERR too-many-attempts ")
    client.close()
    assert attempt(d, "/login alice password-1", "127.0.0.9").startswith("+OK logged in as alice")
    status = plugin_of(d).daemond_status(daemon=d.daemon.api)
    assert status["throttled"] == 2
    assert status["throttled_addresses"] == 1
    log = (d.config.state_dir / "daemond.log").read_text()
    assert "login failed: x3 from 127.0.0.8 (no such user); now throttled" in log
    assert "login refused (throttled address): name alice from 127.0.0.8" in log


def test_bad_tokens_count_against_the_address(daemond_factory):
    d = start(daemond_factory, max_attempts=2)
    client, _ = connect(d, source="127.0.0.10")
    assert client.command("/login-token guess-1")[1].startswith("-ERR bad-token ")
    assert client.command("/login-token guess-2")[1].startswith("-ERR bad-token ")
    assert client.command("/login-token guess-3")[1].startswith("-ERR too-many-attempts ")
    client.close()


def test_a_right_password_clears_the_names_failures(daemond_factory):
    d = start(daemond_factory, max_attempts=3)
    register(d, "alice", "password-1")[0].close()
    for round_ in range(3):  # 2 typos then success, three times over (from fresh addresses each time)
        for typo in range(2):
            assert attempt(d, "/login alice typo-typo", f"127.0.{round_ + 10}.{typo + 1}") == BAD
        assert attempt(d, "/login alice password-1", f"127.0.{round_ + 10}.9").startswith("+OK logged in")


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_throttle_window_and_cooldown():
    clock = FakeClock()
    throttle = Throttle(max_attempts=3, window=60, cooldown=30, clock=clock)
    assert throttle.failure("k") is False
    clock.now += 61  # the first failure left the window
    assert throttle.failure("k") is False
    assert throttle.failure("k") is False
    assert throttle.blocked_for("k") == 0
    assert throttle.failure("k") is True
    assert throttle.blocked_for("k") == 30
    assert throttle.blocked_count() == 1
    clock.now += 29.5
    assert throttle.blocked_for("k") == 0.5
    clock.now += 0.5
    assert throttle.blocked_for("k") == 0
    assert throttle.failure("k") is False  # a fresh start after the cooldown


def test_throttle_reconfigure_applies_at_once():
    clock = FakeClock()
    throttle = Throttle(max_attempts=5, window=60, cooldown=30, clock=clock)
    throttle.failure("k")
    throttle.configure(max_attempts=2, window=60, cooldown=10)
    assert throttle.failure("k") is True
    assert throttle.blocked_for("k") == 10
