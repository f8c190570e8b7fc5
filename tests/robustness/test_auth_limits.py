"""Issue 19, items 2, 4 and 16: registration floods, one address or one user filling a
login listener, and the smaller leaks (the greeting's name, password normalisation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager

from tests.support.auth import connect, hashing_counts, plugin_of, register
from tests.support.robustness import ENV, measured

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


def run_flood(d, seconds: float = 3.0):
    """Register alice, time a quiet login, then flood and time logins under it."""
    register(d, "alice", "alice-password")[0].close()
    quiet, final = timed_login(d, "alice", "alice-password")
    assert final.startswith("+OK logged in as alice "), final
    latencies = []
    with registration_flood(d) as finals:
        time.sleep(seconds)  # the flood is in full swing
        for _ in range(3):
            latency, final = timed_login(d, "alice", "alice-password")
            assert final.startswith("+OK logged in as alice "), final
            latencies.append(latency)
    return quiet, latencies, finals


def test_a_registration_flood_is_limited_and_logins_go_first(daemond_factory):
    # Bound: plugins.auth.register_per_address (5) and register_total (60) within register_window (600 s).
    d = start_flooded(daemond_factory)
    quiet, latencies, finals = run_flood(d)
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
    quiet, latencies, finals = run_flood(d)
    busy = finals.get("-ERR busy", 0)
    measured(2, f"login under a 45-address registration flood (no registration limits): {max(latencies):.3f}s "
                f"(quiet {quiet:.3f}s); {sum(finals.values())} /register, {busy} busy")
    assert busy, finals
    assert set(finals) <= {"+OK registered", "-ERR busy"}, finals
