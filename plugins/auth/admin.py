"""The operator's commands: ``clear-auth`` and ``users list|add|del|passwd``.

They run on the control thread (``daemonctl``) or the console. Sessions that
are logged in stay connected whatever these do to the store: a login is
checked once, when it happens.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from daemon import Argument, ArgumentNeeded, ClusterUnavailable, CommandError, ControlCommand
from plugins.auth.hashing import HashingUnavailable, HashQueueFull
from plugins.auth.rules import name_key, name_problem, normalized_password, password_problem

if TYPE_CHECKING:  # pragma: no cover
    from plugins.auth import AuthPlugin

USER_ACTIONS = ("list", "add", "del", "passwd")


def control_commands(plugin: AuthPlugin) -> list[ControlCommand]:
    return [
        ControlCommand("clear-auth", "delete every user and login token at once (logged-in users stay connected)",
                       lambda args: _reachable(clear_auth, plugin), confirm="Delete every user and token?"),
        ControlCommand("users", "manage users: list | add NAME | del NAME | passwd NAME",
                       lambda args: _reachable(users, plugin, args), render=render_users, args=(
                           Argument("action", "list, add, del or passwd", required=True, choices=USER_ACTIONS),
                           Argument("name", "the user to add, delete or change"),
                           Argument("password", "the new password (add, passwd)", option=True,
                                    secret=True),
                       )),
    ]


def _reachable(command, *args: Any) -> Any:
    """Run a command; a cluster's Redis that cannot be reached is one line for the operator."""
    try:
        return command(*args)
    except ClusterUnavailable as exc:
        raise CommandError(f"{exc}; nothing was changed") from None


def _store(plugin: AuthPlugin):
    if plugin.store is None:
        raise CommandError("the auth users store is not open (is the daemon running?)")
    return plugin.store


def clear_auth(plugin: AuthPlugin) -> str:
    deleted_users, deleted_tokens = _store(plugin).clear()
    plugin.log.warning("auth: clear-auth deleted %d users and %d tokens", deleted_users, deleted_tokens)
    return f"deleted {deleted_users} users and {deleted_tokens} tokens; logged-in users stay connected until they leave"


def users(plugin: AuthPlugin, args: dict[str, Any]) -> Any:
    store = _store(plugin)
    action, name, password = args["action"], args.get("name"), args.get("password")
    if action == "list":
        return [{"name": u.name, "created": _iso(u.created), "last_login": _iso(u.last_login), "last_ip": u.last_ip}
                for u in store.users()]
    if not name:
        raise CommandError(f"users {action}: which user? (users {action} NAME)")
    problem = name_problem(name)
    if problem:
        raise CommandError(f"bad name {name!r}: {problem}")
    key = name_key(name)
    if action == "del":
        if not store.delete_user(key):
            raise CommandError(f"no user {name}")
        plugin.log.info("auth: deleted user %s (operator)", name)
        return f"deleted {name} and their tokens"
    if password is None:
        raise ArgumentNeeded("password", f"users {action}: no password given (daemonctl asks for it on a terminal; "
                             "when its stdin is not one, it reads one line from stdin: pipe the password in, "
                             "or give daemonctl --password-file FILE)",
                             prompt=f"password for {name}", confirm=True)
    password = normalized_password(password)
    bad = password_problem(password, plugin.settings.min_password, plugin.settings.max_password)
    if bad:
        raise CommandError(bad[1])
    if action == "add":
        if store.exists(key):
            raise CommandError(f"{name} already exists (users passwd {name} changes the password)")
        if not store.add_user(key, name, _hash(plugin, password), plugin.clock()):
            raise CommandError(f"{name} already exists")
        plugin.log.info("auth: added user %s (operator)", name)
        return f"added {name}"
    if not store.set_hash(key, _hash(plugin, password)):
        raise CommandError(f"no user {name}")
    plugin.log.info("auth: changed the password of %s (operator); their tokens are revoked", name)
    return f"changed the password of {name}; their login tokens no longer work"


def _hash(plugin: AuthPlugin, password: str) -> str:
    try:
        return plugin.hasher.hash(password)
    except HashingUnavailable as exc:
        raise CommandError(f"the password cannot be hashed just now ({exc}); try again") from None
    except HashQueueFull:
        raise CommandError("too many passwords are being hashed just now; try again in a moment") from None


def render_users(result: Any) -> str:
    """``users list`` as a table, one line per user under a header, columns aligned (``no users``
    for none); other actions' text as is."""
    if not isinstance(result, list):
        return str(result)
    if not result:
        return "no users"
    rows = [("NAME", "CREATED", "LAST LOGIN", "FROM")]
    rows += [(u["name"], u["created"] or "", u["last_login"] or "never", u["last_ip"] or "") for u in result]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _iso(when: float | None) -> str | None:
    return None if when is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
