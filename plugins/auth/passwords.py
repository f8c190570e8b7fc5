"""Password hashing: argon2id through argon2-cffi, with a cap on hashes at once.

Each argon2 hash holds ``memory_cost`` KiB for its whole run, so a login storm
could otherwise take the daemon's memory with it: a semaphore lets at most
``max_concurrent`` hashes run, and the others wait their turn (with a
deadline). argon2-cffi releases the GIL while hashing, so the connections that
are not logging in keep being served.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

#: OWASP's minimum for argon2id (Password Storage Cheat Sheet): m=19 MiB, t=2, p=1.
OWASP_MINIMUM = {"time_cost": 2, "memory_cost": 19456, "parallelism": 1}


class HasherBusy(Exception):
    """No hashing slot freed up before the caller's deadline."""


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int
    memory_cost: int  # KiB
    parallelism: int

    def weaker_than_owasp(self) -> bool:
        return (self.time_cost < OWASP_MINIMUM["time_cost"] or self.memory_cost < OWASP_MINIMUM["memory_cost"]
                or self.parallelism < OWASP_MINIMUM["parallelism"])

    def __str__(self) -> str:
        return f"m={self.memory_cost},t={self.time_cost},p={self.parallelism}"


class Hasher:
    """Hashes and verifies passwords with one set of argon2id parameters."""

    def __init__(self, params: Argon2Params, max_concurrent: int):
        self.params = params
        self.max_concurrent = max_concurrent
        self._ph = argon2.PasswordHasher(time_cost=params.time_cost, memory_cost=params.memory_cost,
                                         parallelism=params.parallelism, type=argon2.Type.ID)
        # _slots caps how many argon2 computations run at once (each holds memory_cost KiB)
        self._slots = threading.BoundedSemaphore(max_concurrent)
        # Verified in place of a user's hash when the name is unknown, so that
        # "no such user" costs exactly what "wrong password" costs.
        self.dummy_hash = self._ph.hash(secrets.token_urlsafe(24))

    def hash(self, password: str, timeout: float | None = None) -> str:
        with self._slot(timeout):
            return self._ph.hash(password)

    def verify(self, stored_hash: str | None, password: str, timeout: float | None = None) -> bool:
        """True if ``password`` matches ``stored_hash``.

        ``None`` (no such user) verifies against the dummy hash — the same
        work — and is always False.
        """
        with self._slot(timeout):
            try:
                ok = self._ph.verify(stored_hash or self.dummy_hash, password)
            except (VerificationError, InvalidHashError):
                return False
        return ok and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when ``stored_hash`` was made with other parameters than ours."""
        try:
            return self._ph.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError):
            return True

    @contextmanager
    def _slot(self, timeout: float | None) -> Iterator[None]:
        if not self._slots.acquire(timeout=None if timeout is None else max(timeout, 0.0)):
            raise HasherBusy()
        try:
            yield
        finally:
            self._slots.release()
