"""Hot reload: watch the config, validate a new version in full, apply only the difference.

:class:`Reloader` owns the reload thread. Triggers come from watchdog (the
config's *directory* is watched, because editors save by writing a temp file
and renaming it over the original), from SIGHUP and from ``daemonctl reload``.
File events are debounced (trailing edge) and ignored when the content's hash
did not change. :func:`apply_config` changes a running daemon to match a new,
already validated :class:`~daemon.config.Config`: listeners added, removed,
re-bound or given new plugins and settings; plugins told of new settings.
A part that fails (a port in use) is reported and the rest still applies.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from daemon.config import Config, ConfigError, load_config
from daemon.listener import BindError, Listener
from daemon.plugins import Chain, PluginError, PluginLoadError
from daemon.tuning import apply_tuning

if TYPE_CHECKING:  # pragma: no cover
    from daemon.server import Daemon

log = logging.getLogger("daemond.reload")


class _QuietStop(logging.Filter):
    """watchdog logs an ERROR when an inotify event races Observer.stop(); it is harmless."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in str(record.msg)


logging.getLogger("watchdog.observers.inotify").addFilter(_QuietStop())

# Changes to these need a restart: the running daemon keeps the old values.
_RESTART_ONLY = (("state_dir", "state directory"), ("control_socket", "control socket path"),
                 ("control_group", "control socket group"), ("pin_threads", "tuning.pin_threads"),
                 ("cpu", "tuning.cpu"))


def reload_daemon(daemon: Daemon, source: str) -> dict[str, Any]:
    """Read, validate and apply the config file; return the reload's report."""
    begun = time.monotonic()
    path = daemon.config.path
    report: dict[str, Any] = {"ok": False, "file": str(path), "source": source, "at": time.time(),
                              "changes": [], "errors": [], "duration": 0.0}
    daemon.notifier.reloading()
    try:
        try:
            report["digest"] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            pass
        try:
            new = load_config(path, daemon.loader)
        except ConfigError as exc:
            report["errors"] = [str(p) for p in exc.problems]
        else:
            for warning in new.warnings:
                log.warning("%s", warning)
            report["changes"], report["errors"] = apply_config(daemon, new)
            report["ok"] = not report["errors"]
    finally:
        report["duration"] = round(time.monotonic() - begun, 4)
        daemon.notifier.ready(daemon.status_line())
    if report["ok"]:
        log.info("reload (%s) of %s applied in %.3fs: %s", source, path, report["duration"],
                 "; ".join(report["changes"]) or "no changes")
    else:
        log.error("reload (%s) of %s failed in %.3fs; still running on the last good config:\n  %s",
                  source, path, report["duration"], "\n  ".join(report["errors"]))
        if report["changes"]:
            log.info("reload applied in part: %s", "; ".join(report["changes"]))
    return report


