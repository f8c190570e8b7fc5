"""daemond: a pluggable, threaded network daemon.

A plugin needs only what this module exports::

    from daemon import hookimpl

The session, line and settings types a hook receives are re-exported here too;
everything else under ``daemon.`` is private and may change. The names:

* markers: ``hookimpl`` (and ``hookspec``, for the contract itself);
* sessions: ``Session``, ``SessionEnd``;
* lines: ``split_command(line)`` (``("/name", "args")`` or None for a plain line),
  ``plain_text(line)`` (a plain line with its leading ``//`` escape undone);
* settings: ``Schema``, ``Field``;
* control commands: ``ControlCommand``, ``Argument``, ``CommandError``,
  ``ArgumentNeeded`` (raise it to have daemonctl or the console ask for an argument);
* errors and the daemon: ``PluginError``, ``DaemonAPI``;
* private files: ``open_private``, ``create_private_sqlite``, ``check_private_sqlite``,
  ``PrivateFileError``
  (``daemon.files``: files only this user may read, never through a symlink);
* tools that run without the daemon: ``load_plugin_settings(config_path, plugin_name)``.
"""

__version__ = "0.1.0"

#: The project name pluggy markers carry; hook names start with ``daemond_``.
PROJECT = "daemond"

__all__ = [
    "PROJECT",
    "__version__",
    "hookimpl",
    "hookspec",
    "Session",
    "SessionEnd",
    "Schema",
    "Field",
    "ControlCommand",
    "Argument",
    "ArgumentNeeded",
    "CommandError",
    "PluginError",
    "DaemonAPI",
    "split_command",
    "plain_text",
    "open_private",
    "create_private_sqlite",
    "check_private_sqlite",
    "PrivateFileError",
    "load_plugin_settings",
]


def load_plugin_settings(config_path, plugin_name: str):
    """A plugin's validated settings, for a tool that runs without the daemon (an offline admin
    command): the config is found as ``daemond -c`` finds it (``config_path`` None: the usual
    search) and checked whole, as ``daemond --check-config`` does.

    Returns ``(settings, resolve)``: the plugin's section with its defaults filled in (``{}``
    if the config has none), and a function that turns a path from it into the path it names,
    as :meth:`DaemonAPI.resolve` does. Raises :class:`PluginError` with every problem, one per
    line, if the config cannot be used.
    """
    from daemon.config import ConfigError, find_config, load_config
    from daemon.plugins import PluginError, PluginLoader

    try:
        config = load_config(find_config(config_path), PluginLoader())
    except ConfigError as exc:
        raise PluginError("\n".join(str(problem) for problem in exc.problems)) from None
    return config.plugin_settings.get(plugin_name, {}), config.resolve


def __getattr__(name):
    # Everything here is imported lazily so that ``import daemon`` stays cheap:
    # daemonctl imports ``daemon.ctl`` and must not pull in pluggy or the server.
    if name in ("hookspec", "hookimpl"):
        from daemon import markers

        return getattr(markers, name)
    if name in ("Session", "SessionEnd"):
        from daemon import session

        return getattr(session, name)
    if name in ("Schema", "Field"):
        from daemon import settings

        return getattr(settings, name)
    if name in ("split_command", "plain_text"):
        from daemon import lines

        return getattr(lines, name)
    if name == "DaemonAPI":
        from daemon.api import DaemonAPI

        return DaemonAPI
    if name in ("ControlCommand", "Argument", "ArgumentNeeded", "CommandError"):
        from daemon import commands

        return getattr(commands, name)
    if name == "PluginError":
        from daemon import plugins

        return plugins.PluginError
    if name in ("open_private", "create_private_sqlite", "check_private_sqlite", "PrivateFileError"):
        from daemon import files

        return getattr(files, name)
    raise AttributeError(f"module 'daemon' has no attribute {name!r}")
