"""The ``plugins.auth`` section of the config."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from daemon import Field, Schema
from plugins.auth.hashing import OWASP_MINIMUM, Argon2Params

_ARGON2_LIMITS = {"time_cost": (1, 100), "memory_cost": (8, 4 * 1024 * 1024), "parallelism": (1, 64)}


def _check_argon2(value: dict[str, Any]) -> str | None:
    for key, item in value.items():
        if key not in _ARGON2_LIMITS:
            return f"unknown key {key!r} (known keys: {', '.join(_ARGON2_LIMITS)})"
        low, high = _ARGON2_LIMITS[key]
        if not isinstance(item, int) or isinstance(item, bool) or not low <= item <= high:
            return f"{key} must be an integer from {low} to {high}, not {item!r}"
    params = {**OWASP_MINIMUM, **value}
    if params["memory_cost"] < 8 * params["parallelism"]:
        return "memory_cost must be at least 8 KiB per lane (8 * parallelism)"
    return None


def _check_require_tls(value: Any) -> str | None:
    if value == "auto" or value is True or value is False:
        return None
    return f"must be auto, true or false, not {value!r}"


SCHEMA = Schema(
    {
        "database": Field(str, default="auth.db", help="the users store (SQLite); relative to the state directory"),
        "allow_register": Field(bool, default=True, help="let clients create users with /register"),
        "register_per_address": Field(int, default=5, nullable=True, min=1,
                                      help="registrations from one address within register_window; null: no limit"),
        "register_total": Field(int, default=60, nullable=True, min=1,
                                help="registrations from all addresses within register_window; null: no limit"),
        "register_window": Field(float, default=600.0, min=1.0, help="seconds over which registrations are counted"),
        "min_password": Field(int, default=8, min=1, max=1024),
        "max_password": Field(int, default=1024, min=8, max=65536,
                              help="longer passwords are refused before anything is hashed"),
        "login_timeout": Field(float, default=30.0, min=0.1, help="seconds a client has to log in"),
        "max_attempts": Field(int, default=5, min=1, help="failed logins per name or address within attempt_window"),
        "attempt_window": Field(float, default=60.0, min=0.1),
        "cooldown": Field(float, default=60.0, min=0.0, help="seconds a throttled name or address is refused"),
        "max_sessions_per_user": Field(int, default=10, nullable=True, min=1,
                                       help="sessions one user may have logged in at once, on every listener; "
                                            "null: no limit"),
        "greet_known": Field(bool, default=True,
                             help="greet a client with the name last logged in from its address (hello again, NAME)"),
        "token_ttl": Field(float, default=86400.0, min=1.0, help="seconds a login token stays valid"),
        "argon2": Field(dict, default=dict(OWASP_MINIMUM), check=_check_argon2,
                        help="argon2id time_cost, memory_cost (KiB), parallelism"),
        "require_tls": Field(object, default="auto", check=_check_require_tls,
                             normalize=lambda v: v.lower() if isinstance(v, str) else v,
                             help="refuse passwords and tokens over plaintext: true, false, or auto "
                                  "(refuse unless the peer is loopback)"),
        "cert_login": Field(bool, default=False,
                            help="log a client in by its verified TLS client certificate, whose subject CN "
                                 "must be a registered user (the listener's tls.client_cert and client_ca)"),
        "max_hashing": Field(int, default=None, nullable=True, min=1, max=256,
                             help="hashes computed at once; null: one per CPU left for hashing "
                                  "(divided by argon2 parallelism)"),
        "max_hash_queue": Field(int, default=64, nullable=True, min=0,
                                help="requests that may wait for a hashing slot ahead of another; beyond it, "
                                     "-ERR busy and nothing is hashed; null: no limit"),
    }
)


@dataclass(frozen=True)
class AuthSettings:
    """The validated section; replaced whole at a reload, so sessions read one consistent set."""

    database: str
    allow_register: bool
    register_per_address: int | None
    register_total: int | None
    register_window: float
    min_password: int
    max_password: int
    login_timeout: float
    max_attempts: int
    attempt_window: float
    cooldown: float
    max_sessions_per_user: int | None
    greet_known: bool
    token_ttl: float
    argon2: Argon2Params
    max_hashing: int
    max_hash_queue: int | None
    require_tls: Any
    cert_login: bool

    @classmethod
    def from_section(cls, section: dict[str, Any], cpus: set[int] | None = None) -> AuthSettings:
        """``cpus``: where hashes run (the daemon's ``native_cpus()``); None: every CPU."""
        values = {**SCHEMA.defaults(), **section}
        values["argon2"] = Argon2Params(**{**OWASP_MINIMUM, **values["argon2"]})
        if values["max_hashing"] is None:
            values["max_hashing"] = default_max_hashing(values["argon2"].parallelism, cpus)
        return cls(**values)


def default_max_hashing(parallelism: int, cpus: set[int] | None = None) -> int:
    """One hash per CPU hashing may use: a hash with parallelism 1 keeps one CPU busy,
    so more at once only adds memory (memory_cost each) and makes every login slower."""
    return max(1, len(cpus or os.sched_getaffinity(0)) // parallelism)
