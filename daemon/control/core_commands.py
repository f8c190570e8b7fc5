"""The core's control commands: status, pause, resume, stop, reload, logs, clear-logs, help.

They are :class:`~daemon.commands.ControlCommand` objects like the ones plugins
add, registered by the daemon at start; both front doors (the control socket
and the console) run them on their own thread.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from daemon.addresses import format_address
from daemon.commands import Argument, CommandError, ControlCommand, render_result

if TYPE_CHECKING:  # pragma: no cover
    from daemon.logs import LogService
    from daemon.server import Daemon

log = logging.getLogger("daemond.control")

#: Lines a ``logs -f`` client may fall behind before lines are dropped for it.
FOLLOW_BACKLOG = 10_000
#: Seconds between ``None`` heartbeats of an idle ``logs -f`` (the front door checks its client then).
FOLLOW_HEARTBEAT = 0.25


def core_commands(daemon: Daemon) -> list[ControlCommand]:
    def status(args: dict[str, Any]) -> dict[str, Any]:
        return daemon.status()

    def pause(args: dict[str, Any]) -> str:
        return daemon.pause()

    def resume(args: dict[str, Any]) -> str:
        return daemon.resume()

    def stop(args: dict[str, Any]) -> str:
        daemon.request_stop()  # first: the console draws no prompt below a line logged while stopping
        log.info("stop requested by a control command")
        return "daemond is stopping"

    def reload(args: dict[str, Any]) -> dict[str, Any]:
        result = daemon.reload()
        if not result.get("ok"):
            errors = result.get("errors") or ["no reason given"]
            raise CommandError(f"reload refused: {'; '.join(map(str, errors))}", details=result)
        return result

    def logs(args: dict[str, Any]) -> list[str] | Iterator[str | None]:
        if args["follow"]:
            return LogFollower(daemon.logs, args["lines"])
        return daemon.logs.tail(args["lines"])

    def clear_logs(args: dict[str, Any]) -> dict[str, Any]:
        daemon.logs.clear()
        file = daemon.logs.file
        return {"file": str(file) if file else None, "cleared": True}

    def plugins(args: dict[str, Any]) -> list[dict[str, Any]]:
        return daemon.plugin_list()

    def help(args: dict[str, Any]) -> list[dict[str, Any]] | dict[str, Any]:
        if args["command"]:
            command = daemon.commands.get(args["command"])
            return {**command.describe(), "text": command.help_text()}
        return [command.describe() for command in daemon.commands]

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
        ), render=lambda lines: "\n".join(lines)),
        ControlCommand("clear-logs", "empty the log file (in place) and the in-memory log lines", clear_logs,
                       render=lambda r: f"emptied {r['file']} and the in-memory lines" if r["file"]
                       else "emptied the in-memory lines (no log file)"),
        ControlCommand("plugins", "loaded plugins: version, source (built-in, entry point, path), listeners, errors",
                       plugins, render=render_plugins),
        ControlCommand("help", "the commands, including those plugins add; help COMMAND for one", help,
                       args=(Argument("command", "a command to describe"),), render=render_help),
    ]


def _count(text: Any) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


class LogFollower:
    """The last ``n`` lines, then each new line as it is logged; ``None`` while idle.

    Subscribed when created — before the front door says the stream has begun, so
    no line logged after that is missed — and unsubscribed by :meth:`close`.
    """

    def __init__(self, service: LogService, n: int):
        self._lines: queue.Queue[str] = queue.Queue(FOLLOW_BACKLOG)
        self._dropped = 0
        backlog, self._unsubscribe = service.tail_and_follow(n, self._receive)
        self._backlog = deque(backlog)
        self._closed = False

    def _receive(self, line: str) -> None:  # called by logging, under the memory handler's lock
        try:
            self._lines.put_nowait(line)
        except queue.Full:
            self._dropped += 1

    def __iter__(self) -> LogFollower:
        return self

    def __next__(self) -> str | None:
        if self._closed:
            raise StopIteration
        if self._backlog:
            return self._backlog.popleft()
        if self._dropped:
            missed, self._dropped = self._dropped, 0
            return f"[daemond: {missed} log lines dropped: this client reads too slowly]"
        try:
            return self._lines.get(timeout=FOLLOW_HEARTBEAT)
        except queue.Empty:
            return None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._unsubscribe()


# -- rendering for people -------------------------------------------------------


def render_status(s: dict[str, Any]) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s["started_at"])) if s.get("started_at") else "-"
    control = s.get("control") or {}
    out = [
        f"daemond {s['version']} (pid {s['pid']}): {s['state']}{', PAUSED' if s['paused'] else ''}, "
        f"since {started} (up {_duration(s['uptime'])})",
        f"config:      {s['config']}",
        f"state dir:   {s['state_dir']}",
        f"control:     {control.get('socket', '-')} ({control.get('clients', 0)} connected)",
        f"last reload: {_reload_line(s.get('reload'))}",
        f"connections: {s['connections']}{_threads(s.get('threads'))}",
        "listeners:",
    ]
    for lst in s["listeners"]:
        address = _address(lst["address"])
        paused = " PAUSED" if lst["paused"] else ""
        errors = sum(lst["errors"].values())
        out.append(f"  {lst['name']:<12} {address:<22} {lst['connections']} connected (accepted {lst['accepted']}, "
                   f"refused {lst['refused']}, errors {errors}){paused}  plugins: {', '.join(lst['plugins'])}")
    out.append("plugins:")
    for name, p in s["plugins"].items():
        extra = {k: v for k, v in p.items() if k not in ("version", "source", "errors", "listeners")}
        extras = "".join(f"  {k}: {render_result(v) if not isinstance(v, (dict, list)) else v}" for k, v in extra.items())
        out.append(f"  {name:<12} {p['version']} ({p['source']})  errors: {p['errors']}{extras}")
    return "\n".join(out)


def render_plugins(plugins: list[dict[str, Any]]) -> str:
    out = [f"{'plugin':<16} {'version':<9} {'source':<12} {'errors':<7} {'listeners':<16} module"]
    for p in plugins:
        out.append(f"{p['name']:<16} {p['version']:<9} {p['source']:<12} {p['errors']:<7} "
                   f"{', '.join(p['listeners']) or '-':<16} {p['module']}")
    return "\n".join(out)


def _threads(threads: dict[str, int] | None) -> str:
    if not threads:
        return ""
    return (f" (threads {threads['all']}, {threads['spare']} of them spare; since start "
            f"{threads['started']} started, {threads['reused']} reused)")


def _address(address: list | None) -> str:
    if not address:
        return "-"
    return format_address(address[0], address[1])


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    if days or hours or minutes:
        parts.append(f"{minutes}m")
    parts.append(f"{seconds}s")
    return " ".join(parts)


def _reload_line(reload: dict[str, Any] | None) -> str:
    if not reload:
        return "none since start"
    when = reload.get("at") or reload.get("time")
    at = f" at {time.strftime('%H:%M:%S', time.localtime(when))}" if isinstance(when, (int, float)) else ""
    by = f" by {reload['source']}" if reload.get("source") else ""
    if reload.get("ok"):
        return f"applied{at}{by} ({_changes(reload.get('changes'))})"
    return f"refused{at}{by}: {'; '.join(map(str, reload.get('errors') or []))}"


def _changes(changes: Any) -> str:
    if not changes:
        return "no changes"
    if isinstance(changes, (list, tuple)):
        return "; ".join(map(str, changes))
    return render_result(changes).replace("\n", "; ")


def render_reload(result: dict[str, Any]) -> str:
    return f"reload applied ({_changes(result.get('changes'))})"


def render_help(result: list[dict[str, Any]] | dict[str, Any]) -> str:
    if isinstance(result, dict):
        return result["text"]
    width = max((len(c["usage"]) for c in result), default=0)
    lines = []
    for c in result:
        by = f"  [{c['plugin']}]" if c["plugin"] else ""
        lines.append(f"  {c['usage']:<{width}}  {c['help']}{by}")
    return "commands:\n" + "\n".join(lines)
