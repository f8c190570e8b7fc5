"""Issue 19, items 2, 4 and 16: registration floods, one address or one user filling a
login listener, and the smaller leaks (the greeting's name, password normalisation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import unicodedata
from contextlib import contextmanager

from plugins.auth.settings import AuthSettings
from tests.support.auth import connect, plugin_of, register, start
from tests.support.robustness import ENV, ROOT, measured, wait_until

#: real (OWASP minimum) argon2 cost: a flood of registrations must cost what it costs in production
REAL_ARGON2 = {"time_cost": 2, "memory_cost": 19456, "parallelism": 1}


@contextmanager
def registration_flood(d, addresses: int = 45):
    """``addresses`` clients (127.0.0.2 onwards), in another process, registering new names in a
    loop while the block runs; yields a dict that then holds a count of their final lines."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.flood", str(d.port("login")), str(addresses)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, **ENV})
    finals: dict[str, int] = {}
    try:
        yield finals
    finally:
        out, _ = proc.communicate("", timeout=120)
        finals.update(json.loads(out))


def timed_login(d, name: str, password: str) -> tuple[float, str]:
    client = d.client("login", source="127.0.0.200", timeout=60)
    try:
        client.read_line(timeout=60)
        start = time.monotonic()
        final = client.command(f"/login {name} {password}", timeout=60)[1]
        return time.monotonic() - start, final
    finally:
        client.close()


def start_flooded(daemond_factory, **auth):
    settings = {"argon2": dict(REAL_ARGON2), "max_hashing": 1, "login_timeout": 60, **auth}
    return daemond_factory({"login": {"plugins": ["auth", "echo"]}}, {"auth": settings})


def run_flood(d, refusal: str, seconds: float = 3.0):
    """Register alice, time a quiet login, then flood and time logins under it. The flood is in
    full swing once auth's status counts ``refusal`` (a loaded machine may take longer to get there)."""
    register(d, "alice", "alice-password")[0].close()
    quiet, final = timed_login(d, "alice", "alice-password")
    assert final.startswith("+OK logged in as alice "), final
    latencies = []
    with registration_flood(d) as finals:
        time.sleep(seconds)
        assert wait_until(lambda: d.daemon.status()["plugins"]["auth"][refusal], 120, 0.2), \
            d.daemon.status()["plugins"]["auth"]
        for _ in range(3):
            latency, final = timed_login(d, "alice", "alice-password")
            assert final.startswith("+OK logged in as alice "), final
            latencies.append(latency)
    return quiet, latencies, finals


def test_a_registration_flood_is_limited_and_logins_go_first(daemond_factory):
    # Bound: plugins.auth.register_per_address (5) and register_total (60) within register_window (600 s).
    d = start_flooded(daemond_factory)
    quiet, latencies, finals = run_flood(d, "registrations_refused")
    users = d.daemon.status()["plugins"]["auth"]["users"]
    refused = finals.get("-ERR too-many-registrations", 0)
    measured(2, f"login under a 45-address registration flood (defaults): {max(latencies):.3f}s "
                f"(quiet {quiet:.3f}s); {sum(finals.values())} /register, {refused} refused, {users} users")
    assert users <= 1 + 60  # alice, and the global limit
    assert refused >= sum(finals.values()) - 60 and refused, finals


def test_without_registration_limits_logins_still_go_before_registrations(daemond_factory):
    # Bound: plugins.auth.max_hash_queue (64; 8 here): beyond it, -ERR busy and nothing is hashed.
    # Logins of existing users take hashing slots before waiting registrations.
    d = start_flooded(daemond_factory, register_per_address=None, register_total=None, max_hash_queue=8)
    quiet, latencies, finals = run_flood(d, "busy")
    busy = finals.get("-ERR busy", 0)
    measured(2, f"login under a 45-address registration flood (no registration limits): {max(latencies):.3f}s "
                f"(quiet {quiet:.3f}s); {sum(finals.values())} /register, {busy} busy")
    assert busy, finals
    assert set(finals) <= {"+OK registered", "-ERR busy"}, finals


# -- item 4: one address, or one user, filling a login listener --------------------------


def token_login(d, token: str, source: str | None = None):
    """A client logged in with /login-token (no hashing); returns (client, final line)."""
    client, _ = connect(d, source)
    return client, client.command(f"/login-token {token}")[1]


def test_one_user_holds_at_most_max_sessions_per_user(daemond_factory):
    # Bound: plugins.auth.max_sessions_per_user (10): one more login gets -ERR too-many-sessions
    # and the connection stays, not logged in; a session that ends frees its place.
    d = start(daemond_factory)
    first, token = register(d, "alice", "alice-password")
    clients = [first]
    for _ in range(9):
        client, final = token_login(d, token, source="127.0.0.2")
        assert final == "+OK logged in as alice", final
        clients.append(client)
    extra, final = token_login(d, token, source="127.0.0.3")
    assert final.startswith("-ERR too-many-sessions "), final
    assert extra.command("/login alice alice-password")[1].startswith("-ERR too-many-sessions ")
    assert extra.command("/quit")[1] == "+OK bye"  # the refused connection lived on, not logged in
    extra.close()
    clients.pop().close()
    assert wait_until(lambda: plugin_of(d).user_sessions.of("alice") == 9)
    client, final = token_login(d, token)
    assert final == "+OK logged in as alice", final
    for c in clients + [client]:
        c.close()
    assert wait_until(lambda: plugin_of(d).user_sessions.of("alice") == 0)


