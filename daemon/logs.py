"""The daemon's logging: stderr, a log file, and the last lines kept in memory.

stderr carries timestamps, except under the systemd journal (``$JOURNAL_STREAM``
set), where each line starts with a ``<N>`` syslog priority instead so that
``journalctl -p warning`` works. The file is a ``WatchedFileHandler`` (a
logrotate rename is followed) opened in append mode, so ``clear()`` can
truncate it in place and the next line lands at offset 0 with no hole.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from daemon.files import PrivateFileError, check_trusted_dir, make_dirs, open_private

ROOT = "daemond"
#: libraries whose log records go through daemond's handlers (same format, journal priorities)
LIBRARIES = ("watchdog",)
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


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
    (nor when logrotate's rename is followed)."""

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

    _refused: str | None = None


class LogService:
    """Owns the daemon's handlers; the control commands ``logs`` and ``clear-logs`` use it."""

    def __init__(self):
        self.logger = logging.getLogger(ROOT)
        self.memory = MemoryHandler(1000)
        self.file_handler: logging.FileHandler | None = None
        self.stderr_handler: PromptAwareHandler | None = None
        self._lock = threading.Lock()  # guards handler replacement during reconfigure

    def setup(self, level: str, file: Path | None, buffer: int, stderr: bool = True) -> None:
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
                    new_handler = PrivateWatchedFileHandler(str(file), encoding="utf-8")
                    new_handler.setFormatter(formatter)
                if self.file_handler is not None:
                    self.logger.removeHandler(self.file_handler)
                    for name in LIBRARIES:
                        logging.getLogger(name).removeHandler(self.file_handler)
                    self.file_handler.close()
                    self.file_handler = None
                if new_handler is not None:
                    self.file_handler = new_handler
                    self.logger.addHandler(self.file_handler)
                    for name in LIBRARIES:
                        logging.getLogger(name).addHandler(self.file_handler)

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
        with self._lock:
            for handler in (self.file_handler, self.stderr_handler, self.memory):
                if handler is not None:
                    self.logger.removeHandler(handler)
                    for name in LIBRARIES:
                        logging.getLogger(name).removeHandler(handler)
                    handler.close()
            self.file_handler = None
            self.stderr_handler = None
