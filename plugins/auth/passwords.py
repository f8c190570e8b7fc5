"""Password hashing: argon2id through argon2-cffi, on a few low-priority threads.

Each argon2 hash holds ``memory_cost`` KiB and a CPU for its whole run, so a
login storm could otherwise take the daemon's memory and CPUs with it. Hashes
run on a small pool of ``max_concurrent`` threads (the others wait their turn
in its queue, with a deadline). Those threads move to the CPUs the daemon
leaves for native work (``daemon.native_cpus()``: every CPU but the one its
Python threads are kept on), and lower their own scheduling priority
(``nice``), so that while they hash, the kernel still runs every thread that
serves an ordinary connection first. argon2-cffi releases the GIL while
hashing, so the pool never holds up Python code either.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

#: OWASP's minimum for argon2id (Password Storage Cheat Sheet): m=19 MiB, t=2, p=1.
OWASP_MINIMUM = {"time_cost": 2, "memory_cost": 19456, "parallelism": 1}


#: how much the hashing threads lower their priority (nice 0 → 10: the kernel gives a CPU-bound
#: nice-10 thread about a tenth of what an equal nice-0 one gets while both want the CPU)
HASHING_NICE = 10

log = logging.getLogger("daemond.plugin.auth")


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

    def __init__(self, params: Argon2Params, max_concurrent: int, cpus: set[int] | None = None):
        self.params = params
        self.max_concurrent = max_concurrent
        self.cpus = cpus  # where the pool's threads run; None: where the thread that starts them does
        self._ph = argon2.PasswordHasher(time_cost=params.time_cost, memory_cost=params.memory_cost,
                                         parallelism=params.parallelism, type=argon2.Type.ID)
        # _pool_lock guards _pool and _closed: max_concurrent threads cap how many argon2
        # computations run at once (each holds memory_cost KiB); made at the first hash,
        # ended by close()
        self._pool_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False
        # Verified in place of a user's hash when the name is unknown, so that
        # "no such user" costs exactly what "wrong password" costs.
        self.dummy_hash = self._ph.hash(secrets.token_urlsafe(24))

    def close(self, wait: bool = True) -> None:
        """Let queued hashes finish, then end the pool's threads (joined if ``wait``). A hash
        asked for later (a straggler still holding this hasher after a reload replaced it)
        runs on the caller's thread."""
        with self._pool_lock:
            pool, self._pool, self._closed = self._pool, None, True
        if pool is not None:
            pool.shutdown(wait=wait)

    def hash(self, password: str, timeout: float | None = None) -> str:
        return self._run(self._ph.hash, timeout, password)

    def verify(self, stored_hash: str | None, password: str, timeout: float | None = None) -> bool:
        """True if ``password`` matches ``stored_hash``.

        ``None`` (no such user) verifies against the dummy hash — the same
        work — and is always False.
        """
        ok = self._run(self._verify, timeout, stored_hash or self.dummy_hash, password)
        return ok and stored_hash is not None

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._ph.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when ``stored_hash`` was made with other parameters than ours."""
        try:
            return self._ph.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError):
            return True

    def _run(self, work, timeout: float | None, *args):
        """Run ``work`` on the pool; HasherBusy if it has not *started* within ``timeout``."""
        with self._pool_lock:
            if self._closed:
                return work(*args)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_concurrent, thread_name_prefix="argon2",
                                                initializer=_hashing_thread, initargs=(self.cpus,))
            pool = self._pool
        try:
            future = pool.submit(work, *args)
        except RuntimeError:
            with self._pool_lock:
                closed = self._closed
            if not closed:
                raise  # a broken pool is a bug to see, not a reason to hash without a cap
            return work(*args)  # close() won the race: this one hash runs here
        try:
            return future.result(timeout=None if timeout is None else max(timeout, 0.0))
        except FutureTimeout:
            if future.cancel():  # still queued: give up on it
                raise HasherBusy() from None
            return future.result()  # already hashing: it ends within one hash's time


def _hashing_thread(cpus: set[int] | None) -> None:
    """Pool thread initializer: move to ``cpus`` and nice this thread only. Linux only: there a
    thread id is a process id for these calls (elsewhere it could name another process)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        if cpus:
            os.sched_setaffinity(0, cpus)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                       min(19, os.getpriority(os.PRIO_PROCESS, 0) + HASHING_NICE))
    except Exception as exc:  # e.g. a seccomp filter without these calls: hash where and as we are
        log.debug("auth: cannot move or lower the hashing threads: %s", exc)
