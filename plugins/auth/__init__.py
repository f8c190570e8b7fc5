"""``auth``: users with passwords, in front of whatever follows it in a listener's plugin list.

On a listener with ``plugins: [auth, chat]`` (or ``[auth, echo]``) a client
must log in first: ``auth`` runs the login dialogue in ``daemond_session_open``
on the connection's thread, and only once a user is known does the next
plugin's ``daemond_session_open`` run and the connection's input reach it.
Bytes sent right behind the login line are passed on, not lost.

For other plugins (the public API):

* ``session.user`` — the logged-in name, spelled as registered (``"Alice"``),
  or ``None`` before login. Names are ASCII ``[A-Za-z0-9_.-]{1,32}`` and
  case-insensitive: compare them with ``.lower()``.
* ``daemond_session_login(session, user)`` — called, in list order, once
  the password (or token) checked out and *before* the login's ``+OK``:
  what it sends are data lines of that reply. It may refuse the login
  (``session.err(...)``, then raise ``SessionEnd``); auth then takes the
  login back from the users store (token, last login).

Another front end (IRC) logs its sessions in with the same users, throttles and
limits through the ``daemond_account_login`` hook (and ``daemond_account_exists``,
``daemond_account_logout``), documented in ``daemon/hookspecs.py``.

With ``cert_login: true``, a session whose verified TLS client certificate
(``session.tls.peer_cn``, from the public session API) names a registered user
is logged in at open, before the greeting, like SASL EXTERNAL.

The protocol is in docs/protocol.md; the settings are in etc/daemond.yaml.
A reload's new settings apply to connections made after it; a new
``database`` needs a restart (a warning says so).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

from daemon import PluginError, hookimpl
from plugins.auth.admin import control_commands
from plugins.auth.dialogue import LoginDialogue
from plugins.auth.hashing import OWASP_MINIMUM, Hasher
from plugins.auth.limits import RegistrationLimit, UserSessions
from plugins.auth.rules import name_key, name_problem
from plugins.auth.settings import SCHEMA, AuthSettings
from plugins.auth.shared import SharedRegistrationLimit, SharedThrottle, SharedUserStore
from plugins.auth.store import STORE_ERRORS, StoreError, UserStore
from plugins.auth.throttle import Throttle

__all__ = ["AuthPlugin"]


class AuthPlugin:
    """One per daemon: the users store, the hasher, the throttles, the limits and the counters."""

    def __init__(self):
        self.settings = AuthSettings.from_section({})
        self.hasher: Hasher | None = None
        self.store: UserStore | None = None
        s = self.settings
        self.names = Throttle(s.max_attempts, s.attempt_window, s.cooldown)
        self.addresses = Throttle(s.max_attempts, s.attempt_window, s.cooldown)
        self.registrations = RegistrationLimit(s.register_per_address, s.register_total, s.register_window)
        #: logged-in sessions per user key, on every listener (max_sessions_per_user)
        self.user_sessions = UserSessions()
        #: wall clock for the store's times and token expiry (tests may replace it)
        self.clock = time.time
        self.log = logging.getLogger("daemond.plugin.auth")
        # _counts_lock guards _counts (every session thread counts its logins)
        self._counts_lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def count(self, what: str) -> None:
        with self._counts_lock:
            self._counts[what] += 1

    # -- configuration and lifecycle ---------------------------------------------------

    @hookimpl
    def daemond_settings_schema(self):
        return SCHEMA

    @hookimpl
    def daemond_configure(self, settings: dict[str, Any], daemon) -> None:
        cpus = daemon.native_cpus()
        new = AuthSettings.from_section(settings, cpus)
        old, self.log = self.settings, daemon.logger("auth")
        if self.store is not None and new.database != old.database:
            self.log.warning("auth: database changed to %s; it takes effect at the next restart", new.database)
        if self.hasher is None or (new.argon2, new.max_hashing, cpus) != \
                (self.hasher.params, self.hasher.max_concurrent, self.hasher.cpus):
            old_hasher, self.hasher = self.hasher, Hasher(new.argon2, new.max_hashing, cpus, on_request=self.count,
                                                          max_waiting=new.max_hash_queue)
            if old_hasher is not None:
                old_hasher.close(wait=False)  # hashes under way finish; its helper then ends
            if self.store is not None:  # running (a reload): the first login should not wait for a helper
                self.hasher.start()
            if new.argon2.weaker_than_owasp():
                owasp = "m={memory_cost},t={time_cost},p={parallelism}".format(**OWASP_MINIMUM)
                self.log.warning("auth: argon2 parameters %s are weaker than OWASP's minimum (%s); "
                                 "fine for tests, not for real passwords", new.argon2, owasp)
        self.hasher.max_waiting = new.max_hash_queue
        for throttle in (self.names, self.addresses):
            throttle.configure(new.max_attempts, new.attempt_window, new.cooldown)
        self.registrations.configure(new.register_per_address, new.register_total, new.register_window)
        self.settings = new

    @hookimpl
    def daemond_cluster_ready(self) -> bool:
        return True  # users, tokens, throttles and registrations go to the cluster's Redis (shared.py)

    @hookimpl
    def daemond_start(self, daemon) -> None:
        cluster = daemon.cluster
        if cluster is not None:
            self._share(cluster)
            where = self.store.path
        else:
            where = daemon.resolve(self.settings.database)
            try:
                self.store = UserStore(where)
            except StoreError as exc:
                raise PluginError(str(exc)) from None
        self.hasher.start()
        try:
            users = self.store.counts(self.clock())["users"]
        except STORE_ERRORS:
            users = "?"
        self.log.info("auth: users store %s (%s users); argon2id %s, hashed in %s", where, users,
                      self.hasher.params, self.hasher.where())

    @hookimpl
    def daemond_cluster_import(self, daemon) -> list[str]:
        path = daemon.resolve(self.settings.database)
        if not path.exists():
            return [f"no users database at {path}: nothing to import"]
        try:
            source = UserStore(path)
        except StoreError as exc:
            raise PluginError(str(exc)) from None
        shared, now = SharedUserStore(daemon.cluster), self.clock()
        copied = already = tokens = 0
        try:
            for user, user_tokens, seen in source.export(now):
                if shared.import_user(user, user_tokens, seen, now):
                    copied += 1
                    tokens += len(user_tokens)
                else:
                    already += 1
        finally:
            source.close()
        return [f"{copied} users copied from {path} with {tokens} login tokens; "
                f"{already} already in the cluster, left as they are"]

    def _share(self, cluster) -> None:
        """Keep users, tokens, the throttles and the registration limit in the cluster's Redis."""
        s = self.settings
        self.store = SharedUserStore(cluster)
        self.names = SharedThrottle(cluster, "name", s.max_attempts, s.attempt_window, s.cooldown)
        self.addresses = SharedThrottle(cluster, "address", s.max_attempts, s.attempt_window, s.cooldown)
        self.registrations = SharedRegistrationLimit(cluster, s.register_per_address, s.register_total,
                                                     s.register_window)

    @hookimpl
    def daemond_stopped(self, daemon) -> None:
        if self.hasher is not None:
            self.hasher.close()
        if self.store is not None:
            self.store.close()
            self.store = None

    # -- sessions ----------------------------------------------------------------------

    @hookimpl
    def daemond_login_gate(self) -> bool:
        return True  # connections must log in here first (max_unauthenticated_per_ip applies)

    @hookimpl
    def daemond_session_open(self, session) -> None:
        LoginDialogue(self, session).run()

    @hookimpl
    def daemond_session_close(self, session, reason: str) -> None:
        key = session.state.pop("auth", None)  # the user's key while the session counts in user_sessions
        if key is not None:
            self.user_sessions.release(key)

    # -- accounts, for other front ends (IRC) --------------------------------------------

    @hookimpl
    def daemond_account_login(self, session, name: str, password: str):
        if self.store is None or session.user is not None:
            return None
        return LoginDialogue(self, session).account_login(name, password)

    @hookimpl
    def daemond_account_exists(self, name: str):
        if self.store is None:
            return None
        return name_problem(name) is None and self.store.exists(name_key(name))

    @hookimpl
    def daemond_account_logout(self, session) -> None:
        self.daemond_session_close(session, "logout")

    # -- control -----------------------------------------------------------------------

    @hookimpl
    def daemond_control_commands(self, daemon):
        return control_commands(self)

    @hookimpl
    def daemond_status(self, daemon) -> dict[str, Any]:
        with self._counts_lock:
            counts = dict(self._counts)
        status: dict[str, Any] = {key: counts.get(key, 0) for key in
                                  ("logins", "failed", "registrations", "throttled", "timeouts", "hashes",
                                   "verifications", "registrations_refused", "busy", "too_many_sessions")}
        try:
            status["throttled_names"] = self.names.blocked_count()
            status["throttled_addresses"] = self.addresses.blocked_count()
            if self.store is not None:
                status.update(self.store.counts(self.clock()))
        except STORE_ERRORS as exc:
            status["store"] = f"unavailable: {exc}"
        if self.hasher is not None:
            status["hashing"] = self.hasher.where()
            status["hash_queue"] = self.hasher.waiting()
        return status
