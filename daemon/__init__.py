"""daemond: a pluggable, threaded network daemon.

A plugin needs only what this module exports::

    from daemon import hookimpl

The session, line and settings types a hook receives are re-exported here too;
everything else under ``daemon.`` is private and may change. Each name is documented
in its own docstring, rendered into docs/api.md (``python -m daemon.apidocs --write``).
The names:

* markers: ``hookimpl`` (and ``hookspec``, for the contract itself);
* sessions: ``Session``, ``SessionEnd``;
* lines: ``split_command(line)`` (``("/name", "args")``, the name lower-cased, or None
  for a plain line, ``//x`` included), ``plain_text(line)`` (a plain line with its
  leading ``//`` escape undone: ``//x`` is ``/x``),
  ``parse_count(text)`` (a whole number in ASCII digits from a client, or None);
* settings: ``Schema``, ``Field``;
* control commands: ``ControlCommand``, ``Argument``, ``CommandError``,
  ``ArgumentNeeded`` (raise it to have daemonctl or the console ask for an argument);
* errors and the daemon: ``PluginError``, ``DaemonAPI``;
* cluster mode (docs/cluster.md): ``Cluster`` (``daemon.cluster``: the shared Redis, this node's
  name, the live nodes), ``ClusterUnavailable`` (Redis cannot be reached: answer ``-ERR unavailable``);
* private files: ``open_private``, ``create_private_sqlite``, ``check_private_sqlite``,
  ``PrivateFileError``
  (``daemon.files``: files only this user may read, never through a symlink);
* tools that run without the daemon: ``load_plugin_settings(config_path, plugin_name)``,
  ``read_secret(prompt, confirm=False)`` (a password, without echo on a terminal, else one
  line of stdin; ``confirm``: asked twice, ``SecretsDiffer`` if the two differ).
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
    "ArgumentNeeded",
    "CommandError",
    "PluginError",
    "DaemonAPI",
    "Cluster",
    "ClusterUnavailable",
    "split_command",
    "plain_text",
    "parse_count",
    "open_private",
    "create_private_sqlite",
    "check_private_sqlite",
    "PrivateFileError",
    "load_plugin_settings",
    "read_secret",
    "SecretsDiffer",
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
    if name in ("split_command", "plain_text", "parse_count"):
        from daemon import lines

        return getattr(lines, name)
    if name == "DaemonAPI":
        from daemon.api import DaemonAPI

        return DaemonAPI
    if name in ("ControlCommand", "Argument", "ArgumentNeeded", "CommandError"):
        from daemon import commands

        return getattr(commands, name)
    if name in ("read_secret", "SecretsDiffer"):
        from daemon.control import secret_input

        return getattr(secret_input, name)
    if name in ("Cluster", "ClusterUnavailable"):
        from daemon import cluster  # redis itself is imported only when a Cluster is made

        return getattr(cluster, name)
    if name == "load_plugin_settings":
        from daemon.offline import load_plugin_settings

        return load_plugin_settings
    if name == "PluginError":
        from daemon import loader

        return loader.PluginError
    if name in ("open_private", "create_private_sqlite", "check_private_sqlite", "PrivateFileError"):
        from daemon import files

        return getattr(files, name)
    raise AttributeError(f"module 'daemon' has no attribute {name!r}")
