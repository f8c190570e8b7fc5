"""For tools that run without the daemon (an offline admin command): a plugin's settings as the daemon would see them."""

from __future__ import annotations


def load_plugin_settings(config_path, plugin_name: str):
    """A plugin's validated settings, for a tool that runs without the daemon (an offline admin
    command): the config is found as ``daemond -c`` finds it (``config_path`` None: the usual
    search) and checked whole, as ``daemond --check-config`` does.

    Returns ``(settings, resolve)``: the plugin's section with its defaults filled in (``{}``
    if the config has none), and a function that turns a path from it into the path it names,
    as :meth:`DaemonAPI.resolve` does. Raises :class:`PluginError` with every problem, one per
    line, if the config cannot be used.

    Example (``python -m mypkg.admin -c /etc/daemond.yaml``)::

        settings, resolve = load_plugin_settings(args.config, "wordcount")
        db = sqlite3.connect(resolve(settings["database"]))
    """
    from daemon.config import ConfigError, find_config, load_config
    from daemon.loader import PluginError, PluginLoader

    try:
        config = load_config(find_config(config_path), PluginLoader())
    except ConfigError as exc:
        raise PluginError("\n".join(str(problem) for problem in exc.problems)) from None
    return config.plugin_settings.get(plugin_name, {}), config.resolve
