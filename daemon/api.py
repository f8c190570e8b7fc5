"""What a plugin may use of the running daemon: the ``daemon`` argument of hooks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from daemon.session import Session


class DaemonAPI:
    """The running daemon, as plugins see it: the ``daemon`` argument of hooks.

    The same object reaches every plugin (and is ``session.daemon``); it
    lives as long as the daemon. Every member may be used from any thread.

    Example (a plugin that logs and keeps a file in the state directory)::

        @hookimpl
        def daemond_start(daemon):
            log = daemon.logger("wordcount")           # logger "daemond.plugin.wordcount"
            path = daemon.resolve("wordcount.txt")     # <state_dir>/wordcount.txt
            log.info("counting into %s; listeners: %s", path, daemon.listeners())
    """

    def __init__(self, daemon: Any):
        self._daemon = daemon  # the daemon.core.Daemon (not imported: the daemon sits above its API)

    @property
    def state_dir(self) -> Path:
        """Where plugins keep their files (``state_dir:`` of the config); create them private
        (:func:`open_private`, :func:`create_private_sqlite`)."""
        return self._daemon.config.state_dir

    @property
    def config_path(self) -> Path:
        """The config file the daemon runs from."""
        return self._daemon.config.path

    @property
    def hook(self):
        """The daemon-wide hooks, calling every loaded plugin: for plugins that cooperate,
        e.g. ``daemon.hook.daemond_chat_rooms()``. Keyword arguments only."""
        return self._daemon.pm.hook

    @property
    def started_at(self) -> float:
        """When the daemon started (epoch seconds)."""
        return self._daemon.started_at

    def resolve(self, path: str) -> Path:
        """A path from a plugin's settings as the path it names: a relative one stands in
        :attr:`state_dir`, an absolute one is returned as it is (``~`` is expanded)."""
        return self._daemon.config.resolve(path)

    def logger(self, plugin: str) -> logging.Logger:
        """The logger for a plugin's messages: ``logging.getLogger("daemond.plugin.<plugin>")``.

        Its records go where the daemon's log goes (``logging:`` in the config),
        at the configured level, and ``daemonctl logs`` shows them. Name it
        after your plugin: ``daemon.logger("rot13")``.
        """
        return logging.getLogger(f"daemond.plugin.{plugin}")

    def listeners(self) -> list[str]:
        """The names of the listeners running now."""
        return list(self._daemon.listeners)

    def sessions(self, listener: str | None = None) -> list[Session]:
        """The connected sessions, of one listener (by name) or all; a snapshot list."""
        return self._daemon.sessions(listener)

    def native_cpus(self) -> set[int] | None:
        """The CPUs for threads or helper processes of yours that run native code without the
        GIL (hashing, compression): every CPU but the one the daemon keeps its Python threads on
        (``tuning.pin_threads``). Move such threads there with ``os.sched_setaffinity(0, cpus)``.
        None: no such split (pinning off, or one CPU) — leave them where they are."""
        return self._daemon.policy.native_cpus()

    @property
    def cluster(self):
        """This daemon as a node of a cluster (:class:`Cluster`: its Redis, its name, the live
        nodes) when ``cluster.redis`` is set; ``None`` when it runs standalone. A plugin that
        answers ``True`` to ``daemond_cluster_ready`` keeps what the nodes share there."""
        return self._daemon.cluster

    def request_stop(self) -> None:
        """Ask the daemon to shut down gracefully (returns at once)."""
        self._daemon.request_stop()
