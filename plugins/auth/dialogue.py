"""The login dialogue, run on the connection's own thread before anything else sees it.

See docs/protocol.md ("Logging in") for what the client sees. Every command
line gets exactly one final ``+OK``/``-ERR`` line. A plain line starts the
prompt flow: it is taken as a name, and the next plain line as that name's
password (or the password chosen for a new name).
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import time
from typing import TYPE_CHECKING

from daemon import SessionEnd, plain_text, split_command
from plugins.auth.hashing import HasherBusy, HashingUnavailable, HashQueueFull, Priority
from plugins.auth.rules import legacy_password_forms, name_key, name_problem, normalized_password, password_problem
from plugins.auth.store import STORE_ERRORS, LoginRecord

if TYPE_CHECKING:  # pragma: no cover
    from daemon import Session
    from plugins.auth import AuthPlugin

#: Tokens are token_urlsafe(32): 43 characters. Anything much longer is not one of ours.
MAX_TOKEN = 128


def token_digest(token: str) -> str:
    """What the store keeps of a token: its SHA-256 (a token is 256 random bits, so no salt is needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class LoginDialogue:
    def __init__(self, plugin: AuthPlugin, session: Session):
        self.plugin = plugin
        self.session = session
        self.settings = plugin.settings
        self.ip = session.peer[0]
        since_connect = max(0.0, time.time() - session.connected_at)
        self.deadline = time.monotonic() + self.settings.login_timeout - since_connect
        #: ("login" | "register", name) while waiting for the password of the prompt flow
        self.prompt: tuple[str, str] | None = None
        #: the dialogue's replies; :meth:`account_login` takes them instead of the client
        self.ok = session.ok
        self.err = session.err

    def account_login(self, name: str, password: str) -> tuple[str, str]:
        """Check ``name`` and ``password`` for another front end (the ``daemond_account_login``
        hook) exactly as ``/login`` does — require_tls, the throttles, max_sessions_per_user,
        the log and the counters — and log the session in; the reply as ``(token, text)``:
        ``("ok", name as registered)`` or the ``-ERR`` the line protocol would have sent."""
        replies: list[tuple[str, str]] = []
        self.ok = lambda text="": replies.append(("ok", self.session.user or "")) or True
        self.err = lambda token, text="": replies.append((token, text)) or True
        try:
            if not self._tls_refused():
                self._guarded(lambda _: self._check_password(name, password), "")
        except SessionEnd:
            if self.session.user is not None or not replies:
                raise  # refused by a plugin's login hook, or the connection ended: that session ends
        if self.session.user is not None:
            return "ok", self.session.user
        return replies[-1] if replies else ("bad-credentials", "wrong name or password")

    # -- the loop ------------------------------------------------------------------

    def run(self) -> None:
        if self.settings.cert_login and self.session.tls is not None and self.session.tls.peer_cn:
            self._guarded(self._certificate_login, self.session.tls.peer_cn)
        if self.session.user is not None:
            return
        self._greet()
        handlers = {"/login": self._login_command, "/register": self._register_command,
                    "/login-token": self._token_command, "/help": self._help, "/quit": self._quit}
        while self.session.user is None:
            line = self._read_line()
            command = split_command(line)
            if command is None:
                self._guarded(self._plain_line, plain_text(line))
                continue
            self.prompt = None  # a command cancels a pending prompt
            name = command[0]
            args = line.partition(" ")[2].strip(" ")  # only ASCII spaces: NBSP or U+3000 may end a password
            handler = handlers.get(name)
            if handler is None:
                self.err("auth-required", f"log in first: {self._how()} (/help lists commands)")
            else:
                self._guarded(handler, args)

    def _guarded(self, step, arg: str) -> None:
        """Run one step of the dialogue; a store that cannot be written (disk full,
        read-only) or passwords that cannot be hashed (no helper can run) refuse that
        step with ``-ERR unavailable``, logged, and the connection lives. A step that did not
        log in holds no place in max_sessions_per_user."""
        try:
            step(arg)
        except HashQueueFull:
            self.prompt = None
            self.plugin.count("busy")
            self.err("busy", "too many passwords are being checked just now; try again in a moment")
        except HashingUnavailable as exc:
            self.prompt = None
            self.plugin.log.error("password hashing failed (%s); a login or registration from %s was refused",
                                  exc, self.ip)
            self.err("unavailable", "passwords cannot be checked just now; try again")
        except STORE_ERRORS as exc:
            if self.session.user is not None:
                raise  # logged in already: it failed in a later plugin's login hook, not in our store
            self.prompt = None
            self.plugin.log.error("users store %s cannot be written (%s); a login or registration from %s was refused",
                                  self.plugin.store.path, exc, self.ip)
            self.err("unavailable", "the users store cannot be written; try again later")
        finally:
            if self.session.user is None:
                self._release_session()

    def _greet(self) -> None:
        try:
            last = self.plugin.store.last_user_from(self.ip) if self.settings.greet_known else None
        except STORE_ERRORS:  # greeted without the hint; logging in will say what is wrong
            last = None
        hello = f"hello again, {last}" if last else "welcome"
        self.ok(f"{hello}; log in: {self._how()}")

    def _how(self) -> str:
        if self.settings.allow_register:
            return "/login NAME PASSWORD, /register NAME PASSWORD, or type your name"
        return "/login NAME PASSWORD, or type your name"

    def _read_line(self) -> str:
        left = self.deadline - time.monotonic()
        if left <= 0:
            self._timeout()
        try:
            return self.session.read_line(timeout=left)
        except SessionEnd as end:
            if end.reason == "timeout":
                self._timeout()
            raise

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def _timeout(self) -> None:
        self.plugin.count("timeouts")
        self.plugin.log.info("login timeout: %s did not log in within %gs", self.session.peer_str,
                             self.settings.login_timeout)
        self.err("timeout", f"not logged in within {self.settings.login_timeout:g}s; closing")
        raise SessionEnd("timeout")

    # -- commands --------------------------------------------------------------------

    def _tls_refused(self) -> bool:
        """Refuse a password or token that came, or would come, over plaintext (``require_tls``);
        True when refused (with ``-ERR tls-required``): nothing is hashed or looked up."""
        rule = self.settings.require_tls
        if rule is False or self.session.tls is not None or (rule == "auto" and _loopback(self.ip)):
            return False
        self.plugin.log.info("refused a login over plaintext from %s (require_tls: %s)",
                             self.ip, "true" if rule is True else rule)
        self.err("tls-required", "passwords and tokens are only taken over TLS here; "
                                         "connect to this server's TLS port")
        return True

    def _login_command(self, args: str) -> None:
        if self._tls_refused():
            return
        name, _, password = args.partition(" ")
        password = password.strip(" ")
        if not name or not password:
            self.err("usage", "/login NAME PASSWORD")
            return
        self._check_password(name, password)

    def _register_command(self, args: str) -> None:
        if self._tls_refused():
            return
        name, _, password = args.partition(" ")
        if not self.settings.allow_register:
            self.err("registration-closed", "this server does not take new users; ask its operator")
            return
        password = password.strip(" ")
        if not name or not password:
            self.err("usage", "/register NAME PASSWORD")
            return
        self._register(name, password)

    def _token_command(self, args: str) -> None:
        plugin = self.plugin
        if self._tls_refused():
            return
        if not args:
            self.err("usage", "/login-token TOKEN")
            return
        if self._throttled(None):
            return
        now = plugin.clock()
        user = plugin.store.token_user(token_digest(args), now) if len(args) <= MAX_TOKEN else None
        if user is None:
            plugin.count("failed")
            blocked = plugin.addresses.failure(self.ip)
            plugin.log.warning("token login failed from %s: unknown or expired token%s", self.ip,
                               "; address now throttled" if blocked else "")
            self.err("bad-token", "unknown or expired token; log in with your password")
            return
        if not self._claim_session(user.key, user.name):
            return
        record = plugin.store.record_login(user.key, self.ip, now)
        if record is None:
            self._release_session()
            self.err("bad-token", "unknown or expired token; log in with your password")
            return
        self._login(user.name, "token", record)
        self.ok(f"logged in as {user.name}")

    def _help(self, args: str) -> None:
        entries = [("/login NAME PASSWORD", "log in")]
        if self.settings.allow_register:
            entries.append(("/register NAME PASSWORD", "create a user and log in"))
        entries += [("/login-token TOKEN", "log in again with the token an earlier login gave"),
                    ("/help", "list commands"), ("/quit", "close the connection")]
        for usage, text in entries:
            self.session.send_line(f"HELP {usage} - {text}")
        self.ok(f"{len(entries)} commands; or type your name and answer the prompts")

    def _quit(self, args: str) -> None:
        self.ok("bye")
        raise SessionEnd("quit")

    # -- the prompt flow -------------------------------------------------------------

    def _plain_line(self, typed: str) -> None:
        if self.prompt is None and self._tls_refused():  # refused at the name, before a password is typed
            return
        if self.prompt is not None:
            kind, name = self.prompt
            self.prompt = None
            password = typed.strip(" ")  # only ASCII spaces: NBSP or U+3000 may end a password
            if kind == "register":
                self._register(name, password, prompted=True)
            else:
                self._check_password(name, password)
            return
        text = typed.strip()
        problem = name_problem(text)
        if problem:
            self.err("bad-name", problem)
            return
        # Where registration is closed an unknown name is asked for its password
        # like any other, so that the prompt does not tell which names exist.
        if self.settings.allow_register and not self.plugin.store.exists(name_key(text)):
            self.prompt = ("register", text)
            minimum = self.settings.min_password
            self.ok(f"{text} is a new name; choose a password (at least {minimum} characters)")
        else:
            self.prompt = ("login", text)
            self.ok(f"password for {text}?")

    # -- logging in and registering ----------------------------------------------------

    def _certificate_login(self, cn: str) -> None:
        """Log in by the client's verified certificate (``cert_login``), like SASL EXTERNAL: its
        subject CN must name a registered user. Otherwise nothing is sent and the dialogue
        goes on as for any client."""
        plugin = self.plugin
        key = name_key(cn) if name_problem(cn) is None else None
        user = plugin.store.user(key) if key is not None else None
        if user is None:
            plugin.log.info("client certificate CN=%s from %s names no registered user; login by password",
                            cn, self.ip)
            return
        if self._claim_session(user.key, user.name):
            self._logged_in(user.key, user.name, "certificate", None)

    def _throttled(self, key: str | None) -> bool:
        plugin = self.plugin
        by_address = plugin.addresses.blocked_for(self.ip)
        by_name = plugin.names.blocked_for(key) if key else 0.0
        left = max(by_address, by_name)
        if not left:
            return False
        plugin.count("throttled")
        # say which throttle it is: on a shared address (loopback, a NAT) one person's typos
        # block everyone else there, and they should know it is the address, not their name
        which = f"from {self.ip}" if by_address >= by_name else "for this name"
        plugin.log.warning("login refused (throttled %s): %sfrom %s, %.0fs of cooldown left",
                           "address" if by_address >= by_name else "name", f"name {key} " if key else "",
                           self.ip, left)
        self.err("too-many-attempts", f"too many failed logins {which}; try again in {max(1, round(left))}s")
        return True

    def _check_password(self, name: str, password: str) -> None:
        plugin = self.plugin
        valid_name = name_problem(name) is None
        key = name_key(name) if valid_name else None
        if self._throttled(key):
            return
        user = None
        ok = False
        checked = valid_name and password_problem(password, 0, self.settings.max_password) is None
        legacy = False
        if checked:
            user = plugin.store.user(key)
            stored = user.hash if user else None
            try:
                ok = plugin.hasher.verify(stored, normalized_password(password), timeout=self._left())
                for form in legacy_password_forms(password):  # as many for unknown names: same work
                    if ok:
                        break
                    ok = legacy = plugin.hasher.verify(stored, form, timeout=self._left())
            except HasherBusy:
                self._timeout()
        if not ok:
            plugin.count("failed")
            blocked = plugin.addresses.failure(self.ip)
            if key is not None:
                blocked = plugin.names.failure(key) or blocked
            why = ("invalid name" if key is None else "password too long" if not checked
                   else "wrong password" if user else "no such user")
            plugin.log.warning("login failed: %s from %s (%s)%s", key or "-", self.ip, why,
                               "; now throttled" if blocked else "")
            self.err("bad-credentials", "wrong name or password")
            return
        plugin.names.success(key)
        if not self._claim_session(user.key, user.name):
            return
        self._logged_in(user.key, user.name, "password", self._rehashed(user, password, legacy))

    def _rehashed(self, user, password: str, legacy: bool) -> str | None:
        """A new hash of a right password stored with other parameters than ours, or made
        (``legacy``) from the password as typed rather than its NFC form; None if it is
        current, or cannot be made just now (then it is tried at the next login)."""
        plugin = self.plugin
        if not legacy and not plugin.hasher.needs_rehash(user.hash):
            return None
        try:
            new_hash = plugin.hasher.hash(normalized_password(password), timeout=self._left())
        except (HashingUnavailable, HasherBusy, HashQueueFull) as exc:
            plugin.log.warning("could not rehash the password of %s (%s); kept as it is until the next login",
                               user.name, exc or "no hashing slot in time")
            return None
        plugin.log.info("rehashed the password of %s %s", user.name, "from its NFC form" if legacy else
                        f"with the current argon2 parameters ({plugin.hasher.params})")
        return new_hash

    def _claim_session(self, key: str, name: str) -> bool:
        """Count a session of ``key`` (released when the session ends or its login is taken
        back); False, with ``-ERR too-many-sessions``, if the user has max_sessions_per_user."""
        plugin, limit = self.plugin, self.settings.max_sessions_per_user
        if plugin.user_sessions.claim(key, limit):
            self.session.state["auth"] = key
            return True
        plugin.count("too_many_sessions")
        plugin.log.warning("login %s from %s refused: %d sessions logged in already (max_sessions_per_user)",
                           name, self.ip, limit)
        self.err("too-many-sessions", f"{name} has {limit} sessions logged in already; "
                                              "end one before you log in again")
        return False

    def _release_session(self) -> None:
        key = self.session.state.pop("auth", None)
        if key is not None:
            self.plugin.user_sessions.release(key)

    def _register(self, name: str, password: str, prompted: bool = False) -> None:
        plugin = self.plugin
        if not self.settings.allow_register:
            self.err("registration-closed", "this server does not take new users; ask its operator")
            return
        problem = name_problem(name)
        if problem:
            self.err("bad-name", problem)
            return
        password = normalized_password(password)
        bad = password_problem(password, self.settings.min_password, self.settings.max_password)
        if bad:
            token, text = bad
            if prompted:  # ask again, rather than take the next try for a name
                self.prompt = ("register", name)
                text = f"{text}; choose another password for {name}"
            self.err(token, text)
            return
        key = name_key(name)
        if plugin.store.exists(key):
            self.err("name-taken", f"{name} is already registered; log in with /login {name} PASSWORD")
            return
        if self._registration_limited():
            return
        try:
            password_hash = plugin.hasher.hash(password, timeout=self._left(), priority=Priority.REGISTRATION)
        except HasherBusy:
            self._timeout()
        except HashQueueFull:
            plugin.registrations.give_back(self.ip)  # nothing was hashed: it does not count
            raise
        if not plugin.store.add_user(key, name, password_hash, plugin.clock()):  # committed on return
            self.err("name-taken", f"{name} is already registered; log in with /login {name} PASSWORD")
            return
        plugin.count("registrations")
        plugin.log.info("registered %s from %s", name, self.ip)
        if self._claim_session(key, name):
            self._logged_in(key, name, "register", None)

    def _registration_limited(self) -> bool:
        """Count a registration from this address; True, with ``-ERR too-many-registrations``,
        if it is over register_per_address or register_total (nothing is hashed)."""
        plugin, settings = self.plugin, self.settings
        over = plugin.registrations.take(self.ip)
        if over is None:
            return False
        which, left = over
        plugin.count("registrations_refused")
        window = f"{settings.register_window:g}s"
        if which == "address":
            text = f"at most {settings.register_per_address} registrations from one address every {window}"
        else:
            text = f"at most {settings.register_total} registrations every {window} on this server"
        plugin.log.warning("registration refused: %s from %s (%s)", "address over register_per_address"
                           if which == "address" else "register_total reached", self.ip, text)
        self.err("too-many-registrations", f"{text}; try again in {max(1, round(left))}s")
        return True

    def _logged_in(self, key: str, name: str, how: str, new_hash: str | None) -> None:
        plugin = self.plugin
        now = plugin.clock()
        token = secrets.token_urlsafe(32)
        expires = now + self.settings.token_ttl
        record = plugin.store.record_login(key, self.ip, now, new_hash, token=(token_digest(token), expires))
        if record is None:
            self._release_session()
            plugin.log.warning("login %s from %s abandoned: the user was deleted meanwhile", name, self.ip)
            self.err("bad-credentials", "wrong name or password")
            return
        self._login(name, how, record)
        verb = "registered and logged in as" if how == "register" else "logged in as"
        self.ok(f"{verb} {name} token={token}")  # the token was committed with the record

    def _login(self, name: str, how: str, record: LoginRecord) -> None:
        """Tell the plugins (``session.login``), then log and count the login.

        A plugin may still refuse it (chat, for a name already connected: ``-ERR``, then the end of
        the session). The login was recorded first, so that a store that cannot be written refuses
        it before anyone sees it; a refused one is taken back from the store (its token, last login
        and "hello again"), so that it leaves nothing behind."""
        plugin = self.plugin
        try:
            self.session.login(name)
        except BaseException:
            try:
                plugin.store.forget_login(record)
            except STORE_ERRORS as exc:
                plugin.log.error("users store %s cannot be written (%s); a refused login of %s from %s stays "
                                 "recorded", plugin.store.path, exc, name, self.ip)
            raise
        plugin.log.info("login %s from %s (%s)", name, self.ip, how)
        plugin.count("logins")  # only a login every plugin accepted


def _loopback(ip: str) -> bool:
    """Whether ``ip`` is this machine (127.0.0.0/8, ::1, or IPv4-mapped loopback)."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback
