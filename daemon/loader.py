"""Finding, loading and registering plugins.

Plugins are found by name: a bare name among the entry points of the group
``daemond.plugins`` only (the built-ins register there exactly like a
third-party package); a dotted module path (``mypkg.rot13`` or
``mypkg.mod:Class``) among the installed modules, and in the working
directory only when the config's ``plugins_from_working_dir`` says so.
A module is registered as it is; a class is instantiated once per daemon, so a
plugin that keeps state (a chat room, a user store) keeps it per daemon.

The core never imports a plugin by name: everything it knows of plugins comes
through this module and the hooks in :mod:`daemon.hookspecs`.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import logging
import os
import sys
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from daemon import hookspecs
from daemon.version import PROJECT

ENTRY_POINT_GROUP = "daemond.plugins"

log = logging.getLogger("daemond.plugins")


class PluginLoadError(Exception):
    """A plugin could not be found, imported or registered."""


class PluginError(Exception):
    """Raise from ``daemond_configure`` or ``daemond_start`` for a failure the operator must fix.

    The daemon exits 1 with ``plugin NAME failed to start: MESSAGE`` — your
    message, one line, no traceback (other exceptions are logged with theirs,
    as the bugs they are). :func:`load_plugin_settings` raises it too.

    Example::

        @hookimpl
        def daemond_start(daemon):
            if not daemon.resolve("words.txt").exists():
                raise PluginError(f"{daemon.resolve('words.txt')} is missing: create it first")
    """


def new_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager that knows daemond's hooks (and traces them if asked)."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    if tracing_enabled():
        _trace(pm)
    return pm


def tracing_enabled() -> bool:
    """Whether hook calls are traced to the log (``DAEMOND_TRACE_HOOKS=1``)."""
    return os.environ.get("DAEMOND_TRACE_HOOKS", "") not in ("", "0")


def _trace(pm: pluggy.PluginManager) -> None:
    trace_log = logging.getLogger("daemond.trace")

    def before(hook_name, hook_impls, kwargs):
        trace_log.info("call %s(%s) -> %s", hook_name, _args(kwargs), [i.plugin_name for i in hook_impls])

    def after(outcome, hook_name, hook_impls, kwargs):
        exc = outcome.exception
        if exc is not None:
            trace_log.info("  %s raised %r", hook_name, exc)
        else:
            trace_log.info("  %s returned %r", hook_name, outcome.get_result())

    pm.add_hookcall_monitoring(before, after)


def _args(kwargs: dict[str, Any]) -> str:
    # a password (daemond_account_login's) is never written to the log, traced or not
    return ", ".join("password=<hidden>" if k == "password" else f"{k}={v!r}"[:200] for k, v in kwargs.items())


@dataclass
class LoadedPlugin:
    """One plugin, loaded once per daemon."""

    name: str
    obj: Any
    source: str  # "built-in", "entry point" or "path"
    version: str
    module: str
    #: a manager holding only this plugin, for the hooks called per plugin
    own: pluggy.PluginManager = field(repr=False, default=None)

    def settings_schema(self):
        return self.own.hook.daemond_settings_schema()

    def requires(self) -> list[str]:
        return [name for result in self.own.hook.daemond_requires() if result for name in result]

    def cluster_ready(self) -> bool:
        return self.own.hook.daemond_cluster_ready() is True

    def cluster_import(self, daemon) -> list[str]:
        return [line for result in self.own.hook.daemond_cluster_import(daemon=daemon) if result for line in result]

    def configure(self, settings: dict[str, Any], daemon) -> None:
        self.own.hook.daemond_configure(settings=settings, daemon=daemon)

    def status(self, daemon) -> list[dict[str, Any]]:
        return [r for r in self.own.hook.daemond_status(daemon=daemon) if r]

    def control_commands(self, daemon) -> list[Any]:
        return [c for result in self.own.hook.daemond_control_commands(daemon=daemon) if result for c in result]


class PluginLoader:
    """Finds plugins by name and loads each once (per daemon).

    A bare name (``chat``) is an installed entry point and nothing else: a file
    ``chatt.py`` where daemond happens to start is never imported for a typo. A
    dotted path (``mypkg.rot13``, ``mypkg.rot13:Rot13``, ``rot13:Rot13``) is imported
    from the installed packages, and from the working directory only when the config
    says ``plugins_from_working_dir: true`` and ``working_dir_allowed`` (False under
    ``daemond --check-config`` unless it is given ``--plugins-from-working-dir``).
    """

    def __init__(self, group: str = ENTRY_POINT_GROUP, working_dir_allowed: bool = True):
        self._entry_points = {ep.name: ep for ep in entry_points(group=group)}
        self._loaded: dict[str, LoadedPlugin] = {}
        self.working_dir_allowed = working_dir_allowed

    def available(self) -> list[str]:
        return sorted(self._entry_points)

    def loaded(self) -> dict[str, LoadedPlugin]:
        return dict(self._loaded)

    def load(self, name: str, from_working_dir: bool = False) -> LoadedPlugin:
        """The plugin ``name``; ``from_working_dir``: a dotted path may come from the working directory."""
        if name in self._loaded:
            return self._loaded[name]
        ep = self._entry_points.get(name)
        if ep is not None:
            try:
                obj = ep.load()
            except Exception as exc:
                raise PluginLoadError(f"failed to import {ep.value}: {exc.__class__.__name__}: {exc}") from exc
            dist = getattr(ep, "dist", None)
            source = "built-in" if dist is not None and dist.name == "daemond" else "entry point"
            version = dist.version if dist is not None else "?"
        elif "." not in name and ":" not in name:
            known = ", ".join(self.available()) or "none installed"
            raise PluginLoadError(f"unknown plugin (known: {known}; a module is named by its dotted path, "
                                  "mypkg.module or module:Class)")
        else:
            module_name, _, attr = name.partition(":")
            try:
                obj = self._import(module_name, from_working_dir)
                if attr:
                    obj = getattr(obj, attr)
            except ModuleNotFoundError as exc:
                hint = self._hint(module_name, exc, from_working_dir)
                raise PluginLoadError(f"cannot import {name!r}: {exc}{hint}") from exc
            except ImportError as exc:
                raise PluginLoadError(f"cannot import {name!r}: {exc}") from exc
            except AttributeError as exc:
                raise PluginLoadError(f"{exc}") from exc
            except Exception as exc:
                raise PluginLoadError(f"failed to import {name!r}: {exc.__class__.__name__}: {exc}") from exc
            source = "path"
            version = str(getattr(sys.modules.get(module_name), "__version__", "?"))
        if isinstance(obj, type):
            try:
                obj = obj()
            except Exception as exc:
                raise PluginLoadError(f"cannot create {obj.__name__}(): {exc}") from exc
        module = getattr(obj, "__name__", None) or type(obj).__module__
        plugin = LoadedPlugin(name=name, obj=obj, source=source, version=version, module=module)
        plugin.own = register_all([plugin])
        self._loaded[name] = plugin
        return plugin

    def _import(self, module_name: str, from_working_dir: bool):
        """Import a dotted path from the installed packages, else (if allowed) the working directory."""
        top = module_name.split(".")[0]
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != top or not (from_working_dir and self.working_dir_allowed):
                raise
        here = os.getcwd()
        spec = importlib.machinery.PathFinder.find_spec(top, [here])  # not via sys.path: only for this plugin
        if spec is None or spec.loader is None:
            raise ModuleNotFoundError(f"No module named {top!r} (nor in the working directory {here})", name=top)
        module = importlib.util.module_from_spec(spec)
        sys.modules[top] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[top]
            raise
        return importlib.import_module(module_name)

    def _hint(self, module_name: str, exc: ModuleNotFoundError, from_working_dir: bool) -> str:
        """Why a module in the working directory was not imported, if one is there."""
        top = module_name.split(".")[0]
        here = os.getcwd()
        if exc.name != top or not any(os.path.exists(os.path.join(here, top + ext)) for ext in ("", ".py")):
            return ""
        if not from_working_dir:
            return f" (the working directory is not searched: set plugins_from_working_dir: true to import {top} from it)"
        if not self.working_dir_allowed:
            return " (--check-config imports nothing from the working directory unless given --plugins-from-working-dir)"
        return ""


def register_all(plugins: list[LoadedPlugin]) -> pluggy.PluginManager:
    """A new manager with ``plugins`` registered so that the first is called first.

    pluggy calls the last registered implementation first, so they are
    registered in reverse. Implementations are checked against the specs:
    a wrong argument or an unknown ``daemond_…`` hook raises PluginLoadError.
    """
    pm = new_plugin_manager()
    for plugin in reversed(plugins):
        try:
            pm.register(plugin.obj, name=plugin.name)
        except ValueError:
            # The same object under a second name (a module listed twice) is a config error elsewhere.
            raise PluginLoadError(f"plugin {plugin.name!r} is already registered") from None
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(f"invalid hook implementation: {exc}") from None
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginLoadError(f"{exc} (no such hook in daemon/hookspecs.py)") from None
    return pm


class Chain:
    """A listener's plugins, in order, with their session hooks resolved once.

    Sessions use ``chain.hook`` for every hook, and the two hot paths —
    ``on_line`` and ``on_data`` — are looked up here once per chain instead
    of once per line or chunk.
    """

    def __init__(self, plugins: list[LoadedPlugin]):
        self.plugins = list(plugins)
        self.names = tuple(p.name for p in plugins)
        self.pm = register_all(self.plugins)
        self.hook = self.pm.hook
        line_impls = [i for i in self.hook.daemond_line_received.get_hookimpls() if not (i.wrapper or i.hookwrapper)]
        #: True when input is framed into lines (some plugin handles lines)
        self.line_mode = bool(line_impls)
        self.on_line = self.hook.daemond_line_received
        self.on_data = _direct_caller(self.hook.daemond_data_received, ("session", "data"))
        self.has_data_handler = bool(self.hook.daemond_data_received.get_hookimpls())
        #: True when a plugin gates the listener behind a login (the ``daemond_login_gate`` hook):
        #: the listener then caps connections not yet logged in per address
        self.login_gated = self._login_gated()

    def _login_gated(self) -> bool:
        try:
            gated = bool(self.hook.daemond_login_gate())
        except Exception as exc:
            raise PluginLoadError(f"daemond_login_gate raised {type(exc).__name__}: {exc}") from None
        for plugin in self.plugins:  # the attribute that came before the hook, still honoured
            legacy = getattr(plugin.obj, "daemond_login_gate", None)
            if legacy is not None and not callable(legacy):
                warnings.warn(f"plugin {plugin.name!r}: the daemond_login_gate attribute is deprecated; "
                              "implement the daemond_login_gate hook instead", DeprecationWarning, stacklevel=2)
                gated = gated or bool(legacy)
        return gated

    def blame(self, exc: BaseException) -> str | None:
        """The plugin whose session hook raised ``exc`` (None if none of them is in its traceback)."""
        return blame(exc, [getattr(self.hook, name) for name in _SESSION_HOOKS])


_SESSION_HOOKS = ("daemond_session_open", "daemond_session_login", "daemond_line_received",
                  "daemond_data_received", "daemond_session_close", "daemond_line_commands")


def blame(exc: BaseException, hooks) -> str | None:
    """The plugin to blame for ``exc``: the one whose implementation of one of ``hooks`` is the
    innermost such frame in its traceback."""
    plugin_of = {impl.function.__code__: impl.plugin_name for hook in hooks for impl in hook.get_hookimpls()
                 if hasattr(impl.function, "__code__")}
    found = None
    tb = exc.__traceback__
    while tb is not None:
        found = plugin_of.get(tb.tb_frame.f_code, found)
        tb = tb.tb_next
    return found


def _direct_caller(hook, argnames: tuple[str, ...]):
    """The cheapest way to call ``hook``: the function itself when one plain implementation
    takes the arguments in spec order, else pluggy's caller with keywords."""
    impls = hook.get_hookimpls()
    if len(impls) == 1 and not tracing_enabled():
        impl = impls[0]
        if not (impl.wrapper or impl.hookwrapper) and tuple(impl.argnames) == argnames:
            return impl.function
    names = argnames

    def call(*args):
        return hook(**dict(zip(names, args)))

    return call