def test_one_address_cannot_fill_a_login_listener(daemond_factory):
    # Bound: listeners.NAME.max_logged_in_per_ip (50) with max_unauthenticated_per_ip (20):
    # one address holds at most 70 of the listener's max_connections (1000 here as by
    # default; max_per_ip left null), however many accounts it has.
    d = start(daemond_factory)
    tokens = []
    for i in range(55):
        client, token = register(d, f"user{i}", "user-password", source=f"127.0.1.{1 + i}")
        client.close()
        tokens.append(token)
    held, refused = [], []
    for token in tokens:
        client, final = token_login(d, token, source="127.0.0.2")
        (held if final.startswith("+OK logged in as ") else refused).append((client, final))
    assert len(held) == 50
    assert all(f.startswith("-ERR too-many-connections too many sessions logged in from 127.0.0.2 (50)")
               for _, f in refused), refused
    for client, _ in refused:
        client.expect_closed()  # closed, its login taken back
    other, final = token_login(d, tokens[-1], source="127.0.0.3")  # everyone else still gets in
    assert final.startswith("+OK logged in as user54"), final
    for client, _ in held + [(other, None)]:
        client.close()


def test_the_shipped_config_caps_every_login_listener():
    # Bound: etc/daemond.yaml as shipped: every login-gated listener has a per-address cap for
    # connections not logged in and for sessions logged in, and auth a per-user session cap.
    from daemon.config import load_config
    from daemon.loader import PluginLoader

    config = load_config(ROOT / "etc" / "daemond.yaml", PluginLoader())
    gated = [lst for lst in config.listeners.values() if "auth" in lst.plugins]
    assert gated
    for listener in gated:
        assert listener.max_unauthenticated_per_ip is not None
        assert listener.max_logged_in_per_ip is not None or listener.max_per_ip is not None
        assert min(filter(None, (listener.max_logged_in_per_ip, listener.max_per_ip))) < listener.max_connections
    auth = AuthSettings.from_section(config.plugin_settings.get("auth") or {})
    assert auth.max_sessions_per_user is not None
    assert auth.register_per_address is not None and auth.register_total is not None


# -- item 16: the greeting's name, and what a password is --------------------------------


def test_greet_known_false_names_nobody_in_the_greeting(daemond_factory):
    # Bound: plugins.auth.greet_known (true keeps "hello again, NAME"; false greets all alike).
    for greet_known, expected in ((True, "+OK hello again, alice; "), (False, "+OK welcome; ")):
        d = start(daemond_factory, greet_known=greet_known)
        register(d, "alice", "alice-password")[0].close()
        client, greeting = connect(d)
        assert greeting.startswith(expected), greeting
        client.close()
        d.stop()


def test_passwords_keep_unicode_spaces_and_are_nfc_normalised(daemond_factory):
    # Bound: none to configure: only ASCII spaces are stripped at a password's ends, and the
    # NFC form is what is hashed.
    d = start(daemond_factory)
    for name, password, wrong in (("nbsp", "pass word\u00a0", "pass word"),
                                  ("ideo", "\u3000pass word", "pass word")):
        register(d, name, password)[0].close()
        client, _ = connect(d)
        assert client.command(f"/login {name} {wrong}")[1].startswith("-ERR bad-credentials ")
        assert client.command(f"/login {name}  {password}  ")[1].startswith(f"+OK logged in as {name} ")
        client.close()
    register(d, "cafe", "cafe\u0301-password")[0].close()  # decomposed é
    client, _ = connect(d)
    assert client.command("/login cafe caf\u00e9-password")[1].startswith("+OK logged in as cafe ")  # composed
    client.close()
    client, _ = connect(d)  # and at the prompt
    assert client.command("cafe")[1] == "+OK password for cafe?"
    assert client.command("cafe\u0301-password ")[1].startswith("+OK logged in as cafe ")
    client.close()


def test_hashes_of_unnormalised_passwords_are_accepted_once_and_rehashed(daemond_factory):
    # Bound: a stored hash made from the password as typed (not NFC), or stripped of Unicode
    # spaces (before this fix), logs in with it and is replaced by a hash of the NFC form.
    d = start(daemond_factory)
    store, hasher = plugin_of(d).store, plugin_of(d).hasher
    old = {"decomposed": ("cafe\u0301-password", "cafe\u0301-password"),
           "stripped": ("secret-password", "secret-password\u3000")}  # stored from, typed
    for name, (stored_from, _) in old.items():
        register(d, name, "placeholder-password")[0].close()
        assert store.set_hash(name, hasher.hash(stored_from))
    for name, (stored_from, typed) in old.items():
        client, _ = connect(d)
        assert client.command(f"/login {name} {typed}")[1].startswith(f"+OK logged in as {name} ")
        client.close()
        new_hash = store.user(name).hash
        assert hasher.verify(new_hash, unicodedata.normalize("NFC", typed))
        if stored_from != unicodedata.normalize("NFC", typed):
            assert not hasher.verify(new_hash, stored_from)
    client, _ = connect(d)
    assert client.command("/login stripped secret-password")[1].startswith("-ERR bad-credentials ")
    client.close()
