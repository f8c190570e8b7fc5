"""The core's control commands: status, pause, resume, stop, reload, logs, clear-logs, plugins, kick, cluster, help.

They are :class:`~daemon.commands.ControlCommand` objects like the ones plugins
add, registered by the daemon at start; both front doors (the control socket
and the console) run them on their own thread. They see the daemon only
through the control facade (:mod:`daemon.control.facade`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from daemon.cluster import ClusterUnavailable
from daemon.commands import Argument, CommandError, ControlCommand
from daemon.control.facade import DaemonControl
from daemon.control.log_follower import LogFollower
from daemon.files import PrivateFileError
from daemon.control.render import (render_cleared, render_cluster, render_help, render_kick, render_lines,
                                   render_plugins, render_reload, render_status)

log = logging.getLogger("daemond.control")


def core_commands(daemon: Any) -> list[ControlCommand]:
    """The core's commands for ``daemon`` (the Daemon), which they reach only through :class:`DaemonControl`."""
    control = DaemonControl(daemon)

    def status(args: dict[str, Any]) -> dict[str, Any]:
        return control.status()

    def pause(args: dict[str, Any]) -> str:
        return control.pause()

    def resume(args: dict[str, Any]) -> str:
        return control.resume()

    def stop(args: dict[str, Any]) -> str:
        control.request_stop()  # first: the console draws no prompt below a line logged while stopping
        log.info("stop requested by a control command")
        return "daemond is stopping"

    def reload(args: dict[str, Any]) -> dict[str, Any]:
        result = control.reload()
        if not result.get("ok"):
            errors = result.get("errors") or ["no reason given"]
            raise CommandError(f"reload refused: {'; '.join(map(str, errors))}", details=result)
        return result

    def logs(args: dict[str, Any]) -> list[str] | Iterator[str | None]:
        if args["follow"]:
            return LogFollower(control.logs, args["lines"])
        return control.logs.tail(args["lines"])

    def clear_logs(args: dict[str, Any]) -> dict[str, Any]:
        try:
            control.logs.clear()
        except PrivateFileError as exc:  # a symlink where the log file was: not truncated
            raise CommandError(str(exc)) from None
        file = control.logs.file
        return {"file": str(file) if file else None, "cleared": True}

    def plugins(args: dict[str, Any]) -> list[dict[str, Any]]:
        return control.plugin_list()

    def kick(args: dict[str, Any]) -> dict[str, Any]:
        result = control.kick(args["name"], args["reason"] or None)
        if not result["sessions"]:
            more = (f" on this node, and the other nodes could not be asked ({result['unreachable']})"
                    if "unreachable" in result else "")
            raise CommandError(f"{args['name']} is not connected{more}", details=result)
        return result

    def cluster(args: dict[str, Any]) -> dict[str, Any]:
        node = control.cluster
        if node is None:
            raise CommandError("this daemon runs standalone (cluster.redis is not set; docs/cluster.md)")
        try:
            nodes = node.nodes()
        except ClusterUnavailable as exc:
            raise CommandError(str(exc), details=node.status()) from None
        return {**node.status(), "nodes": nodes}

    def help(args: dict[str, Any]) -> list[dict[str, Any]] | dict[str, Any]:
        if args["command"]:
            command = control.commands.get(args["command"])
            return {**command.describe(), "text": command.help_text()}
        return [command.describe() for command in control.commands]

    return [
        ControlCommand("status", "the daemon's state: pid, config, listeners, connections, plugins, last reload",
                       status, render=render_status),
        ControlCommand("pause", "refuse new connections on every listener (connected clients carry on)", pause),
        ControlCommand("resume", "accept new connections again", resume),
        ControlCommand("stop", "graceful shutdown: stop accepting, say goodbye to clients, flush, exit", stop),
        ControlCommand("reload", "re-read the config file and apply it; fails if it is refused", reload,
                       render=render_reload),
        ControlCommand("logs", "the daemon's last log lines; -f keeps streaming new ones", logs, args=(
            Argument("lines", "how many lines", option=True, short="n", type=_count, default=50),
            Argument("follow", "keep streaming new lines until interrupted", flag=True, short="f"),
        ), render=render_lines),
        ControlCommand("clear-logs", "empty the log file (in place) and the in-memory log lines", clear_logs,
                       render=render_cleared),
        ControlCommand("plugins", "loaded plugins: version, source (built-in, entry point, path), listeners, errors",
                       plugins, render=render_plugins),
        ControlCommand("kick", "end every session of a user on every listener (a chat room sees PART)", kick, args=(
            Argument("name", "the user name (not case-sensitive)", required=True, type=_user_name),
            Argument("reason", "told to the user in the notice before the connection closes", option=True,
                     type=_reason),
        ), render=render_kick),
        ControlCommand("cluster", "the cluster's live nodes (from any node): address, users logged in, last heartbeat",
                       cluster, render=render_cluster),
        ControlCommand("help", "the commands, including those plugins add; help COMMAND for one", help,
                       args=(Argument("command", "a command to describe"),), render=render_help),
    ]


def _user_name(text: Any) -> str:
    if not isinstance(text, str) or not text or len(text) > 64 or not text.isprintable():
        raise ValueError(text)
    return text


def _reason(text: Any) -> str:
    # it goes to the client in a NOTICE line: one line, no control characters
    if not isinstance(text, str) or len(text) > 200 or not text.isprintable():
        raise ValueError(text)
    return text


def _count(text: Any) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value
