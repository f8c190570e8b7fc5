"""``daemond``: run the daemon in the foreground, or check a config.

Every failure an operator can cause (bad config, port in use, unwritable
state directory) ends with one clear line on stderr and exit status 1 —
never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
from typing import Any

from daemon.version import __version__

log = logging.getLogger("daemond")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="daemond",
        description="A pluggable, threaded network daemon. Runs in the foreground; "
        "stop it with SIGTERM or Ctrl-C, drive it with daemonctl.",
        epilog="daemond cluster import [-c FILE]: copy a standalone node's users into the Redis of the "
               "config's cluster: section (docs/cluster.md).",
    )
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="config file (default: $DAEMOND_CONFIG, ./etc/daemond.yaml, /etc/daemond/daemond.yaml)")
    parser.add_argument("--check-config", action="store_true", help="validate the config, print problems, exit 0 or 1")
    parser.add_argument("--plugins-from-working-dir", action="store_true",
                        help="with --check-config: import plugins from the working directory when the config's "
                             "plugins_from_working_dir says so (without it, --check-config never does)")
    console = parser.add_mutually_exclusive_group()
    console.add_argument("--console", dest="console", action="store_true", default=None,
                         help="read control commands from stdin (default when stdin is a terminal)")
    console.add_argument("--no-console", dest="console", action="store_false", help="no console on stdin")
    parser.add_argument("--version", action="version", version=f"daemond {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["cluster"]:
        return cluster_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


def _load_config(given: str | None, loader: Any, count: bool = False) -> tuple[Any, Any] | None:
    """The config file (``-c`` or found) and its config; None after printing each problem as
    ``FILE:LINE:COL: message`` (``count``: and how many there were, as --check-config does)."""
    from daemon.config import ConfigError, find_config, load_config

    try:
        path = find_config(given)
        return path, load_config(path, loader)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        if count:
            print(f"daemond: config has {len(exc.problems)} problem(s)", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    from daemon.loader import PluginLoader

    loader = PluginLoader(working_dir_allowed=not args.check_config or args.plugins_from_working_dir)
    loaded = _load_config(args.config, loader, count=args.check_config)
    if loaded is None:
        return 1
    path, config = loaded
    if args.check_config and config.control.group is not None:
        from daemon.control.endpoint import group_problem

        problem = group_problem(config.control.group)
        if problem:
            print(f"{path}: {problem}", file=sys.stderr)
            return 1
    if args.check_config:
        print(f"{path}: ok (listeners: {', '.join(config.listeners)}; plugins: {', '.join(config.plugins)})")
        return 0
    return serve(config, loader, path, console=args.console)


def cluster_main(argv: list[str]) -> int:
    """``daemond cluster import [-c FILE]``: copy a standalone node's state into the cluster's
    Redis (docs/cluster.md), plugin by plugin; idempotent, so it may be run again."""
    parser = argparse.ArgumentParser(prog="daemond cluster", description="Cluster mode (docs/cluster.md).")
    sub = parser.add_subparsers(dest="action", required=True)
    copy = sub.add_parser("import", help="copy this node's users (auth.db) and rooms (chat.db) into the cluster's Redis; "
                                         "idempotent: run it again to copy what is missing")
    copy.add_argument("-c", "--config", metavar="FILE", help="the node's config, with cluster.redis set "
                                                             "(found as daemond finds it)")
    args = parser.parse_args(argv)
    from daemon.core import Daemon, StartError
    from daemon.loader import PluginLoader

    loader = PluginLoader(working_dir_allowed=False)
    loaded = _load_config(args.config, loader)
    if loaded is None:
        return 1
    path, config = loaded
    if config.cluster.redis is None:
        print(f"daemond cluster import: {path} does not set cluster.redis: there is no cluster to import into",
              file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.ERROR, format="daemond cluster import: %(message)s")
    try:
        lines = Daemon(config, loader, log_to_stderr=False).import_into_cluster()
    except StartError as exc:
        print(f"daemond cluster import: {exc}", file=sys.stderr)
        return 1
    for line in lines or ["nothing to import"]:
        print(line)
    return 0


def serve(config, loader, path, console: bool | None = None) -> int:
    from daemon.control.facade import DaemonControl
    from daemon.control.foreground import Foreground, block_signals, want_console
    from daemon.core import Daemon, StartError

    _raise_fd_limit()
    daemon = Daemon(config, loader)
    # Listeners serve as soon as they are bound, before start() returns: a signal that comes
    # meanwhile is held (blocked) until Foreground's handlers are in place, then delivered.
    block_signals()  # and the daemon's threads leave SIGTERM/SIGINT/SIGHUP to the main thread
    try:
        daemon.start()
    except StartError as exc:
        print(f"daemond: {exc}", file=sys.stderr)
        return exc.exit_status
    # SIGTERM/SIGINT stop, SIGHUP reloads; with a console the main thread reads commands
    with Foreground(DaemonControl(daemon), console=want_console(console)) as foreground:
        try:
            foreground.run()
        finally:
            daemon.stop()
    return 0


def _raise_fd_limit() -> None:
    """One descriptor per connection: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
