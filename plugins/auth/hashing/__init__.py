"""Password hashing for the auth plugin: argon2id, in a helper process, behind :class:`Hasher`.

Each hash holds ``memory_cost`` KiB and a CPU for its whole run, so hashes run
in one helper process (``helper.py``, running ``worker.py``), at most
``max_concurrent`` at once, on the CPUs the daemon leaves for native work and
below the daemon's priority: a login storm takes neither the daemon's memory
nor the CPUs its connections run on. Requests wait for a slot in line by
priority (``slots.py``): a login goes before waiting registrations, and a
request finding ``max_waiting`` ahead of it is refused at once
(:class:`HashQueueFull`, answered ``-ERR busy``). There is no second way to hash: when the
helper cannot run, a hash fails (:class:`HashingUnavailable`, which the login
dialogue answers ``-ERR unavailable``) and the helper is tried again, with a
growing delay.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import argon2

from plugins.auth.hashing.helper import Channel, HashingUnavailable, Helper, log
from plugins.auth.hashing.slots import HashQueueFull, Priority, Slots

__all__ = ["OWASP_MINIMUM", "Argon2Params", "HashQueueFull", "Hasher", "HasherBusy", "HashingUnavailable", "Priority"]

#: OWASP's minimum for argon2id (Password Storage Cheat Sheet): m=19 MiB, t=2, p=1.
OWASP_MINIMUM = {"time_cost": 2, "memory_cost": 19456, "parallelism": 1}

#: seconds before a helper that could not start (or died before answering) is tried again;
#: doubled at each failure in a row, up to RESPAWN_MAX
RESPAWN_DELAY = 1.0
RESPAWN_MAX = 30.0


class HasherBusy(Exception):
    """No hashing slot freed up before the caller's deadline."""


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int
    memory_cost: int  # KiB
    parallelism: int

    def weaker_than_owasp(self) -> bool:
        return any(getattr(self, key) < minimum for key, minimum in OWASP_MINIMUM.items())

    def __str__(self) -> str:
        return f"m={self.memory_cost},t={self.time_cost},p={self.parallelism}"


