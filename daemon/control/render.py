"""Control command results as text for people (daemonctl without ``--json``, the console).

Kept apart from what the commands do, so that a command returns data — the
same for scripts (``--json``) and people — and only this module decides how
it reads on a terminal.
"""

from __future__ import annotations

import time
from typing import Any

from daemon.addresses import format_address


def render_result(result: Any, indent: str = "") -> str:
    """A result as text for people: strings as they are, mappings as ``key: value`` lines."""
    if result is None:
        return ""
    if isinstance(result, str):
        return result
    if isinstance(result, (dict, list, tuple)):
        entries = result.items() if isinstance(result, dict) else ((None, item) for item in result)
        lines = []
        for key, value in entries:
            head = f"{indent}-" if key is None else f"{indent}{key}:"
            if isinstance(value, (dict, list)) and value:
                lines += [head, render_result(value, indent + "  ")]
            else:
                lines.append(f"{head} {_scalar(value)}")
        return "\n".join(lines)
    return f"{indent}{_scalar(result)}"


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return "none"
    return str(value)


def render_status(s: dict[str, Any]) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s["started_at"])) if s.get("started_at") else "-"
    control = s.get("control") or {}
    out = [
        f"daemond {s['version']} (pid {s['pid']}): {s['state']}{', PAUSED' if s['paused'] else ''}, "
        f"since {started} (up {_duration(s['uptime'])})",
        f"config:      {s['config']}",
        f"state dir:   {s['state_dir']}",
        f"control:     {control.get('socket', '-')} ({control.get('clients', 0)} connected)",
        f"cluster:     {_cluster_line(s.get('cluster'))}",
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
        tls = lst.get("tls")
        if tls:
            cert = tls.get("certificate") or {}
            out.append(f"    TLS ({tls['min_version']}+, client certificates {tls['client_cert']}): "
                       f"{cert.get('subject', '-')}, issuer {cert.get('issuer', '-')}")
            out.append(f"    sha256 {cert.get('sha256', '-')}, until {cert.get('not_after', '-')} "
                       f"({cert.get('days_left', '?')} days left)")
            if tls.get("error"):
                out.append(f"    ERROR {tls['error']}")
    out.append("plugins:")
    for name, p in s["plugins"].items():
        extra = {k: v for k, v in p.items() if k not in ("version", "source", "errors", "listeners")}
        extras = "".join(f"  {k}: {render_result(v) if not isinstance(v, (dict, list)) else v}" for k, v in extra.items())
        out.append(f"  {name:<12} {p['version']} ({p['source']})  errors: {p['errors']}{extras}")
    return "\n".join(out)


def _cluster_line(cluster: dict[str, Any] | None) -> str:
    if not cluster:
        return "standalone (cluster.redis not set)"
    state = "connected" if cluster["connected"] else f"NOT CONNECTED ({cluster.get('error') or 'no answer yet'})"
    return f"node {cluster['node']}, Redis {cluster['redis']} {state}"


def render_cluster(result: dict[str, Any]) -> str:
    now = time.time()
    out = [f"Redis {result['redis']} ({'connected' if result['connected'] else 'NOT CONNECTED'}); "
           f"nodes count as dead after {result['node_timeout']:g} s without a heartbeat",
           f"{'node':<24} {'users':>5}  {'last heartbeat':<15} {'up':<10} listeners"]
    for n in result["nodes"]:
        me = " *" if n.get("node") == result["node"] else ""
        ago = f"{max(0.0, now - n.get('heartbeat', now)):.1f} s ago"
        up = _duration(max(0.0, now - n.get("started_at", now)))
        out.append(f"{n.get('node', '?') + me:<24} {n.get('users', 0):>5}  {ago:<15} {up:<10} "
                   f"{', '.join(n.get('listeners', [])) or '-'}")
    out.append(f"{len(result['nodes'])} node{'s' if len(result['nodes']) != 1 else ''} (* this one)")
    return "\n".join(out)


def render_kick(result: dict[str, Any]) -> str:
    count = result["sessions"]
    text = f"kicked {result['user']}: {count} session{'s' if count != 1 else ''} ({', '.join(result['listeners'])})"
    if "unreachable" in result:
        text += f"\non this node only: the other nodes could not be asked ({result['unreachable']})"
    return text


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


def render_lines(lines: list[str]) -> str:
    return "\n".join(lines)


def render_cleared(result: dict[str, Any]) -> str:
    if result["file"]:
        return f"emptied {result['file']} and the in-memory lines"
    return "emptied the in-memory lines (no log file)"
