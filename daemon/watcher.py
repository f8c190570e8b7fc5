"""The reload thread: watches the config file (and the other files the daemon names), and turns
file events, SIGHUP and requests into reloads.

watchdog watches each file's *directory*, because editors save by writing a
temp file and renaming it over the original, and certbot swaps symlinks under
``live/``. File events are debounced (trailing edge); a config file event is
ignored when the content's hash did not change, while a change to another
watched file (:meth:`Reloader.watch_files`: the daemon's certificates) always
reloads. The thread also wakes once per ``tick_interval`` to call ``tick`` (the
daemon's periodic checks, such as certificate expiry). What a reload does is
the daemon's own business: this thread only calls it.
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
        target, others = self._reloader.path, self._reloader.watched_files
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if not path:
                continue
            path = os.path.abspath(os.fsdecode(path))
            if path == target:
                self._reloader.file_changed()
                return
            if path in others:
                self._reloader.file_changed(other=True)
                return


class Reloader:
    """The reload thread: debounced file events, SIGHUP and explicit requests."""

    def __init__(self, path: str | os.PathLike, digest: str, reload: Callable[[str], object],
                 tick: Callable[[], object] | None = None, tick_interval: float = 86400.0):
        """``reload(source)`` reloads (``source``: "watch" or "signal"); ``digest``: the
        content last loaded, as :func:`daemon.config.file_digest` computes it; ``tick()`` is
        called on this thread every ``tick_interval`` seconds."""
        self._reload = reload
        self._tick = tick
        self._tick_interval = tick_interval
        self.path = os.path.abspath(path)
        #: other files whose change reloads (read by the watchdog thread; replaced whole, never mutated)
        self.watched_files: frozenset[str] = frozenset()
        self._debounce = 0.25
        # _cond guards _due, _other_changed, _requested, _stopping and _seen_digest
        self._cond = threading.Condition()
        self._due: float | None = None  # when a debounced file change becomes a reload
        self._other_changed = False  # the debounced change touched a watched file other than the config
        self._requested = False  # a SIGHUP asked for a reload now
        self._stopping = False
        self._seen_digest = digest  # content last loaded or tried
        self._thread = threading.Thread(target=self._run, name="reload", daemon=True)
        self._observer: Observer | None = None
        self._watches: dict[str, object] = {}  # directory -> its watchdog watch (the config's included)
        self._watch_lock = threading.Lock()  # guards _observer's schedule and _watches (start, reload, stop)

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
            with self._watch_lock:
                try:
                    self._watches = {os.path.dirname(self.path): observer.schedule(
                        _ConfigEvents(self), os.path.dirname(self.path), recursive=False)}
                    observer.start()
                except OSError as exc:  # e.g. inotify watch limit reached
                    log.error("cannot watch %s for changes: %s; reload with SIGHUP or daemonctl", self.path, exc)
                    return
                self._observer = observer
                self._schedule_locked()
            log.info("watching %s for changes", self.path)
            # an edit saved before the watch began would otherwise go unseen until the next one
            with self._cond:
                seen = self._seen_digest
            if file_digest(self.path) != seen:
                self.file_changed()
        elif not watch and self._observer is not None:
            self._stop_observer()
            log.info("no longer watching %s", self.path)

    def watch_files(self, paths) -> None:
        """Also reload when one of ``paths`` changes (replaces the previous set): their
        directories are watched while ``reload.watch`` is on."""
        self.watched_files = frozenset(os.path.abspath(os.fspath(p)) for p in paths)
        with self._watch_lock:
            if self._observer is not None:
                self._schedule_locked()

    def _schedule_locked(self) -> None:
        """Watch exactly the directories of the config and of ``watched_files``."""
        wanted = {os.path.dirname(self.path)} | {os.path.dirname(p) for p in self.watched_files}
        for directory in set(self._watches) - wanted:
            self._observer.unschedule(self._watches.pop(directory))
        for directory in sorted(wanted - set(self._watches)):
            try:
                self._watches[directory] = self._observer.schedule(_ConfigEvents(self), directory, recursive=False)
            except OSError as exc:
                log.error("cannot watch %s for changes: %s; reload with SIGHUP or daemonctl", directory, exc)

    def file_changed(self, other: bool = False) -> None:
        """A watched file changed (``other``: not the config file, so reload whatever its hash)."""
        with self._cond:
            self._due = time.monotonic() + self._debounce
            self._other_changed = self._other_changed or other
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
        with self._watch_lock:
            observer, self._observer = self._observer, None
            self._watches = {}
        if observer is not None:
            observer.stop()
            observer.join(5)

    def _run(self) -> None:
        next_tick = time.monotonic() + self._tick_interval
        while True:
            with self._cond:
                while not self._stopping and not self._requested and (self._due is None or time.monotonic() < self._due):
                    now = time.monotonic()
                    if self._tick is not None and now >= next_tick:
                        break
                    wake = next_tick if self._tick is not None else None
                    if self._due is not None:
                        wake = self._due if wake is None else min(wake, self._due)
                    self._cond.wait(None if wake is None else max(0.0, wake - now))
                if self._stopping:
                    return
                ticking = self._tick is not None and time.monotonic() >= next_tick
                due = self._requested or (self._due is not None and time.monotonic() >= self._due)
                forced, self._requested = self._requested, False
                other, self._other_changed = (self._other_changed, False) if due else (False, self._other_changed)
                if due:
                    self._due = None
            if ticking:
                next_tick = time.monotonic() + self._tick_interval
                self._call(self._tick, "periodic check")
            if not due:
                continue
            if forced:
                self._call_reload("signal")
                continue
            if other:
                log.info("a watched file changed (%s)", ", ".join(sorted(self.watched_files)))
                self._call_reload("watch")
                continue
            digest = file_digest(self.path)
            with self._cond:
                unchanged = digest is not None and digest == self._seen_digest
            if unchanged:
                log.debug("config file touched but its content did not change")
                continue
            self._call_reload("watch")

    def _call(self, fn: Callable[[], object], what: str) -> None:
        try:
            fn()
        except Exception:
            log.exception("%s failed unexpectedly", what)

    def _call_reload(self, source: str) -> None:
        """Call the reload; whatever it raises is logged and the thread carries on (a dead
        reload thread would ignore every later edit and SIGHUP, and starve the watchdog)."""
        try:
            self._reload(source)
        except Exception:
            log.exception("reload (%s) of %s failed unexpectedly; still running on the last good config", source,
                          self.path)
