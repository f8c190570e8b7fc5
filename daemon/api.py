"""What a plugin may use of the running daemon: the ``daemon`` argument of hooks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from daemon.session import Session


class DaemonAPI:
    """The running daemon, as plugins see it.

    ``state_dir``: where plugins keep their files (create them private).
    ``config_path``: the config file in use. ``hook``: the daemon-wide hooks
    (every loaded plugin), for plugins that define cooperation with others.
    """

    def __init__(self, daemon: Any):
        self._daemon = daemon  # the daemon.core.Daemon (not imported: the daemon sits above its API)

    @property
    def state_dir(self) -> Path:
        return self._daemon.config.state_dir

    @property
    def config_path(self) -> Path:
        return self._daemon.config.path

    @property
    def hook(self):
        return self._daemon.pm.hook

    @property
    def started_at(self) -> float:
        return self._daemon.started_at

    def resolve(self, path: str) -> Path:
        """A path from a plugin's settings: relative ones stand in the state directory."""
        return self._daemon.config.resolve(path)

    def logger(self, plugin: str) -> logging.Logger:
        """The logger for a plugin's messages (``daemond.plugin.<name>``)."""
        return logging.getLogger(f"daemond.plugin.{plugin}")

    def listeners(self) -> list[str]:
        return list(self._daemon.listeners)

    def sessions(self, listener: str | None = None) -> list[Session]:
        """The connected sessions, of one listener or all."""
        return self._daemon.sessions(listener)

    def native_cpus(self) -> set[int] | None:
        """The CPUs for threads or helper processes of yours that run native code without the
        GIL (hashing, compression): every CPU but the one the daemon keeps its Python threads on
        (``tuning.pin_threads``). Move such threads there with ``os.sched_setaffinity(0, cpus)``.
        None: no such split (pinning off, or one CPU) — leave them where they are."""
        return self._daemon.policy.native_cpus()

    def request_stop(self) -> None:
        """Ask the daemon to shut down gracefully (returns at once)."""
        self._daemon.request_stop()
