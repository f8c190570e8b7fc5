"""Manage users with the daemon stopped (or running): ``python -m plugins.auth users list``.

The same commands as ``daemonctl users …`` and ``daemonctl clear-auth``, run
on the users store named by the config, without the network or the daemon.
SQLite's locking makes this safe while the daemon runs too. A password is
read from the terminal (or one line of stdin), never from the command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from daemon import CommandError, PluginError, SecretsDiffer, load_plugin_settings, read_secret
from plugins.auth import AuthPlugin
from plugins.auth.admin import USER_ACTIONS, clear_auth, users
from plugins.auth.settings import AuthSettings
from plugins.auth.store import StoreError, UserStore


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m plugins.auth", description="Manage daemond's users offline.")
    parser.add_argument("-c", "--config", metavar="FILE", help="daemond's config (found as daemond finds it)")
    sub = parser.add_subparsers(dest="command", required=True)
    users_parser = sub.add_parser("users", help="list, add, delete users or change a password")
    users_parser.add_argument("action", choices=USER_ACTIONS)
    users_parser.add_argument("name", nargs="?")
    clear = sub.add_parser("clear-auth", help="delete every user and token")
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings, resolve = load_plugin_settings(args.config, "auth")
    except PluginError as exc:
        print(exc, file=sys.stderr)
        return 1
    plugin = AuthPlugin()
    plugin.log = logging.getLogger("daemond.offline.auth")
    plugin.log.addHandler(logging.NullHandler())
    plugin.log.propagate = False
    plugin.settings = AuthSettings.from_section(settings)
    try:
        plugin.store = UserStore(resolve(plugin.settings.database))
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        return _run(plugin, args)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print(file=sys.stderr)
        return 130
    finally:
        plugin.store.close()


def _run(plugin: AuthPlugin, args: argparse.Namespace) -> int:
    if args.command == "clear-auth":
        if not args.yes and input("Delete every user and token? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing done")
            return 1
        print(clear_auth(plugin))
        return 0
    password = None
    if args.action in ("add", "passwd") and args.name:
        try:
            password = read_secret(f"new password for {args.name}: ", confirm=True)
        except SecretsDiffer:
            raise CommandError("the passwords differ") from None
    if args.action in ("add", "passwd"):
        from plugins.auth.hashing import Hasher

        plugin.hasher = Hasher(plugin.settings.argon2, plugin.settings.max_hashing)
    try:
        result = users(plugin, {"action": args.action, "name": args.name, "password": password})
    finally:
        if plugin.hasher is not None:
            plugin.hasher.close()
    print(json.dumps(result, indent=2) if not isinstance(result, str) else result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
