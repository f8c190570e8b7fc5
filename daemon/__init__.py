"""daemond: a pluggable, threaded network daemon.

A plugin needs only what this module exports::

    from daemon import hookimpl

The session, line and settings types a hook receives are re-exported here too;
everything else under ``daemon.`` is private and may change.
"""

from daemon.version import PROJECT, __version__

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
    "CommandError",
    "PluginError",
    "DaemonAPI",
    "split_command",
    "plain_text",
]


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
    if name in ("ControlCommand", "Argument", "CommandError"):
        from daemon import commands

        return getattr(commands, name)
    if name == "PluginError":
        from daemon import loader

        return loader.PluginError
    raise AttributeError(f"module 'daemon' has no attribute {name!r}")
