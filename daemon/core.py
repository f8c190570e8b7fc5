"""The daemon: owns the plugins, the listeners, the flusher, the logs and the runtime policy.

``Daemon.start()`` really waits until every listener is bound and re-raises a
failure as :class:`StartError` (one line, for stderr); ``Daemon.stop()`` stops
accepting, lets plugins say goodbye, closes every session and joins every
thread it started. ``Daemon.apply(config)`` changes a running daemon to match
a new, validated config, one small step per part (plugins, listeners, each
core section); a part that fails is reported and the rest still applies.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from dataclasses import fields, replace
from typing import Any

from daemon.addresses import format_address
from daemon.api import DaemonAPI
from daemon.changes import ConfigChanges, compare
from daemon.commands import CommandRegistry, ControlCommand
from daemon.config import Config, ConfigError, file_digest, load_config
from daemon.control.core_commands import core_commands
from daemon.control.endpoint import ControlError, ControlServer, group_problem
from daemon.files import PrivateFileError, check_trusted_dir, make_dirs
from daemon.listener import BindError, Listener
from daemon.loader import Chain, LoadedPlugin, PluginError, PluginLoader, PluginLoadError, blame, register_all
from daemon.descriptors import DescriptorReserve
from daemon.logs import LogService
from daemon.notify import Notifier
from daemon.outbox import Flusher
from daemon.policy import PlainThreads, TunedPolicy
from daemon.session import Session
from daemon.version import __version__
from daemon.watcher import Reloader

log = logging.getLogger("daemond")

#: Seconds sessions get to finish on their own at shutdown before they are cut.
CLOSE_GRACE = 2.0


#: daemond's exit status when its config asks what the process cannot do (sysexits' EX_CONFIG):
#: the unit's RestartPreventExitStatus= names it, so that systemd does not restart it in a loop.
EXIT_CONFIG = 78


class StartError(Exception):
    """The daemon cannot start; the message is one line for the operator. ``exit_status``: 1, or
    EXIT_CONFIG when the config asks what this process cannot do (restarting will not help)."""

    def __init__(self, message: str, exit_status: int = 1):
        super().__init__(message)
        self.exit_status = exit_status


class Daemon:
    def __init__(self, config: Config, loader: PluginLoader | None = None, *, log_to_stderr: bool = True,
                 policy: PlainThreads | None = None):
        self.config = config
        self.loader = loader or PluginLoader()
        self.api = DaemonAPI(self)
        self.logs = LogService()
        #: which thread serves a connection, where and at which priority (daemon/policy.py);
        #: PlainThreads() turns all of that off
        self.policy = policy if policy is not None else TunedPolicy()
        self.flusher = Flusher(on_start=self.policy.thread_started)
        #: spare file descriptors, so that the control socket answers when connections took the rest
        self.descriptors = DescriptorReserve()
        self.notifier = Notifier()
        self.listeners: dict[str, Listener] = {}
        #: every control command, core and plugins'; the control socket and the console run them
        self.commands = CommandRegistry()
        self.control: ControlServer | None = None
        #: this daemon as a cluster node (daemon/cluster.py); None: standalone (cluster.redis null)
        self.cluster = None
        #: listeners a reload removed; their sessions may still be finishing
        self.retired: list[Listener] = []
        self.reloader: Reloader | None = None
        self.last_reload: dict[str, Any] | None = None
        self._reload_lock = threading.Lock()  # one reload at a time, whoever asks
        self.pm = None
        self.started_at: float = 0.0
        self._log_to_stderr = log_to_stderr
        self._stop_requested = threading.Event()
        # _lock guards listeners (add/remove), _paused, _state and _hook_errors
        self._lock = threading.RLock()
        #: exceptions plugins raised outside sessions (status, control commands, stop hooks)
        self._hook_errors: Counter[str] = Counter()
        self._paused = False
        self._state = "new"  # new → running → stopping → stopped

    # -- start and stop --------------------------------------------------------

    def start(self) -> None:
        config = self.config
        self._prepare_state_dir()
        try:
            self.logs.setup(config.logging.level, config.log_file, config.logging.buffer, stderr=self._log_to_stderr,
                            max_size=config.logging.max_size)
        except PrivateFileError as exc:
            self.logs.close()
            raise StartError(str(exc)) from None
        except OSError as exc:
            raise StartError(f"cannot open log file {config.log_file}: {exc.strerror or exc}") from None
        log.info("daemond %s starting (pid %d) with config file %s", __version__, os.getpid(), config.path)
        log.info("state directory %s", config.state_dir)
        self.policy.start(config.tuning)
        started_plugins = False
        try:
            # First, so that a second daemond on the same state directory says so (the control
            # socket is live) before its plugins open shared files or its listeners fail to bind.
            try:
                self.descriptors.open()
            except OSError as exc:
                raise StartError(f"cannot start: {exc.strerror}") from None
            try:
                self.control = ControlServer(self.commands, config.control_socket, config.control.group,
                                             on_plugin_error=self.count_plugin_error, descriptors=self.descriptors)
                self.control.bind()
            except ControlError as exc:
                raise StartError(str(exc), EXIT_CONFIG if exc.config else 1) from None
            if config.cluster.redis is not None:
                self._join_cluster()
            try:
                self.pm = register_all(list(config.plugins.values()))
            except PluginLoadError as exc:
                raise StartError(str(exc)) from None
            for name, plugin in config.plugins.items():
                self._plugin_call(name, "configure", lambda: plugin.configure(config.plugin_settings.get(name, {}), self.api))
            started_plugins = True
            self._plugin_call(None, "start", lambda: self.pm.hook.daemond_start.call_historic(kwargs={"daemon": self.api}))
            for lc in config.listeners.values():
                try:
                    self.listeners[lc.name] = self._bound_listener(lc, Chain([config.plugins[n] for n in lc.plugins]))
                except BindError as exc:
                    raise StartError(str(exc)) from None
            self._register_commands()
            self.flusher.start()
            for listener in self.listeners.values():
                listener.start()
                log.info("listening on %s (%s) with plugins %s", format_address(*listener.address[:2]), listener.name,
                         ", ".join(listener.chain.names))
            self.control.start()
            if self.cluster is not None:
                self.cluster.beat()  # again, now that it can name its listeners
        except BaseException:
            self._abandon_start(started_plugins)
            raise
        self.started_at = time.time()
        self._state = "running"
        self.reloader = Reloader(config.path, config.digest, lambda source: self.reload(source=source),
                                 tick=self.daily_checks)
        self.reloader.watch_files(self.tls_files())
        self.reloader.start(config.reload.watch, config.reload.debounce)
        log.info("ready: %s", self.status_line())
        self.notifier.ready(self.status_line())
        self.notifier.start_watchdog(self.healthy, self.status_line)

    @property
    def threads(self):
        """The connection threads (the policy's), for status and tests."""
        return self.policy.threads

    def healthy(self) -> bool:
        """Whether the daemon's own threads are alive (gates systemd watchdog pings)."""
        if self._state != "running":
            return False
        with self._lock:
            listeners = list(self.listeners.values())
        reloader_ok = self.reloader is None or self.reloader.is_alive()
        control_ok = self.control is not None and self.control.is_alive()
        return self.flusher.is_alive() and reloader_ok and control_ok and all(lst.is_alive() for lst in listeners)

    def status_line(self) -> str:
        """A short human line for systemd's STATUS=."""
        conns = sum(lst.connection_count() for lst in self.listeners.values())
        paused = ", paused" if self._paused else ""
        return f"{len(self.listeners)} listeners, {conns} connections{paused}"

    def _register_commands(self) -> None:
        """The core's control commands, then each plugin's (``daemond_control_commands``)."""
        for command in core_commands(self):
            self.commands.register(command)
        for name, plugin in self.config.plugins.items():
            self.register_plugin_commands(name, plugin)

    def register_plugin_commands(self, name: str, plugin) -> None:
        """Register one plugin's control commands (at start, and for a plugin a reload loads); raises StartError."""
        provided: list = []
        self._plugin_call(name, "provide control commands", lambda: provided.extend(plugin.control_commands(self.api)))
        for command in provided:
            if not isinstance(command, ControlCommand):
                raise StartError(f"plugin {name!r}: daemond_control_commands returned {command!r}, not a ControlCommand")
            command.plugin = name
            try:
                self.commands.register(command)
            except ValueError as exc:
                raise StartError(f"plugin {name!r}: {exc}") from None

    def _join_cluster(self) -> None:
        """Connect to the cluster's Redis and start the heartbeat; an unreachable Redis is
        logged and retried (the node serves, answering what needs Redis with -ERR unavailable)."""
        self.cluster = self._cluster(self._cluster_facts)
        self.cluster.on("kick", lambda q: self._kick_here(str(q.get("user")), q.get("reason")))
        self.cluster.start()

    def _cluster(self, facts) -> Any:
        from daemon.cluster import Cluster  # imports redis: only cluster nodes do

        try:
            return Cluster(self.config.cluster, facts)
        except ImportError as exc:
            raise StartError(f"cluster.redis is set but the Redis client cannot be imported ({exc}): "
                             "pip install 'daemond[cluster]'", EXIT_CONFIG) from None
        except ValueError as exc:  # a URL redis-py cannot use (e.g. ?socket_timeout=x)
            raise StartError(f"cluster.redis: {exc}", EXIT_CONFIG) from None

    def import_into_cluster(self) -> list[str]:
        """``daemond cluster import``: connect to the cluster's Redis (no heartbeat: this is not a
        node), configure the plugins without starting them, and let each copy its standalone state
        in (``daemond_cluster_import``). The operator's lines; StartError naming a plugin that failed."""
        from daemon.cluster import ClusterUnavailable

        self.cluster = self._cluster(lambda: {})
        lines: list[str] = []
        try:
            self.pm = register_all(list(self.config.plugins.values()))
            for name, plugin in self.config.plugins.items():
                plugin.configure(self.config.plugin_settings.get(name, {}), self.api)
                try:
                    lines += [f"{name}: {line}" for line in plugin.cluster_import(self.api)]
                except ClusterUnavailable as exc:
                    raise StartError(f"plugin {name!r}: {exc}; run it again to copy the rest") from None
                except Exception as exc:
                    raise StartError(f"plugin {name!r}: import failed: {type(exc).__name__}: {exc}; "
                                     "what was copied stays, run it again to copy the rest") from None
        except PluginLoadError as exc:
            raise StartError(str(exc)) from None
        finally:
            self.cluster.redis.close()
        return lines

    def _cluster_facts(self) -> dict[str, Any]:
        """What this node's heartbeat says of it: its listeners and how many users are logged in."""
        with self._lock:
            listeners = list(self.listeners.values())
        return {"listeners": [f"{lst.name} {format_address(*lst.address[:2])}" for lst in listeners if lst.address],
                "users": sum(1 for lst in listeners for session in lst.sessions() if session.user is not None)}

    def _prepare_state_dir(self) -> None:
        state_dir = self.config.state_dir
        try:
            make_dirs(state_dir, 0o700)
        except PermissionError:
            raise StartError(f"cannot create state directory {state_dir}: permission denied") from None
        except OSError as exc:
            raise StartError(f"cannot create state directory {state_dir}: {exc.strerror or exc}") from None
        if not os.access(state_dir, os.W_OK | os.X_OK):
            raise StartError(f"state directory {state_dir} is not writable")
        try:  # nobody else may plant a symlink or a file where the daemon will write
            check_trusted_dir(state_dir, "state directory")
        except PrivateFileError as exc:
            raise StartError(str(exc)) from None

    def _plugin_call(self, name: str | None, what: str, call) -> None:
        try:
            call()
        except PluginError as exc:  # the operator's to fix: one line, no traceback
            culprit = name or blame(exc, [getattr(self.pm.hook, f"daemond_{what}")]) or "?"
            log.error("plugin %s failed to %s: %s", culprit, what, exc)
            raise StartError(f"plugin {culprit!r} failed to {what}: {exc}") from None
        except Exception as exc:
            culprit = name or blame(exc, [getattr(self.pm.hook, f"daemond_{what}")]) or "?"
            log.error("plugin %s failed to %s", culprit, what, exc_info=True)
            raise StartError(f"plugin {culprit!r} failed to {what}: {exc.__class__.__name__}: {exc}") from None

    def _abandon_start(self, started_plugins: bool) -> None:
        for listener in self.listeners.values():
            listener.stop_accepting()
        self.listeners.clear()
        self.policy.stop(time.monotonic())  # no waiting: no session has been told to end
        if self.flusher.is_alive():
            self.flusher.stop()
        if self.control is not None:
            self.control.stop()
        self.descriptors.close()
        if started_plugins and self.pm is not None:
            self._safe_hook("daemond_stopped")
        if self.cluster is not None:
            self.cluster.stop()
        self._state = "stopped"
        self.notifier.close()
        self.logs.close()

    def request_stop(self) -> None:
        """Ask for a graceful stop (signal handlers and control commands call this)."""
        self._stop_requested.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested; True if it was."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop_requested.is_set():
            step = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if step <= 0:
                break
            self._stop_requested.wait(step)  # short waits keep signal handlers prompt
        return self._stop_requested.is_set()

    def stop(self) -> None:
        """Stop accepting, close every session, stop every thread. Idempotent."""
        with self._lock:
            if self._state != "running":
                return
            self._state = "stopping"
        begun = time.monotonic()
        log.info("stopping")
        self.notifier.stopping()
        self.notifier.stop_watchdog()
        if self.reloader is not None:
            self.reloader.stop()
        with self._reload_lock:  # a reload under way finishes first
            pass
        for listener in self.listeners.values():
            listener.stop_accepting()
        self._safe_hook("daemond_stopping")
        sessions = self.sessions()
        for session in sessions:
            session.close("shutdown")
        every = list(self.listeners.values()) + self.retired
        deadline = time.monotonic() + CLOSE_GRACE
        left = [s for lst in every for s in lst.join_sessions(deadline)]
        for session in left:
            session.abort("shutdown")
        deadline = time.monotonic() + CLOSE_GRACE
        left = [s for lst in every for s in lst.join_sessions(deadline)]
        if left:
            log.warning("%d sessions did not end in time", len(left))
        self.policy.stop(deadline)  # spare threads end; the others finish their last log line
        self._safe_hook("daemond_stopped")
        if self.cluster is not None:
            self.cluster.stop()  # after the plugins: their last writes go to Redis first
        self.flusher.stop()
        self.control.stop()  # last: `daemonctl stop` sees its connection close when all is done
        self.descriptors.close()
        self._state = "stopped"
        self.notifier.close()
        log.info("stopped after %.2fs (%d sessions closed)", time.monotonic() - begun, len(sessions))
        self.logs.close()

    def _safe_hook(self, name: str) -> None:
        hook = getattr(self.pm.hook, name)
        try:
            hook(daemon=self.api)
        except Exception as exc:
            plugin = blame(exc, [hook])
            self.count_plugin_error(plugin)
            log.error("plugin %s raised in %s", plugin or "?", name, exc_info=True)

    def count_plugin_error(self, plugin: str | None) -> None:
        """Count an exception a plugin raised outside a session (shown in status and plugins)."""
        with self._lock:
            self._hook_errors[plugin or "?"] += 1

    def _errors_of(self, plugin: str, listeners: list[Listener]) -> int:
        """Every exception counted against ``plugin``: in sessions, and outside them."""
        with self._lock:
            outside = self._hook_errors.get(plugin, 0)
        return outside + sum(lst.errors.get(plugin, 0) for lst in listeners + self.retired)

    # -- reload ---------------------------------------------------------------

    def reload(self, source: str = "control") -> dict[str, Any]:
        """Re-read the config, validate all of it and apply what changed; returns the reload's
        report when applied or refused (the daemon keeps running on the last good config)."""
        with self._reload_lock:
            if self._state != "running":
                return {"ok": False, "errors": ["the daemon is not running"], "changes": [], "source": source}
            report = self._reload(source)
            self.last_reload = report
            if self.reloader is not None and report.get("digest"):
                self.reloader.note_digest(report["digest"])
            return report

    def _reload(self, source: str) -> dict[str, Any]:
        begun = time.monotonic()
        path = self.config.path
        report: dict[str, Any] = {"ok": False, "file": str(path), "source": source, "at": time.time(),
                                  "changes": [], "errors": [], "duration": 0.0}
        self.notifier.reloading()
        try:
            try:
                new = load_config(path, self.loader)
            except ConfigError as exc:
                report["errors"] = [str(p) for p in exc.problems]
                report["digest"] = file_digest(path)  # tried: the watcher need not try it again
            else:
                report["digest"] = new.digest
                try:
                    report["changes"], report["errors"] = self.apply(new)
                except Exception as exc:  # a bug, not the file's fault: refused, the daemon goes on
                    log.error("applying %s failed", path, exc_info=True)
                    report["errors"] = [f"{path}: cannot apply this config ({exc.__class__.__name__}: {exc})"]
                report["ok"] = not report["errors"]
        finally:
            report["duration"] = round(time.monotonic() - begun, 4)
            self.notifier.ready(self.status_line())
        if report["ok"]:
            log.info("reload (%s) of %s applied in %.3fs: %s", source, path, report["duration"],
                     "; ".join(report["changes"]) or "no changes")
        else:
            log.error("reload (%s) of %s failed in %.3fs; still running on the last good config:\n  %s",
                      source, path, report["duration"], "\n  ".join(report["errors"]))
            if report["changes"]:
                log.info("reload applied in part: %s", "; ".join(report["changes"]))
        return report

    def request_reload(self) -> None:
        """Reload soon, on the reload thread (for signal handlers)."""
        if self.reloader is not None:
            self.reloader.request()

    def apply(self, new: Config) -> tuple[list[str], list[str]]:
        """Make the running daemon match ``new`` (validated); returns (changes, errors)."""
        diff = compare(self.config, new)
        changes: list[str] = []
        errors: list[str] = list(diff.refused)
        if new.control.group != self.config.control.group:  # applied at the next start: would it fail?
            problem = group_problem(new.control.group)
            if problem:
                errors.append(f"{problem}; a restart with this config would fail")
        old, new = self.config, diff.config
        usable = self._apply_plugins(old, new, changes, errors)  # first: listeners may use new ones
        self._apply_listeners(old, new, usable, changes, errors)
        new = self._apply_logging(diff, changes, errors)
        self._apply_tuning(diff, changes)
        for listener in self.listeners.values():  # login_nice, or whether a plugin gates it, may have changed
            listener.policy_changed()
        if diff.changed("reload"):
            changes.append(diff.describe("reload"))
            if self.reloader is not None:
                self.reloader.configure(new.reload.watch, new.reload.debounce)
        # Keep plugins the old config named (their sessions may still run) so they stop cleanly.
        new.plugins = {**{k: v for k, v in old.plugins.items() if k not in new.plugins}, **usable}
        self.config = new
        if self.reloader is not None:
            self.reloader.watch_files(self.tls_files())
        return changes, errors

    def tls_files(self) -> set[str]:
        """Every file a TLS listener loads: a change to one reloads (certificates rotate by themselves)."""
        with self._lock:
            configs = [lst.config.tls for lst in self.listeners.values()]
        return {str(path) for tls in configs if tls is not None
                for path in (tls.cert, tls.key, tls.client_ca) if path is not None}

    def daily_checks(self) -> None:
        """Called once a day on the reload thread: warn of certificates about to expire."""
        with self._lock:
            listeners = list(self.listeners.values())
        for listener in listeners:
            listener.warn_if_expiring(force=True)

    def _apply_plugins(self, old: Config, new: Config, changes: list[str], errors: list[str]) -> dict[str, LoadedPlugin]:
        """Load plugins named for the first time, give the others their changed settings;
        returns the plugins new listeners may use."""
        usable = dict(new.plugins)
        for name, plugin in new.plugins.items():
            settings = new.plugin_settings.get(name, {})
            if name not in old.plugins and self.pm.get_plugin(name) is None:
                try:
                    self._load_plugin(plugin, settings)
                    changes.append(f"plugin {name} loaded")
                except Exception as exc:
                    log.error("plugin %s failed to load at reload", name, exc_info=True)
                    if self.pm.get_plugin(name) is not None:
                        self.pm.unregister(name=name)
                    errors.append(f"plugin {name!r} failed to load: {exc.__class__.__name__}: {exc}")
                    del usable[name]
            elif settings != old.plugin_settings.get(name, settings if name not in old.plugins else None):
                try:
                    plugin.configure(settings, self.api)
                    changes.append(f"plugin {name} settings changed")
                except Exception as exc:
                    log.error("plugin %s rejected its new settings", name, exc_info=True)
                    if not isinstance(exc, PluginError):  # a deliberate refusal is not a fault
                        self.count_plugin_error(name)
                    errors.append(f"plugin {name!r} rejected its new settings: {exc.__class__.__name__}: {exc}")
        for name in old.plugins:
            if name not in new.plugins:
                changes.append(f"plugin {name} no longer named: no new connections use it")
        return usable

    def _load_plugin(self, plugin: LoadedPlugin, settings: dict[str, Any]) -> None:
        plugin.configure(settings, self.api)
        self.pm.register(plugin.obj, name=plugin.name)  # replays the historic daemond_start
        try:
            self.register_plugin_commands(plugin.name, plugin)
        except StartError:
            self.commands.unregister_plugin(plugin.name)
            raise
        log.info("plugin %s (%s %s) loaded", plugin.name, plugin.source, plugin.version)

    def _apply_listeners(self, old: Config, new: Config, usable: dict[str, LoadedPlugin],
                         changes: list[str], errors: list[str]) -> None:
        for name in list(self.listeners):
            if name not in new.listeners:
                self._retire_listener(name)
                changes.append(f"listener {name} removed")
        for name, lc in new.listeners.items():
            missing = [p for p in lc.plugins if p not in usable]
            if missing:
                errors.append(f"listener {name!r} not changed: plugin(s) {', '.join(missing)} unavailable")
                continue
            try:
                chain = Chain([usable[p] for p in lc.plugins])
            except PluginLoadError as exc:
                errors.append(f"listener {name!r} not changed: {exc}")
                continue
            listener = self.listeners.get(name)
            if listener is None:
                try:
                    self._add_listener(self._bound_listener(lc, chain))
                except BindError as exc:
                    errors.append(str(exc))
                else:
                    changes.append(f"listener {name} added on {format_address(*self.listeners[name].address)}")
                continue
            self._change_listener(listener, lc, chain, old, usable, changes, errors)

    def _change_listener(self, listener: Listener, lc, chain: Chain, old: Config, usable: dict[str, LoadedPlugin],
                         changes: list[str], errors: list[str]) -> None:
        name, old_lc = listener.name, listener.config
        if (lc.host, lc.port) != (old_lc.host, old_lc.port):
            try:
                listener.rebind(lc)
            except BindError as exc:
                errors.append(f"{exc}; still listening on {format_address(*listener.address)}")
                lc = replace(lc, host=old_lc.host, port=old_lc.port)
            else:
                changes.append(f"listener {name} moved to {format_address(*listener.address)}")
        if lc.plugins != old_lc.plugins or any(usable[p] is not old.plugins.get(p) for p in lc.plugins):
            listener.use_chain(chain)
            changes.append(f"listener {name} plugins now {', '.join(lc.plugins)}")
        if lc != old_lc:
            listener.update(lc)
            changed = [f.name for f in fields(lc) if f.name not in ("host", "port", "plugins", "name")
                       and getattr(lc, f.name) != getattr(old_lc, f.name)]
            if changed:
                changes.append(f"listener {name} settings changed: {', '.join(changed)}")
        elif lc.tls is not None:
            listener.load_tls()  # the same files may hold a new certificate (renewed, rotated)
        if lc.tls is not None and listener.tls_error:
            errors.append(f"listener {name}: {listener.tls_error}")

    def _apply_logging(self, diff: ConfigChanges, changes: list[str], errors: list[str]) -> Config:
        new, old = diff.config, self.config
        if not diff.changed("logging") and new.log_file == old.log_file:
            return new
        try:
            self.logs.setup(new.logging.level, new.log_file, new.logging.buffer, stderr=self.logs.stderr_handler is not None,
                            max_size=new.logging.max_size)
            changes.append("logging settings changed")
        except PrivateFileError as exc:
            errors.append(str(exc))
            new = replace(new, log_file=old.log_file)
        except OSError as exc:
            errors.append(f"cannot open log file {new.log_file}: {exc.strerror or exc}")
            new = replace(new, log_file=old.log_file)
        return new

    def _apply_tuning(self, diff: ConfigChanges, changes: list[str]) -> None:
        if diff.changed("tuning"):
            self.policy.configure(diff.config.tuning, set(diff.sections["tuning"]))
            changes.append(diff.describe("tuning"))

    def _bound_listener(self, lc, chain: Chain) -> Listener:
        """A new listener for ``lc``, bound (raises BindError), not yet accepting."""
        listener = Listener(lc, chain, self.api, self.flusher, self.policy, self.descriptors)
        listener.bind()
        return listener

    def _add_listener(self, listener: Listener) -> None:
        with self._lock:
            self.listeners[listener.name] = listener
            listener.start()
            if self._paused:
                listener.pause()
        log.info("listening on %s (%s) with plugins %s", format_address(*listener.address[:2]), listener.name,
                 ", ".join(listener.chain.names))

    def _retire_listener(self, name: str) -> None:
        """Stop a listener (a reload removed it): its sessions get a notice and end."""
        with self._lock:
            listener = self.listeners.pop(name)
            self.retired.append(listener)
        listener.stop_accepting()
        for session in listener.sessions():
            session.notice_end("listener-removed", f"listener {name} was removed by a config reload",
                               f"NOTICE listener {name} was removed by a config reload; closing"
                               if listener.chain.line_mode else None)
            session.close("listener-removed")

    # -- what the control commands use ---------------------------------------

    def sessions(self, listener: str | None = None) -> list[Session]:
        with self._lock:
            listeners = [self.listeners[listener]] if listener else list(self.listeners.values()) + self.retired
        return [s for lst in listeners for s in lst.sessions()]

    def kick(self, user: str, reason: str | None = None) -> dict[str, Any]:
        """End every session logged in as ``user`` (not case-sensitive) on every listener —
        of every node, in cluster mode.

        A line client is told ``NOTICE kicked by the operator[: reason]`` first (a front end
        in its own protocol: ``daemond_farewell``).
        Returns ``{"user", "sessions", "listeners"}``; ``sessions`` is 0 if none was connected.
        Another node's listeners are named ``NODE/LISTENER``; ``"unreachable"`` says why the
        other nodes could not be asked (Redis unavailable).
        """
        result = self._kick_here(user, reason)
        if self.cluster is None:
            return result
        from daemon.cluster import ClusterUnavailable

        try:
            answers = self.cluster.ask_all("kick", {"user": user, "reason": reason})
        except ClusterUnavailable as exc:
            return {**result, "unreachable": str(exc)}
        for answer in answers:
            if answer.get("sessions"):
                result["sessions"] += int(answer["sessions"])
                result["listeners"] += [f"{answer['node']}/{name}" for name in answer.get("listeners", [])]
                result["user"] = answer.get("user") or result["user"]
        return result

    def _kick_here(self, user: str, reason: str | None) -> dict[str, Any]:
        key = user.lower()
        kicked = [s for s in self.sessions() if s.user is not None and s.user.lower() == key]
        notice = "NOTICE kicked by the operator" + (f": {reason}" if reason else "")
        for session in kicked:
            session.notice_end("kicked", reason or "", notice if session.chain.line_mode else None)
            session.close("kicked")
        if kicked:
            log.warning("kicked %s: %d sessions (%s)%s", kicked[0].user, len(kicked),
                        ", ".join(sorted({f"{s.listener} {s.peer_str}" for s in kicked})),
                        f"; reason: {reason}" if reason else "")
        return {"user": kicked[0].user if kicked else user, "sessions": len(kicked),
                "listeners": sorted({s.listener for s in kicked})}

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> str:
        with self._lock:
            if self._paused:
                return "already paused"
            for listener in self.listeners.values():
                listener.pause()
            self._paused = True
        log.warning("paused: new connections are refused")
        self.notifier.status(self.status_line())
        return f"paused {len(self.listeners)} listeners; connected sessions carry on"

    def resume(self) -> str:
        with self._lock:
            if not self._paused:
                return "not paused; nothing to do"
            for listener in self.listeners.values():
                listener.resume()
            self._paused = False
        log.warning("resumed: accepting connections again")
        self.notifier.status(self.status_line())
        return f"resumed {len(self.listeners)} listeners"

    def plugin_list(self) -> list[dict[str, Any]]:
        """Every loaded plugin: where it came from, who uses it, how often it raised."""
        with self._lock:
            listeners = list(self.listeners.values())
        return [
            {"name": name, "version": plugin.version, "source": plugin.source, "module": plugin.module,
             "listeners": [lst.name for lst in listeners if name in lst.chain.names],
             "errors": self._errors_of(name, listeners)}
            for name, plugin in self.config.plugins.items()
        ]

    def status(self) -> dict[str, Any]:
        with self._lock:
            listeners = list(self.listeners.values())
        plugins = {}
        for name, plugin in self.config.plugins.items():
            extras: dict[str, Any] = {}
            try:
                for extra in plugin.status(self.api):
                    extras.update(extra)
            except Exception as exc:
                extras["status_error"] = f"{exc.__class__.__name__}: {exc}"
                self.count_plugin_error(name)  # before the count below, which then includes it
            plugins[name] = {"version": plugin.version, "source": plugin.source,
                             "errors": self._errors_of(name, listeners),
                             "listeners": [lst.name for lst in listeners if name in lst.chain.names], **extras}
        return {
            "version": __version__,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "uptime": round(time.time() - self.started_at, 3) if self.started_at else 0.0,
            "config": str(self.config.path),
            "state_dir": str(self.config.state_dir),
            "paused": self._paused,
            "state": self._state,
            "connections": sum(lst.connection_count() for lst in listeners),
            "threads": self.policy.status(),
            "reload": self.last_reload,
            "listeners": [
                {
                    "name": lst.name,
                    "address": list(lst.address) if lst.address else None,
                    "plugins": list(lst.chain.names),
                    "connections": lst.connection_count(),
                    "accepted": lst.accepted,
                    "refused": lst.refused,
                    "errors": dict(lst.errors),
                    "paused": lst.paused,
                    "tls": None if lst.config.tls is None else {
                        "certificate": lst.tls_certificate and {
                            **lst.tls_certificate, "days_left": _days_left(lst.tls_certificate)},
                        "error": lst.tls_error,
                        "min_version": lst.config.tls.min_version,
                        "client_cert": lst.config.tls.client_cert,
                    },
                }
                for lst in listeners
            ],
            "plugins": plugins,
            "control": self.control.status() if self.control is not None else None,
            "descriptors": self.descriptors.status(),
            "cluster": self.cluster.status() if self.cluster is not None else None,
        }


def _days_left(certificate: dict[str, Any]) -> int:
    """Whole days until the certificate's notAfter, as of now (negative: expired)."""
    return int((certificate["not_after_epoch"] - time.time()) // 86400)
