"""The hashing slots: at most N hashes at once, the rest wait in line by priority.

A plain semaphore wakes waiters in no particular order and lets any number
wait, so a flood of registrations could keep a login waiting for as long as
it lasts. Here waiters are served by priority (logins before registrations),
then in arrival order, and a request finding too many waiting ahead of it is
refused at once rather than queued.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from enum import IntEnum

__all__ = ["HashQueueFull", "Priority", "Slots"]


class Priority(IntEnum):
    """Who is served first when hashes wait for a slot: the lower value."""

    LOGIN = 0  # a login (its verification, and the rehash of a right password), an operator's command
    REGISTRATION = 1  # a new user's first hash


class HashQueueFull(Exception):
    """Too many requests wait ahead of this one: refused at once, nothing hashed."""


class Slots:
    """``size`` slots; a waiter takes one when it is the first of the highest priority waiting.
    A request is refused (:class:`HashQueueFull`) when ``max_waiting`` requests of its priority
    or a higher one wait already (``None``: no limit)."""

    def __init__(self, size: int, max_waiting: int | None):
        self.max_waiting = max_waiting
        # _lock guards _free and _waiting; each waiter has a Condition on it, notified when it is first
        self._lock = threading.Lock()
        self._free = size
        self._waiting: dict[Priority, deque[threading.Condition]] = {p: deque() for p in Priority}

    def acquire(self, priority: Priority, timeout: float | None) -> bool:
        """Take a slot; False if none came within ``timeout`` seconds."""
        with self._lock:
            ahead = sum(len(q) for p, q in self._waiting.items() if p <= priority)
            if self._free > 0 and ahead == 0:
                self._free -= 1
                return True
            if self.max_waiting is not None and ahead >= self.max_waiting:
                raise HashQueueFull()
            me = threading.Condition(self._lock)
            queue = self._waiting[priority]
            queue.append(me)
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                while not (self._free > 0 and self._first() is me):
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    me.wait(left)
                self._free -= 1
                return True
            finally:
                queue.remove(me)
                self._wake_first()  # a slot may still be free, for the next in line

    def release(self) -> None:
        with self._lock:
            self._free += 1
            self._wake_first()

    def waiting(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._waiting.values())

    def _first(self) -> threading.Condition | None:
        """Under _lock: the waiter served next."""
        for priority in Priority:
            if self._waiting[priority]:
                return self._waiting[priority][0]
        return None

    def _wake_first(self) -> None:
        """Under _lock."""
        first = self._first()
        if first is not None and self._free > 0:
            first.notify()
