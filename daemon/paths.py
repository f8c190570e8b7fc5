"""Where daemond's files are: the config search path, the state directory, the control socket.

Standard library only: ``daemonctl`` uses this to find the control socket
exactly the way the daemon chooses it, without importing the daemon.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: Where ``daemond`` and ``daemonctl`` look for the config when ``-c`` is not given, after ``$DAEMOND_CONFIG``.
SEARCH_PATH = (Path("etc/daemond.yaml"), Path("/etc/daemond/daemond.yaml"))

#: The control socket of the systemd service (``RuntimeDirectory=daemond``), for operators
#: who run daemonctl by hand, without the service's ``$RUNTIME_DIRECTORY``.
SYSTEMD_CONTROL_SOCKET = Path("/run/daemond/control.sock")


def search_config(explicit: str | None = None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """The config to use: ``-c``, else ``$DAEMOND_CONFIG``, else the first of SEARCH_PATH that exists."""
    if explicit:
        return Path(explicit)
    if environ.get("DAEMOND_CONFIG"):
        return Path(environ["DAEMOND_CONFIG"])
    for candidate in SEARCH_PATH:
        if candidate.is_file():
            return candidate
    return None


def default_state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$STATE_DIRECTORY`` (systemd), else ``$XDG_STATE_HOME/daemond``, else ~/.local/state/daemond."""
    if environ.get("STATE_DIRECTORY"):
        # systemd may pass several, colon-separated; the first is ours
        return Path(environ["STATE_DIRECTORY"].split(":")[0])
    base = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "daemond"


def state_dir(setting: str | None, config_path: Path, environ: Mapping[str, str] = os.environ) -> Path:
    """The state directory from the config's ``state_dir`` (relative to the config file's directory)."""
    if setting:
        path = Path(os.path.expanduser(setting))
        return path if path.is_absolute() else (config_path.parent / path).absolute()
    return default_state_dir(environ).absolute()


def control_socket(setting: str | None, state_dir: Path, environ: Mapping[str, str] = os.environ) -> Path:
    """Where the daemon puts its control socket: ``control.socket`` (relative to the state
    directory), else ``$RUNTIME_DIRECTORY/control.sock`` (systemd), else in the state directory."""
    if setting:
        path = Path(os.path.expanduser(setting))
        return path if path.is_absolute() else state_dir / path
    if environ.get("RUNTIME_DIRECTORY"):
        return Path(environ["RUNTIME_DIRECTORY"].split(":")[0]) / "control.sock"
    return state_dir / "control.sock"
