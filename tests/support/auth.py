"""Shared helpers for the auth plugin's tests."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.robustness import wait_until

#: Cheap argon2id parameters so the suite stays fast; the defaults are tested separately.
CHEAP_ARGON2 = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}

#: The suite registers many users from 127.0.0.1; tests of the registration limits set their own.
NO_REGISTRATION_LIMITS = {"register_per_address": None, "register_total": None}

TOKEN = re.compile(r"token=([A-Za-z0-9_-]+)$")


def auth_settings(**overrides):
    return {"argon2": dict(CHEAP_ARGON2), **NO_REGISTRATION_LIMITS, **overrides}


def start(daemond_factory, plugins=("auth", "echo"), state_dir=None, **settings):
    """An in-process daemon with one listener ``login`` serving ``plugins``; ``settings`` are auth's."""
    top = {"state_dir": state_dir} if state_dir else {}
    return daemond_factory({"login": {"plugins": list(plugins)}}, {"auth": auth_settings(**settings)}, **top)


def connect(running, source=None):
    """A client past the greeting; returns (client, greeting line)."""
    client = running.client("login", source=source)
    return client, client.read_line()


def plugin_of(running):
    return running.daemon.config.plugins["auth"].obj


def hashing_counts(running) -> dict[str, int]:
    """The argon2 hashes and verifications the auth plugin asked for so far (from status)."""
    status = running.daemon.status()["plugins"]["auth"]
    return {"hashes": status["hashes"], "verifications": status["verifications"]}


def commands_of(running):
    """The auth plugin's control commands by name, as the daemon's hook returns them."""
    found = {}
    for result in running.daemon.pm.hook.daemond_control_commands(daemon=running.daemon.api):
        for command in result or []:
            found[command.name] = command
    return found


def run_command(running, command_name, **args):
    """Run a control command the way the registry does: bind the raw arguments, then run."""
    command = commands_of(running)[command_name]
    return command.run(command.bind(args))


def register(running, name, password, source=None):
    """Register on a fresh connection and return (client, token); the client is logged in."""
    client, _ = connect(running, source)
    _, final = client.command(f"/register {name} {password}")
    assert final.startswith(f"+OK registered and logged in as {name} token="), final
    return client, TOKEN.search(final).group(1)


def logged_in_as(running, echo_client):
    """The user of an echo client's session, once an echo came back (the +OK comes before login completes)."""
    echo_client.send(b"sync\n")
    assert echo_client.read_line() == "sync"
    return session_of(running, echo_client).user


def session_of(running, client):
    """The daemon's session for this client connection."""
    port = client.sock.getsockname()[1]
    (session,) = [s for s in running.daemon.sessions() if s.peer[1] == port]
    return session


def gone(pid: int, within: float = 5.0) -> bool:
    """True once ``pid`` has exited and been reaped (a zombie still has a /proc entry)."""
    return wait_until(lambda: not Path(f"/proc/{pid}").exists(), within, 0.02)
