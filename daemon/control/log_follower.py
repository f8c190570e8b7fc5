"""``logs -f``: the last lines of the daemon's log, then each new line as it is logged.

A plain iterator over a subscription to the in-memory log handler, because the
front doors stream any iterator a command returns; it yields ``None`` while
idle so that they can check their client and the daemon between lines.
"""

from __future__ import annotations

import queue
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from daemon.logs import LogService

#: Lines a ``logs -f`` client may fall behind before lines are dropped for it.
FOLLOW_BACKLOG = 10_000
#: Seconds between ``None`` heartbeats of an idle ``logs -f`` (the front door checks its client then).
FOLLOW_HEARTBEAT = 0.25


class LogFollower:
    """The last ``n`` lines, then each new line as it is logged; ``None`` while idle.

    Subscribed when created — before the front door says the stream has begun, so
    no line logged after that is missed — and unsubscribed by :meth:`close`.
    """

    def __init__(self, service: LogService, n: int):
        self._lines: queue.Queue[str] = queue.Queue(FOLLOW_BACKLOG)
        self._dropped = 0
        backlog, self._unsubscribe = service.tail_and_follow(n, self._receive)
        self._backlog = deque(backlog)
        self._closed = False

    def _receive(self, line: str) -> None:  # called by logging, under the memory handler's lock
        try:
            self._lines.put_nowait(line)
        except queue.Full:
            self._dropped += 1

    def __iter__(self) -> LogFollower:
        return self

    def __next__(self) -> str | None:
        if self._closed:
            raise StopIteration
        if self._backlog:
            return self._backlog.popleft()
        if self._dropped:
            missed, self._dropped = self._dropped, 0
            return f"[daemond: {missed} log lines dropped: this client reads too slowly]"
        try:
            return self._lines.get(timeout=FOLLOW_HEARTBEAT)
        except queue.Empty:
            return None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._unsubscribe()
