"""The daemon's logging: stderr, a log file, and the last lines kept in memory.

stderr carries timestamps, except under the systemd journal (``$JOURNAL_STREAM``
set), where each line starts with a ``<N>`` syslog priority instead so that
``journalctl -p warning`` works. The file is a ``WatchedFileHandler`` (a
logrotate rename is followed) opened in append mode, so ``clear()`` can
truncate it in place and the next line lands at offset 0 with no hole; past
``logging.max_size`` it is moved to ``<file>.1`` and a new one begun.

Lines that a client can make the daemon repeat (a connection's connect and
disconnect, a refusal, a failing ``accept``) carry a rate-limit key
(:func:`limited`); one :class:`RateLimit` filter on the handlers lets a few
through per key and window and sums up the rest in one line. It runs on the
thread that logs: no timer, no thread of its own.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.files import PrivateFileError, check_trusted_dir, make_dirs, open_private

ROOT = "daemond"
#: libraries whose log records go through daemond's handlers (same format, journal priorities)
LIBRARIES = ("watchdog",)
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Seconds of a rate-limit window, and the lines per key it lets through.
RATE_WINDOW = 10.0
RATE_BURST = 20
#: Keys tracked at once; lines of further keys share one ("from other addresses"), so memory stays bounded.
RATE_KEYS = 4096
OTHER_KEY = "from other addresses"

_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def limited(key: str, counts: str | None = None) -> dict[str, Any]:
    """``extra=`` for a log line a client can make repeat: rate-limited per ``key``.

    ``key`` completes the summary line ("from 127.0.0.1", "on listener echo");
    ``counts`` names what one such line stands for in it ("connections"); lines
    without it (a disconnect, which its connect already counted) are dropped uncounted.
    """
    return {"rate_key": key, "rate_counts": counts}


@dataclass
class _Window:
    start: float
    logger: str  # the first line's logger and level: its summary goes out as they did
    level: int
    passed: int = 0
    dropped: int = 0
    counts: Counter[str] = field(default_factory=Counter)


class RateLimit(logging.Filter):
    """At most ``burst`` lines per rate-limit key in ``window`` seconds; then one summary line.

    Lines without a key (see :func:`limited`) always pass. The summary of a window
    that dropped lines — "… and 25,998 more connections from 127.0.0.1 in the last
    10 s" — is logged just before the first line of any kind after the window ends
    (and at :meth:`flush`). One instance sits on every handler of a
    :class:`LogService`; its decision is made once per record and kept on it.
    """

    def __init__(self, window: float = RATE_WINDOW, burst: int = RATE_BURST, keys: int = RATE_KEYS,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window, self.burst, self.keys, self._clock = window, burst, keys, clock
        # _lock guards _windows (ordered by start: a key whose window ended is removed, then re-added at the end)
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        decision = record.__dict__.get("rate_passed")
        if decision is not None:
            return decision
        key = record.__dict__.get("rate_key")
        now = self._clock()
        with self._lock:
            ended = self._ended(now)
            decision = True if key is None else self._count(key, record, now)
        record.rate_passed = decision
        self._summarise(ended)
        return decision

    def flush(self) -> None:
        """Log the summaries of every window that dropped lines, ended or not."""
        with self._lock:
            ended = [w for w in self._windows.items() if w[1].dropped]
            self._windows.clear()
        self._summarise(ended, now=self._clock())

    def _ended(self, now: float) -> list[tuple[str, _Window]]:
        ended = []
        for key, window in self._windows.items():  # oldest first: stop at the first still running
            if now - window.start < self.window:
                break
            ended.append((key, window))
        for key, _ in ended:
            del self._windows[key]
        return [(key, window) for key, window in ended if window.dropped]

    def _count(self, key: str, record: logging.LogRecord, now: float) -> bool:
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= self.keys:
                key = OTHER_KEY
                window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(now, record.name, record.levelno)
        if window.passed < self.burst:
            window.passed += 1
            return True
        window.dropped += 1
        window.counts[record.__dict__.get("rate_counts") or "lines"] += 1
        return False

    def _summarise(self, ended: list[tuple[str, _Window]], now: float | None = None) -> None:
        for key, window in ended:
            counts = window.counts
            if len(counts) > 1:
                del counts["lines"]  # uncounted lines belong to what is counted (a disconnect to its connect)
            what = ", ".join(f"{n:,} more {noun}" for noun, n in counts.most_common())
            seconds = self.window if now is None else min(self.window, now - window.start)
            logging.getLogger(window.logger).log(window.level, "… and %s %s in the last %g s", what, key,
                                                 round(seconds, 1), extra={"rate_passed": True})


class JournalFormatter(logging.Formatter):
    """``<N>name: message`` — the journal adds its own timestamp."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


