"""Limits that keep one client, or many, from using up the daemon: registrations per
address and in all, and the sessions one user holds at once.

Like the failed-login :class:`~plugins.auth.throttle.Throttle`, a limit is
checked before anything is hashed, so a refused client costs almost nothing.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable

#: Addresses remembered before stale ones are swept out (bounds memory under many addresses).
_SWEEP_AT = 10_000


class RegistrationLimit:
    """At most ``per_address`` registrations from one address, and ``total`` from all, within
    ``window`` seconds (``None``: no such limit). Each registration that gets as far as hashing
    counts, taken or not."""

    def __init__(self, per_address: int | None, total: int | None, window: float,
                 clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        # _lock guards the settings, _times and _all (session threads register concurrently)
        self._lock = threading.Lock()
        self.per_address, self.total, self.window = per_address, total, window
        self._times: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()

    def configure(self, per_address: int | None, total: int | None, window: float) -> None:
        with self._lock:
            self.per_address, self.total, self.window = per_address, total, window

    def take(self, address: str) -> tuple[str, float] | None:
        """Count a registration from ``address``; or, over a limit, count nothing and return
        ``("address" | "total", seconds until one is allowed again)``."""
        now = self.clock()
        with self._lock:
            if len(self._times) >= _SWEEP_AT:
                self._sweep(now)
            times = self._times.get(address, deque())
            for queue in (times, self._all):
                while queue and queue[0] <= now - self.window:
                    queue.popleft()
            if self.per_address is not None and len(times) >= self.per_address:
                return "address", times[len(times) - self.per_address] + self.window - now
            if self.total is not None and len(self._all) >= self.total:
                return "total", self._all[len(self._all) - self.total] + self.window - now
            times.append(now)
            self._times[address] = times
            self._all.append(now)
            return None

    def give_back(self, address: str) -> None:
        """Uncount the last registration from ``address`` (it was refused before hashing)."""
        with self._lock:
            times = self._times.get(address)
            if times:
                times.pop()
                if self._all:
                    self._all.pop()

    def _sweep(self, now: float) -> None:
        for key in [k for k, times in self._times.items() if not times or times[-1] <= now - self.window]:
            del self._times[key]


class UserSessions:
    """How many sessions each user has logged in, on every listener of the daemon."""

    def __init__(self):
        # _lock guards _count
        self._lock = threading.Lock()
        self._count: Counter[str] = Counter()

    def claim(self, key: str, limit: int | None) -> bool:
        """Count one more session of ``key``; False (nothing counted) if it has ``limit`` already."""
        with self._lock:
            if limit is not None and self._count[key] >= limit:
                return False
            self._count[key] += 1
            return True

    def release(self, key: str) -> None:
        with self._lock:
            self._count[key] -= 1
            if self._count[key] <= 0:
                del self._count[key]

    def of(self, key: str) -> int:
        with self._lock:
            return self._count[key]
