"""Failed-login throttling: too many failures for one key within a window block it for a while.

The auth plugin keeps one :class:`Throttle` for names and one for client
addresses. A blocked key is refused before any password is hashed, so a
guessing client costs the daemon almost nothing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

#: Keys remembered before stale ones are swept out (bounds memory under a spray of names).
_SWEEP_AT = 10_000


class Throttle:
    """``max_attempts`` failures of one key within ``window`` seconds block it for ``cooldown`` seconds."""

    def __init__(self, max_attempts: int, window: float, cooldown: float, clock: Callable[[], float] = time.monotonic):
        self.max_attempts = max_attempts
        self.window = window
        self.cooldown = cooldown
        self.clock = clock
        # _lock guards _failures and _blocked_until (session threads fail and check concurrently)
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}

    def configure(self, max_attempts: int, window: float, cooldown: float) -> None:
        with self._lock:
            self.max_attempts, self.window, self.cooldown = max_attempts, window, cooldown

    def blocked_for(self, key: str) -> float:
        """Seconds ``key`` stays blocked; 0 when it may try."""
        with self._lock:
            until = self._blocked_until.get(key)
            if until is None:
                return 0.0
            left = until - self.clock()
            if left > 0:
                return left
            del self._blocked_until[key]
            return 0.0

    def failure(self, key: str) -> bool:
        """Count a failure; True if it just got ``key`` blocked."""
        now = self.clock()
        with self._lock:
            if len(self._failures) >= _SWEEP_AT:
                self._sweep(now)
            times = self._failures.setdefault(key, deque())
            times.append(now)
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) < self.max_attempts:
                return False
            del self._failures[key]
            self._blocked_until[key] = now + self.cooldown
            return True

    def success(self, key: str) -> None:
        """Forget ``key``'s failures (a right password ends a run of typos)."""
        with self._lock:
            self._failures.pop(key, None)

    def blocked_count(self) -> int:
        now = self.clock()
        with self._lock:
            return sum(1 for until in self._blocked_until.values() if until > now)

    def _sweep(self, now: float) -> None:
        for key in [k for k, times in self._failures.items() if not times or times[-1] <= now - self.window]:
            del self._failures[key]
        for key in [k for k, until in self._blocked_until.items() if until <= now]:
            del self._blocked_until[key]