def apply_config(daemon: Daemon, new: Config) -> tuple[list[str], list[str]]:
    """Make the running daemon match ``new``; returns (changes, errors)."""
    old = daemon.config
    changes: list[str] = []
    errors: list[str] = []

    for attr, what in _RESTART_ONLY:
        if getattr(new, attr) != getattr(old, attr):
            errors.append(f"{what} changed ({getattr(old, attr)} → {getattr(new, attr)}): needs a restart; kept the old one")
            new = replace(new, **{attr: getattr(old, attr)})

    # Plugins first, so that listeners can use new ones.
    usable = dict(new.plugins)
    for name, plugin in new.plugins.items():
        settings = new.plugin_settings.get(name, {})
        if name not in old.plugins and daemon.pm.get_plugin(name) is None:
            try:
                plugin.configure(settings, daemon.api)
                daemon.pm.register(plugin.obj, name=name)  # replays the historic daemond_start
                daemon.plugin_added(plugin)
                changes.append(f"plugin {name} loaded")
            except Exception as exc:
                log.error("plugin %s failed to load at reload", name, exc_info=True)
                if daemon.pm.get_plugin(name) is not None:
                    daemon.pm.unregister(name=name)
                errors.append(f"plugin {name!r} failed to load: {exc.__class__.__name__}: {exc}")
                del usable[name]
        elif settings != old.plugin_settings.get(name, settings if name not in old.plugins else None):
            try:
                plugin.configure(settings, daemon.api)
                changes.append(f"plugin {name} settings changed")
            except Exception as exc:
                log.error("plugin %s rejected its new settings", name, exc_info=True)
                if not isinstance(exc, PluginError):  # a deliberate refusal is not a fault
                    daemon.count_plugin_error(name)
                errors.append(f"plugin {name!r} rejected its new settings: {exc.__class__.__name__}: {exc}")
    for name in old.plugins:
        if name not in new.plugins:
            changes.append(f"plugin {name} no longer named: no new connections use it")

    for name in list(daemon.listeners):
        if name not in new.listeners:
            daemon.retire_listener(name)
            changes.append(f"listener {name} removed")

    for name, lc in new.listeners.items():
        missing = [p for p in lc.plugins if p not in usable]
        if missing:
            errors.append(f"listener {name!r} not changed: plugin(s) {', '.join(missing)} unavailable")
            continue
        listener = daemon.listeners.get(name)
        try:
            chain = Chain([usable[p] for p in lc.plugins])
        except PluginLoadError as exc:
            errors.append(f"listener {name!r} not changed: {exc}")
            continue
        if listener is None:
            listener = Listener(lc, chain, daemon.api, daemon.flusher, daemon.threads)
            try:
                listener.bind()
            except BindError as exc:
                errors.append(str(exc))
                continue
            daemon.add_listener(listener)
            changes.append(f"listener {name} added on {_fmt(listener.address)}")
            continue
        old_lc = listener.config
        if (lc.host, lc.port) != (old_lc.host, old_lc.port):
            try:
                listener.rebind(lc)
            except BindError as exc:
                errors.append(f"{exc}; still listening on {_fmt(listener.address)}")
                lc = replace(lc, host=old_lc.host, port=old_lc.port)
            else:
                changes.append(f"listener {name} moved to {_fmt(listener.address)}")
        if lc.plugins != old_lc.plugins or any(usable[p] is not old.plugins.get(p) for p in lc.plugins):
            listener.chain = chain
            changes.append(f"listener {name} plugins now {', '.join(lc.plugins)}")
        if lc != old_lc:
            listener.update(lc)
            settings_changed = [f for f in lc.__dataclass_fields__ if f not in ("host", "port", "plugins", "name")
                                and getattr(lc, f) != getattr(old_lc, f)]
            if settings_changed:
                changes.append(f"listener {name} settings changed: {', '.join(settings_changed)}")

    if (new.log_level, new.log_file, new.log_buffer) != (old.log_level, old.log_file, old.log_buffer):
        try:
            daemon.logs.setup(new.log_level, new.log_file, new.log_buffer, stderr=daemon.logs.stderr_handler is not None)
            changes.append("logging settings changed")
        except OSError as exc:
            errors.append(f"cannot open log file {new.log_file}: {exc.strerror or exc}")
            new = replace(new, log_file=old.log_file)
    if (new.switch_interval, new.thread_stack_size, new.malloc_mmap_threshold, new.login_nice) != \
            (old.switch_interval, old.thread_stack_size, old.malloc_mmap_threshold, old.login_nice):
        apply_tuning(new)
        changes.append(f"tuning: switch_interval {new.switch_interval}s, thread_stack_size {new.thread_stack_size}, "
                       f"malloc_mmap_threshold {new.malloc_mmap_threshold}, login_nice {new.login_nice}")
    if (new.spare_threads, new.spare_thread_timeout) != (old.spare_threads, old.spare_thread_timeout):
        daemon.threads.configure(new.spare_threads, new.spare_thread_timeout)
        changes.append(f"tuning: spare_threads {new.spare_threads}, spare_thread_timeout {new.spare_thread_timeout}s")
    if new.thread_stack_size != old.thread_stack_size:
        daemon.threads.retire_spares()  # threads made from now on get the new size
    for listener in daemon.listeners.values():  # login_nice, or whether a plugin gates it, may have changed
        listener.prioritize()
    if (new.reload_watch, new.reload_debounce) != (old.reload_watch, old.reload_debounce):
        changes.append(f"reload.watch is {'on' if new.reload_watch else 'off'}")

    # Keep plugins the old config named (their sessions may still run) so they stop cleanly.
    new.plugins = {**{k: v for k, v in old.plugins.items() if k not in new.plugins}, **usable}
    daemon.config = new
    if daemon.reloader is not None:
        daemon.reloader.configure(new.reload_watch, new.reload_debounce)
    return changes, errors


def _fmt(address) -> str:
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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

    def __init__(self, daemon: Daemon):
        self._daemon = daemon
        self.path = str(daemon.config.path)
        self._debounce = daemon.config.reload_debounce
        # _cond guards _due, _requested, _stopping and _seen_digest
        self._cond = threading.Condition()
        self._due: float | None = None  # when a debounced file change becomes a reload
        self._requested = False  # a SIGHUP asked for a reload now
        self._stopping = False
        self._seen_digest = daemon.config.digest  # content last loaded or tried
        self._thread = threading.Thread(target=self._run, name="reload", daemon=True)
        self._observer: Observer | None = None
        self.file_reloads = 0

    def start(self) -> None:
        self._thread.start()
        self.configure(self._daemon.config.reload_watch, self._debounce)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def configure(self, watch: bool, debounce: float) -> None:
        """Turn watching on or off (``reload.watch``), set the debounce delay."""
        self._debounce = debounce
        if watch and self._observer is None:
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
            if self._read_digest() != seen:
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

    def _read_digest(self) -> str | None:
        try:
            with open(self.path, "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()
        except OSError:
            return None  # gone for a moment (mid-rename) or unreadable: let reload report it

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
                self._daemon.reload(source="signal")
                continue
            digest = self._read_digest()
            with self._cond:
                unchanged = digest is not None and digest == self._seen_digest
            if unchanged:
                log.debug("config file touched but its content did not change")
                continue
            self.file_reloads += 1
            self._daemon.reload(source="watch")
