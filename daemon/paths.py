"""Where daemond's files are: the config search path, the state directory, the control socket.

Standard library only: ``daemonctl`` uses this to find the control socket
exactly the way the daemon chooses it, without importing the daemon (it reads
the config's two settings with :mod:`daemon.quickyaml`).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # pathlib and collections cost daemonctl milliseconds at start: paths are str here
    from collections.abc import Mapping

#: Where ``daemond`` and ``daemonctl`` look for the config when ``-c`` is not given, after ``$DAEMOND_CONFIG``.
SEARCH_PATH = ("etc/daemond.yaml", "/etc/daemond/daemond.yaml")

#: The control socket of the systemd service (``RuntimeDirectory=daemond``), for operators
#: who run daemonctl by hand, without the service's ``$RUNTIME_DIRECTORY``.
SYSTEMD_CONTROL_SOCKET = "/run/daemond/control.sock"


def search_config(explicit: str | None = None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The config to use: ``-c``, else ``$DAEMOND_CONFIG``, else the first of SEARCH_PATH that exists."""
    if explicit:
        return str(explicit)
    if environ.get("DAEMOND_CONFIG"):
        return environ["DAEMOND_CONFIG"]
    for candidate in SEARCH_PATH:
        if os.path.isfile(candidate):
            return candidate
    return None


def default_state_dir(environ: Mapping[str, str] = os.environ) -> str:
    """``$STATE_DIRECTORY`` (systemd), else ``$XDG_STATE_HOME/daemond``, else ~/.local/state/daemond."""
    if environ.get("STATE_DIRECTORY"):
        # systemd may pass several, colon-separated; the first is ours
        return environ["STATE_DIRECTORY"].split(":")[0]
    base = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "daemond")


def state_dir(setting: str | None, config_path: str, environ: Mapping[str, str] = os.environ) -> str:
    """The state directory (absolute) from the config's ``state_dir``, relative to the config file's directory."""
    if setting:
        path = os.path.expanduser(setting)
        return path if os.path.isabs(path) else _absolute(os.path.join(os.path.dirname(str(config_path)), path))
    return _absolute(default_state_dir(environ))


def control_socket(setting: str | None, state_dir: str, environ: Mapping[str, str] = os.environ) -> str:
    """Where the daemon puts its control socket: ``control.socket`` (relative to the state
    directory), else ``$RUNTIME_DIRECTORY/control.sock`` (systemd), else in the state directory."""
    if setting:
        path = os.path.expanduser(setting)
        return path if os.path.isabs(path) else os.path.join(str(state_dir), path)
    if environ.get("RUNTIME_DIRECTORY"):
        return os.path.join(environ["RUNTIME_DIRECTORY"].split(":")[0], "control.sock")
    return os.path.join(str(state_dir), "control.sock")


def _absolute(path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)
