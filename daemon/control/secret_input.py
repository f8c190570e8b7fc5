"""Asking a person for a secret (a password): without echo, and a new one twice.

One helper for daemonctl, the console and ``python -m plugins.auth``, so that
they ask alike. Standard library only, imported when a secret is needed:
``daemonctl`` must start fast.
"""

from __future__ import annotations

import sys


class SecretsDiffer(Exception):
    """A new secret was typed twice, differently: nothing should be done with it."""


def ask_secret(prompt: str, confirm: bool = False) -> str:
    """A secret typed on the terminal without echo (``""`` if none was typed).

    ``confirm``: a new secret being chosen — once one is typed, it is asked for
    ``again:``, and :class:`SecretsDiffer` is raised if the two differ.
    """
    import getpass

    value = getpass.getpass(prompt)
    if value and confirm and getpass.getpass("again: ") != value:
        raise SecretsDiffer
    return value


def read_secret(prompt: str, confirm: bool = False) -> str:
    """:func:`ask_secret` on a terminal; otherwise one line of stdin (scripts pipe secrets in, once)."""
    if sys.stdin.isatty():
        return ask_secret(prompt, confirm)
    return sys.stdin.readline().rstrip("\r\n")
