"""The control facade: all that the core's control commands and the console may ask of the daemon.

The whole interface, read by ``core_commands.py``, ``foreground.py`` and ``console.py``:

- ``status() -> dict``: the daemon's state (the ``status`` command's result)
- ``pause() -> str``, ``resume() -> str``: refuse / accept new connections; a line for people
- ``reload(source="control") -> dict``: re-read and apply the config; the reload report
- ``request_reload()``: reload soon, on the reload thread (SIGHUP)
- ``request_stop()``, ``stop_requested -> bool``: ask for a graceful stop / whether one was asked
- ``plugin_list() -> list[dict]``: the loaded plugins (the ``plugins`` command's result)
- ``kick(user, reason=None) -> dict``: end every session of a user on every listener
- ``cluster``: the :class:`~daemon.cluster.Cluster` (this daemon as a cluster node), or None: standalone
- ``commands``: the :class:`~daemon.commands.CommandRegistry` (``help``, the console)
- ``logs``: the :class:`~daemon.logs.LogService` (``logs``, ``clear-logs``, the console's prompt)
- ``state_dir -> Path``: the state directory (the console keeps its history there)

It wraps the Daemon rather than being it so that the commands never reach into
the Daemon's listeners, config, threads or reloader: this class is the one
place that names the Daemon's attributes, and it does not import the Daemon,
so the control package stays below it in the import graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from daemon.cluster import Cluster
    from daemon.commands import CommandRegistry
    from daemon.logs import LogService


class DaemonControl:
    """The control facade over one Daemon (see the module docstring)."""

    def __init__(self, daemon: Any):
        self._daemon = daemon  # a daemon.core.Daemon, not imported: see above

    def status(self) -> dict[str, Any]:
        return self._daemon.status()

    def pause(self) -> str:
        return self._daemon.pause()

    def resume(self) -> str:
        return self._daemon.resume()

    def reload(self, source: str = "control") -> dict[str, Any]:
        return self._daemon.reload(source)

    def request_reload(self) -> None:
        self._daemon.request_reload()

    def request_stop(self) -> None:
        self._daemon.request_stop()

    @property
    def stop_requested(self) -> bool:
        return self._daemon.stop_requested

    def plugin_list(self) -> list[dict[str, Any]]:
        return self._daemon.plugin_list()

    def kick(self, user: str, reason: str | None = None) -> dict[str, Any]:
        return self._daemon.kick(user, reason)

    @property
    def cluster(self) -> Cluster | None:
        return self._daemon.cluster

    @property
    def commands(self) -> CommandRegistry:
        return self._daemon.commands

    @property
    def logs(self) -> LogService:
        return self._daemon.logs

    @property
    def state_dir(self) -> Path:
        return self._daemon.config.state_dir