class Hasher:
    """Hashes and verifies passwords with one set of argon2id parameters, at most
    ``max_concurrent`` at once (and ``max_waiting`` waiting ahead of a request, None: no
    limit), in a helper process run by ``python``. Any thread may call it. ``on_request`` is
    called with ``"hashes"`` or ``"verifications"`` for each request."""

    def __init__(self, params: Argon2Params, max_concurrent: int, cpus: set[int] | None = None,
                 on_request: Callable[[str], None] | None = None, python: str = sys.executable,
                 max_waiting: int | None = None):
        self.params = params
        self.max_concurrent = max_concurrent
        self.cpus = cpus  # where the helper runs; None: where the kernel likes
        self.python = python
        self._on_request = on_request or (lambda kind: None)
        # Verified in place of a user's hash when the name is unknown, so that
        # "no such user" costs exactly what "wrong password" costs.
        self.dummy_hash = argon2.PasswordHasher(**vars(params), type=argon2.Type.ID).hash(secrets.token_urlsafe(24))
        self._current = self.dummy_hash[:self.dummy_hash.rindex("$", 0, self.dummy_hash.rindex("$")) + 1]
        self._slots = Slots(max_concurrent, max_waiting)  # one per hash at once: a free channel
        # _lock guards _helper, _free, _closed, _failures and _retry_at
        self._lock = threading.Lock()
        self._helper: Helper | None = None
        self._free: list[Channel] = []  # the current helper's channels no thread is using
        self._closed = False
        self._failures = 0  # helpers in a row that could not start or died before answering
        self._retry_at = 0.0  # (monotonic) no helper is started before then

    def start(self) -> None:
        """Start the helper now rather than at the first hash (logged if it cannot start)."""
        with self._lock:
            try:
                self._ensure_helper()
            except HashingUnavailable:
                pass  # logged; the first hash tries again

    def where(self) -> str:
        """Where hashes run, for status."""
        helper = self._helper
        return "helper process (not running)" if helper is None else f"helper process {helper.pid}"

    def close(self, wait: bool = True) -> None:
        """End the helper once hashes under way are done (if ``wait``, waited for here, up to a
        few seconds; then it is killed). A hash asked for later fails."""
        with self._lock:
            helper, free, self._helper, self._free, self._closed = self._helper, self._free, None, [], True
        for channel in free:
            channel.close()  # its thread in the helper sees the end of its requests and ends
        if helper is not None and wait:
            helper.kill(grace=5.0)  # else it ends by itself, and its watcher reaps it

    @property
    def max_waiting(self) -> int | None:
        return self._slots.max_waiting

    @max_waiting.setter
    def max_waiting(self, value: int | None) -> None:
        self._slots.max_waiting = value  # read under the slots' lock by each request

    def waiting(self) -> int:
        """Requests waiting for a slot now, for status."""
        return self._slots.waiting()

    def hash(self, password: str, timeout: float | None = None, priority: Priority = Priority.LOGIN) -> str:
        """A new argon2id hash of ``password``; HasherBusy if no slot freed up within
        ``timeout``, HashQueueFull if too many wait ahead of it (nothing is hashed),
        HashingUnavailable if the helper cannot do it."""
        return self._run(timeout, ["hash", password], priority)

    def verify(self, stored_hash: str | None, password: str, timeout: float | None = None) -> bool:
        """True if ``password`` matches ``stored_hash``. ``None`` (no such user) verifies against
        the dummy hash — the same work — and is always False. Raises as :meth:`hash` does; a
        verification is a login's, so it goes before waiting registrations."""
        ok = self._run(timeout, ["verify", stored_hash or self.dummy_hash, password], Priority.LOGIN)
        return ok is True and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when ``stored_hash`` was made with other parameters than ours: its ``$argon2id$v=…
        $m=…,t=…,p=…$`` prefix or its length (salt and hash sizes) differs from a hash of ours."""
        return not (stored_hash.startswith(self._current) and len(stored_hash) == len(self.dummy_hash))

    # -- running one request ------------------------------------------------------------

    def _run(self, timeout: float | None, request: list[str], priority: Priority):
        """A helper that dies under a request (killed, out of memory) is replaced and the
        request sent once more, to the new one."""
        if not self._slots.acquire(priority, None if timeout is None else max(timeout, 0.0)):
            raise HasherBusy()
        try:
            self._on_request("hashes" if request[0] == "hash" else "verifications")
            for attempt in (1, 2):
                with self._lock:
                    self._ensure_helper()
                    channel = self._free.pop()  # a slot is held: a running helper has a free channel
                try:
                    result = channel.call(request)
                except HashingUnavailable as exc:
                    self._put_back(channel, exc)
                    if exc.retry and attempt == 1:
                        continue
                    raise
                except BaseException:  # interrupted (Ctrl-C at the console): its answer may still come
                    self._put_back(channel, HashingUnavailable("a request was interrupted"))
                    raise
                self._put_back(channel)
                return result
        finally:
            self._slots.release()

    def _ensure_helper(self) -> None:
        """Under _lock: a helper is running (started now if need be), or HashingUnavailable."""
        if self._helper is not None:
            return
        if self._closed:
            raise HashingUnavailable("the hasher was closed (the daemon is stopping or reloading)")
        if time.monotonic() < self._retry_at:
            raise HashingUnavailable("the hashing helper cannot run just now")
        try:
            self._helper = Helper(self.python, self.params, self.max_concurrent, self.cpus, self._helper_ended)
        except (OSError, subprocess.SubprocessError) as exc:
            why = f"cannot start the password hashing helper {self.python} ({getattr(exc, 'strerror', None) or exc})"
            self._failed(why)
            raise HashingUnavailable(why) from None
        self._free = list(self._helper.channels)
        log.debug("auth: password hashing helper started (pid %d)", self._helper.pid)

    def _failed(self, why: str) -> None:
        """Under _lock: a helper could not start or died before answering: wait before the next."""
        delay = min(RESPAWN_MAX, RESPAWN_DELAY * 2 ** self._failures)
        self._failures += 1
        self._retry_at = time.monotonic() + delay
        log.error("auth: %s; hashes fail until another is tried in %gs", why, delay)

    def _helper_ended(self, helper: Helper) -> None:
        """From its watcher thread: if it was the current one (not closed, nor retired already by a
        request that saw it die), retire it and start another at once, so no login waits for one."""
        with self._lock:
            if helper is self._helper:
                self._retire(helper, f"the hashing helper {helper.how_it_ended()}")
                try:
                    self._ensure_helper()
                except HashingUnavailable:
                    pass  # logged; a hash after the delay tries again

    def _retire(self, helper: Helper, why: str) -> None:
        """Under _lock: the current helper died or failed. The caller kills it if it still runs."""
        self._helper, free, self._free = None, self._free, []
        for channel in free:
            channel.close()
        if helper.answered or helper.proc.returncode < 0:  # killed (OOM, an operator): not a broken install
            self._failures = 0
            log.error("auth: %s (pid %d); starting another", why, helper.pid)
        else:  # it cannot run here (argon2 missing?): see the daemon's stderr
            self._failed(f"{why} (pid {helper.pid}) before answering anything")

    def _put_back(self, channel: Channel, failure: HashingUnavailable | None = None) -> None:
        """Return a channel after use. One that failed (its helper died, got stuck, failed the
        request or was interrupted mid-request) takes its helper down with it."""
        if failure is not None:
            channel.helper.kill()  # first (outside the lock): _retire looks at how it ended
        with self._lock:
            current = channel.helper is self._helper
            if current and failure is None:
                self._free.append(channel)
                return
            if current:
                self._retire(channel.helper, str(failure))
        channel.close()
