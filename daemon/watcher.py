"""The reload thread: watches the config file, and turns file events, SIGHUP and requests into reloads.

watchdog watches the config's *directory*, because editors save by writing a
temp file and renaming it over the original. File events are debounced
(trailing edge) and ignored when the content's hash did not change. What a
reload does is the daemon's own business: this thread only calls it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from daemon.config import file_digest

log = logging.getLogger("daemond.reload")


class _QuietStop(logging.Filter):
    """watchdog logs an ERROR when an inotify event races Observer.stop(); it is harmless."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in str(record.msg)


_QUIET_STOP = _QuietStop()


#: events that cannot change the content: reading the file to hash it causes them, so
#: reacting to them would re-read the file at every debounce period, forever
_READ_ONLY_EVENTS = {"opened", "closed_no_write"}


class _ConfigEvents(FileSystemEventHandler):
    def __init__(self, reloader: Reloader):
        self._reloader = reloader

    def on_any_event(self, event) -> None:
        if event.is_directory or event.event_type in _READ_ONLY_EVENTS:
            return
        target = self._reloader.path
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path and os.path.abspath(os.fsdecode(path)) == target:
                self._reloader.file_changed()
                return


class Reloader:
    """The reload thread: debounced file events, SIGHUP and explicit requests."""

    def __init__(self, path: str | os.PathLike, digest: str, reload: Callable[[str], object]):
        """``reload(source)`` reloads (``source``: "watch" or "signal"); ``digest``: the
        content last loaded, as :func:`daemon.config.file_digest` computes it."""
        self._reload = reload
        self.path = os.path.abspath(path)
        self._debounce = 0.25
        # _cond guards _due, _requested, _stopping and _seen_digest
        self._cond = threading.Condition()
        self._due: float | None = None  # when a debounced file change becomes a reload
        self._requested = False  # a SIGHUP asked for a reload now
        self._stopping = False
        self._seen_digest = digest  # content last loaded or tried
        self._thread = threading.Thread(target=self._run, name="reload", daemon=True)
        self._observer: Observer | None = None

    def start(self, watch: bool, debounce: float) -> None:
        self._thread.start()
        self.configure(watch, debounce)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def configure(self, watch: bool, debounce: float) -> None:
        """Turn watching on or off (``reload.watch``), set the debounce delay."""
        self._debounce = debounce
        if watch and self._observer is None:
            inotify_log = logging.getLogger("watchdog.observers.inotify")
            if _QUIET_STOP not in inotify_log.filters:
                inotify_log.addFilter(_QUIET_STOP)
            observer = Observer()
            observer.name = "reload-watch"
            observer.daemon = True
            observer.schedule(_ConfigEvents(self), os.path.dirname(self.path), recursive=False)
            try:
                observer.start()
            except OSError as exc:  # e.g. inotify watch limit reached
                log.error("cannot watch %s for changes: %s; reload with SIGHUP or daemonctl", self.path, exc)
                return
            self._observer = observer
            log.info("watching %s for changes", self.path)
            # an edit saved before the watch began would otherwise go unseen until the next one
            with self._cond:
                seen = self._seen_digest
            if file_digest(self.path) != seen:
                self.file_changed()
        elif not watch and self._observer is not None:
            self._stop_observer()
            log.info("no longer watching %s", self.path)

    def file_changed(self) -> None:
        with self._cond:
            self._due = time.monotonic() + self._debounce
            self._cond.notify()

    def request(self) -> None:
        """Reload as soon as possible (safe from a signal handler: it never blocks for long)."""
        with self._cond:
            self._requested = True
            self._cond.notify()

    def note_digest(self, digest: str) -> None:
        with self._cond:
            self._seen_digest = digest

    def stop(self) -> None:
        self._stop_observer()
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(10)

    def _stop_observer(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._requested and (self._due is None or time.monotonic() < self._due):
                    self._cond.wait(None if self._due is None else max(0.0, self._due - time.monotonic()))
                if self._stopping:
                    return
                forced, self._requested = self._requested, False
                self._due = None
            if forced:
                self._call_reload("signal")
                continue
            digest = file_digest(self.path)
            with self._cond:
                unchanged = digest is not None and digest == self._seen_digest
            if unchanged:
                log.debug("config file touched but its content did not change")
                continue
            self._call_reload("watch")

    def _call_reload(self, source: str) -> None:
        """Call the reload; whatever it raises is logged and the thread carries on (a dead
        reload thread would ignore every later edit and SIGHUP, and starve the watchdog)."""
        try:
            self._reload(source)
        except Exception:
            log.exception("reload (%s) of %s failed unexpectedly; still running on the last good config", source,
                          self.path)