class MemoryHandler(logging.Handler):
    """The last ``capacity`` formatted lines, and live followers (``daemonctl logs -f``)."""

    def __init__(self, capacity: int):
        super().__init__()
        self.lines: deque[str] = deque(maxlen=max(capacity, 1))
        self._followers: list[Callable[[str], None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        # Called with the handler's lock held (logging.Handler.handle), which guards lines and _followers.
        self.lines.append(text)
        for follower in list(self._followers):
            try:
                follower(text)
            except Exception:
                self._followers.remove(follower)

    def tail(self, n: int) -> list[str]:
        with self.lock:
            return list(self.lines)[-n:] if n > 0 else []

    def follow(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(line)`` for each new line (under the handler's lock: be quick); returns an unsubscribe."""
        with self.lock:
            self._followers.append(callback)

        def unsubscribe() -> None:
            with self.lock:
                if callback in self._followers:
                    self._followers.remove(callback)

        return unsubscribe

    def tail_and_follow(self, n: int, callback: Callable[[str], None]) -> tuple[list[str], Callable[[], None]]:
        """The last ``n`` lines and a subscription for the next ones, with no line lost or seen twice between."""
        with self.lock:  # an RLock: tail() and follow() take it again
            return self.tail(n), self.follow(callback)

    def clear(self) -> None:
        with self.lock:
            self.lines.clear()


class PromptAwareHandler(logging.StreamHandler):
    """stderr, keeping the console usable: while someone is typing at the prompt, a log
    line clears the prompt's line, prints, and draws the prompt and what was typed again."""

    def __init__(self, stream):
        super().__init__(stream)
        #: set by the console while it waits for input: returns the text to redraw
        self.prompt: Callable[[], str] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        prompt = self.prompt
        if prompt is None:
            super().emit(record)
            return
        try:
            self.stream.write("\r\x1b[K" + self.format(record) + self.terminator + prompt())
            self.flush()
        except Exception:
            self.handleError(record)


class PrivateWatchedFileHandler(logging.handlers.WatchedFileHandler):
    """A WatchedFileHandler whose file is created mode 0600 and never opened through a symlink
    (nor when logrotate's rename is followed), moved to ``<file>.1`` past ``max_size`` bytes."""

    _refused: str | None = None  # the last reopen failure said on stderr

    def __init__(self, filename: str, max_size: int | None = None, encoding: str | None = None):
        super().__init__(filename, encoding=encoding)
        self.max_size = max_size  # None: no cap (logrotate's job)

    def _open(self):
        fd = open_private(self.baseFilename, "log file", os.O_WRONLY | os.O_APPEND)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.reopenIfNeeded()
            if self.stream is None:  # a reopen that failed: try again, with this record
                self.stream = self._open()
                self._statstream()
        except (PrivateFileError, OSError) as exc:  # a symlink planted after a rename: not followed
            if str(exc) != self._refused:
                self._refused = str(exc)  # said once, not once per record; never a traceback
                sys.stderr.write(f"daemond: {exc}; log lines go to stderr and memory only\n")
            return
        self._refused = None
        logging.FileHandler.emit(self, record)
        if self.max_size is not None and self.stream is not None:
            try:
                if self.stream.tell() >= self.max_size:
                    self._rotate()
            except OSError:
                self.handleError(record)

    def _rotate(self) -> None:
        """The file as it is becomes ``<file>.1`` (replacing the last one); lines go to a new file."""
        self.stream.close()
        self.stream = None
        os.replace(self.baseFilename, self.baseFilename + ".1")
        self.stream = self._open()
        self._statstream()


class LogService:
    """Owns the daemon's handlers; the control commands ``logs`` and ``clear-logs`` use it."""

    def __init__(self):
        self.logger = logging.getLogger(ROOT)
        self.memory = MemoryHandler(1000)
        self.file_handler: logging.FileHandler | None = None
        self.stderr_handler: PromptAwareHandler | None = None
        self.rate_limit = RateLimit()  # on every handler
        self.memory.addFilter(self.rate_limit)
        self._lock = threading.Lock()  # guards handler replacement during reconfigure

    def setup(self, level: str, file: Path | None, buffer: int, stderr: bool = True,
              max_size: int | None = None) -> None:
        """Raises OSError or PrivateFileError (a log directory others may write in, a symlink
        where the file is) when the log file cannot be opened; the rest is set up by then."""
        with self._lock:
            self.logger.setLevel(level.upper())
            self.logger.propagate = not stderr  # in-process tests keep pytest's capture
            formatter = logging.Formatter(FORMAT)
            self.memory.lines = deque(self.memory.lines, maxlen=max(buffer, 1))
            self.memory.setFormatter(formatter)
            if self.memory not in self.logger.handlers:
                self.logger.addHandler(self.memory)
            if stderr and self.stderr_handler is None:
                self.stderr_handler = PromptAwareHandler(sys.stderr)
                if os.environ.get("JOURNAL_STREAM"):
                    self.stderr_handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
                else:
                    self.stderr_handler.setFormatter(formatter)
                self.stderr_handler.addFilter(self.rate_limit)
                self.logger.addHandler(self.stderr_handler)
            for name in LIBRARIES:
                library = logging.getLogger(name)
                library.setLevel(logging.WARNING)
                library.propagate = not stderr
                for handler in (self.memory, self.stderr_handler):
                    if handler is not None and handler not in library.handlers:
                        library.addHandler(handler)
            current = Path(self.file_handler.baseFilename) if self.file_handler else None
            if file != current:
                new_handler = None
                if file is not None:  # opened first: a refused file leaves the old one in use
                    make_dirs(file.parent, 0o700)
                    check_trusted_dir(file.parent, "log directory")
                    new_handler = PrivateWatchedFileHandler(str(file), max_size, encoding="utf-8")
                    new_handler.setFormatter(formatter)
                if self.file_handler is not None:
                    self.logger.removeHandler(self.file_handler)
                    for name in LIBRARIES:
                        logging.getLogger(name).removeHandler(self.file_handler)
                    self.file_handler.close()
                    self.file_handler = None
                if new_handler is not None:
                    self.file_handler = new_handler
                    self.file_handler.addFilter(self.rate_limit)
                    self.logger.addHandler(self.file_handler)
                    for name in LIBRARIES:
                        logging.getLogger(name).addHandler(self.file_handler)
            if self.file_handler is not None:
                self.file_handler.max_size = max_size

    def tail(self, n: int) -> list[str]:
        return self.memory.tail(n)

    def tail_and_follow(self, n: int, callback: Callable[[str], None]) -> tuple[list[str], Callable[[], None]]:
        return self.memory.tail_and_follow(n, callback)

    @property
    def file(self) -> Path | None:
        return Path(self.file_handler.baseFilename) if self.file_handler is not None else None

    def clear(self) -> None:
        """Empty the log file in place and the in-memory lines; never unlinks."""
        handler = self.file_handler
        if handler is not None:
            handler.acquire()  # no record is written while we truncate
            try:
                if handler.stream is not None:
                    handler.stream.flush()
                    handler.stream.truncate(0)
                else:  # the file a record would reopen, never through a symlink
                    fd = open_private(handler.baseFilename, "log file", os.O_WRONLY)
                    try:
                        os.ftruncate(fd, 0)
                    finally:
                        os.close(fd)
            finally:
                handler.release()
        self.memory.clear()

    def close(self) -> None:
        self.rate_limit.flush()  # the counts of lines dropped lately, before the handlers go
        with self._lock:
            for handler in (self.file_handler, self.stderr_handler, self.memory):
                if handler is not None:
                    self.logger.removeHandler(handler)
                    for name in LIBRARIES:
                        logging.getLogger(name).removeHandler(handler)
                    handler.close()
            self.file_handler = None
            self.stderr_handler = None
