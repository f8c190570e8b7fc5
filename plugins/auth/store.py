"""The identification file: users, who was last seen from each address, and session tokens.

One SQLite database in WAL mode with ``synchronous=FULL``: a write returns
only once it is in the write-ahead log on disk, so a registration answered
``+OK`` survives ``kill -9`` (and a power cut), and SQLite's journal keeps the
file consistent whenever the process dies. The file and its ``-wal``/``-shm``
companions are private (mode 0600); a store whose files others may read is
refused, because it holds password hashes.

Names are kept as registered (``name``) and looked up by ``key``, the name in
lower case: ``Alice`` and ``alice`` are one user. Nothing reversible is
stored: passwords as argon2id hashes, tokens as SHA-256 digests.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from daemon import ClusterUnavailable, PrivateFileError, check_private_sqlite, create_private_sqlite

SCHEMA_VERSION = 1

#: seconds between deletions of expired tokens (at a login): one statement less at most logins
TOKEN_PURGE_INTERVAL = 60.0

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS users (
        key        TEXT PRIMARY KEY,   -- the name in lower case
        name       TEXT NOT NULL,      -- the name as registered
        hash       TEXT NOT NULL,      -- argon2id, with its parameters
        created    REAL NOT NULL,      -- epoch seconds
        last_login REAL,
        last_ip    TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS seen_ips (  -- the identification server's "hello again"
        ip       TEXT PRIMARY KEY,
        user_key TEXT NOT NULL REFERENCES users(key) ON DELETE CASCADE,
        seen     REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS tokens (
        digest   TEXT PRIMARY KEY,     -- sha256 of the token, never the token itself
        user_key TEXT NOT NULL REFERENCES users(key) ON DELETE CASCADE,
        created  REAL NOT NULL,
        expires  REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS tokens_expires ON tokens(expires)",
    "CREATE INDEX IF NOT EXISTS tokens_user ON tokens(user_key)",
    "CREATE INDEX IF NOT EXISTS seen_ips_user ON seen_ips(user_key)",
)

#: what the store holds, that others must not read: a store they may is refused
_SECRET = "it holds password hashes"


#: what a store raises when it cannot be read or written just now (SQLite's errors: disk full,
#: read-only; a cluster's Redis gone or refusing writes): the step is refused with -ERR unavailable
STORE_ERRORS = (sqlite3.Error, ClusterUnavailable)


class StoreError(Exception):
    """The store cannot be used; the message is one line for the operator."""


@dataclass(frozen=True)
class User:
    key: str
    name: str
    hash: str
    created: float
    last_login: float | None
    last_ip: str | None


@dataclass(frozen=True)
class LoginRecord:
    """What :meth:`UserStore.record_login` wrote, so that :meth:`UserStore.forget_login` can
    take it back (a login another plugin refused)."""
    key: str
    ip: str
    at: float
    token_digest: str | None
    before: tuple[float | None, str | None]  # the user's last_login, last_ip before this login
    seen_before: tuple[str, float] | None  # the address's seen_ips row before: (user_key, seen)


class UserStore:
    """The users database. Every method may be called from any thread."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            create_private_sqlite(self.path, "users database", secret=_SECRET)
        except PrivateFileError as exc:
            raise StoreError(str(exc)) from None
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from None
        # _lock guards _db and _purge_at: one connection shared by the connections' threads,
        # the control thread and the main thread, one statement or transaction at a time.
        self._lock = threading.Lock()
        self._db = db
        self._purge_at = 0.0  # (the caller's clock) when a login next deletes expired tokens
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"{self.path}: cannot switch to WAL mode (got {mode!r})")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            with self._transaction():
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreError(f"{self.path}: written by a newer daemond (schema {version}, "
                                     f"this one knows {SCHEMA_VERSION})")
                for statement in SCHEMA:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreError(f"{self.path} is not a usable users database: {exc}") from None
        except BaseException:
            db.close()
            raise
        try:  # the -wal/-shm files now exist: SQLite gives them the database's mode
            check_private_sqlite(self.path, "users database", secret=_SECRET)
        except PrivateFileError as exc:
            db.close()
            raise StoreError(str(exc)) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed (durably) before the block's caller goes on."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed COMMIT (disk full) leaves it open: end it, or every later BEGIN fails
                db.execute("ROLLBACK")
            raise

    # -- users ------------------------------------------------------------------

    def add_user(self, key: str, name: str, password_hash: str, now: float) -> bool:
        """Create a user; False if the name is taken. Committed when it returns True."""
        with self._lock, self._transaction() as db:
            try:
                db.execute("INSERT INTO users (key, name, hash, created) VALUES (?, ?, ?, ?)",
                           (key, name, password_hash, now))
            except sqlite3.IntegrityError:
                return False
        return True

    def user(self, key: str) -> User | None:
        with self._lock:
            row = self._db.execute("SELECT key, name, hash, created, last_login, last_ip FROM users WHERE key = ?",
                                   (key,)).fetchone()
        return User(*row) if row else None

    def users(self) -> list[User]:
        with self._lock:
            rows = self._db.execute("SELECT key, name, hash, created, last_login, last_ip FROM users "
                                    "ORDER BY key").fetchall()
        return [User(*row) for row in rows]

    def exists(self, key: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM users WHERE key = ?", (key,)).fetchone() is not None

    def record_login(self, key: str, ip: str, now: float, new_hash: str | None = None,
                     token: tuple[str, float] | None = None) -> LoginRecord | None:
        """Note a login, in one transaction with its new token ``(digest, expires)`` and a
        rehashed password (when the hashing parameters changed). None if the user is gone
        (deleted, or clear-auth, since the password was checked)."""
        with self._lock, self._transaction() as db:
            row = db.execute("SELECT users.last_login, users.last_ip, seen_ips.user_key, seen_ips.seen FROM users "
                             "LEFT JOIN seen_ips ON seen_ips.ip = ? WHERE users.key = ?", (ip, key)).fetchone()
            if row is None:
                return None
            before, seen = row[:2], row[2:] if row[2] is not None else None  # tuples already
            db.execute("UPDATE users SET last_login = ?, last_ip = ? WHERE key = ?", (now, ip, key))
            if token:
                if now >= self._purge_at:  # expired tokens are never honoured; this only tidies up
                    db.execute("DELETE FROM tokens WHERE expires <= ?", (now,))
                    self._purge_at = now + TOKEN_PURGE_INTERVAL
                db.execute("INSERT INTO tokens (digest, user_key, created, expires) VALUES (?, ?, ?, ?)",
                           (token[0], key, now, token[1]))
            if new_hash:
                db.execute("UPDATE users SET hash = ? WHERE key = ?", (new_hash, key))
            db.execute("INSERT INTO seen_ips (ip, user_key, seen) VALUES (?, ?, ?) "
                       "ON CONFLICT(ip) DO UPDATE SET user_key = excluded.user_key, seen = excluded.seen",
                       (ip, key, now))
        return LoginRecord(key, ip, now, token[0] if token else None, before, seen)

    def forget_login(self, record: LoginRecord) -> None:
        """Take back a recorded login: its token, and the user's last login and the address's
        "hello again" where no later login has replaced them since. (A rehashed password stays:
        the password was right.)"""
        key, ip, at = record.key, record.ip, record.at
        with self._lock, self._transaction() as db:
            if record.token_digest:
                db.execute("DELETE FROM tokens WHERE digest = ?", (record.token_digest,))
            db.execute("UPDATE users SET last_login = ?, last_ip = ? WHERE key = ? AND last_login = ? AND last_ip = ?",
                       (*record.before, key, at, ip))
            if record.seen_before:
                db.execute("UPDATE seen_ips SET user_key = ?, seen = ? WHERE ip = ? AND user_key = ? AND seen = ?",
                           (*record.seen_before, ip, key, at))
            else:
                db.execute("DELETE FROM seen_ips WHERE ip = ? AND user_key = ? AND seen = ?", (ip, key, at))

    def set_hash(self, key: str, password_hash: str) -> bool:
        """Change a password; the user's tokens are revoked. False if no such user."""
        with self._lock, self._transaction() as db:
            changed = db.execute("UPDATE users SET hash = ? WHERE key = ?", (password_hash, key)).rowcount
            db.execute("DELETE FROM tokens WHERE user_key = ?", (key,))
        return bool(changed)

    def delete_user(self, key: str) -> bool:
        """Delete a user with its tokens and addresses; False if no such user."""
        with self._lock, self._transaction() as db:
            return bool(db.execute("DELETE FROM users WHERE key = ?", (key,)).rowcount)

    def last_user_from(self, ip: str) -> str | None:
        """The name of the user who last logged in from ``ip``."""
        with self._lock:
            row = self._db.execute("SELECT users.name FROM seen_ips JOIN users ON users.key = seen_ips.user_key "
                                   "WHERE seen_ips.ip = ?", (ip,)).fetchone()
        return row[0] if row else None

    # -- tokens -----------------------------------------------------------------

    def token_user(self, digest: str, now: float) -> User | None:
        """The user a token belongs to, if it exists and has not expired."""
        with self._lock:
            row = self._db.execute(
                "SELECT users.key, name, hash, users.created, last_login, last_ip FROM tokens "
                "JOIN users ON users.key = tokens.user_key WHERE digest = ? AND expires > ?", (digest, now)).fetchone()
        return User(*row) if row else None

    # -- the whole store ----------------------------------------------------------

    def clear(self) -> tuple[int, int]:
        """Delete every user, token and address in one transaction; returns (users, tokens) deleted."""
        with self._lock, self._transaction() as db:
            tokens = db.execute("DELETE FROM tokens").rowcount
            db.execute("DELETE FROM seen_ips")
            users = db.execute("DELETE FROM users").rowcount
        return users, tokens

    def export(self, now: float) -> Iterator[tuple[User, list[tuple[str, float]], list[tuple[str, float]]]]:
        """Every user with their unexpired tokens ``(digest, expires)`` and the addresses they were
        last seen from ``(ip, seen)``, one user at a time (``daemond cluster import``)."""
        for user in self.users():
            with self._lock:
                tokens = self._db.execute("SELECT digest, expires FROM tokens WHERE user_key = ? AND expires > ?",
                                          (user.key, now)).fetchall()
                seen = self._db.execute("SELECT ip, seen FROM seen_ips WHERE user_key = ?", (user.key,)).fetchall()
            yield user, [tuple(t) for t in tokens], [tuple(s) for s in seen]

    def counts(self, now: float) -> dict[str, int]:
        with self._lock:
            users = self._db.execute("SELECT count(*) FROM users").fetchone()[0]
            tokens = self._db.execute("SELECT count(*) FROM tokens WHERE expires > ?", (now,)).fetchone()[0]
        return {"users": users, "tokens": tokens}
