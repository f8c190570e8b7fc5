"""Asking a person for a secret (a password): without echo, and a new one twice.

One helper for daemonctl, the console and ``python -m plugins.auth``, so that
they ask alike. Standard library only, imported when a secret is needed:
``daemonctl`` must start fast.
"""

from __future__ import annotations

import sys


class SecretsDiffer(Exception):
    """A new secret was typed twice, differently: nothing should be done with it.

    Example: see :func:`read_secret`.
    """


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
    """A secret (a password) for an offline tool: typed without echo on a terminal, else
    one line of stdin without its line ending (scripts pipe secrets in, once). Returns
    ``""`` if nothing was typed.

    ``confirm``: a new secret being chosen — on a terminal it is asked for again
    (prompt ``again:``) and :class:`SecretsDiffer` is raised if the two differ.

    Example::

        try:
            password = read_secret("new password: ", confirm=True)
        except SecretsDiffer:
            sys.exit("the passwords differ; nothing changed")
    """
    if sys.stdin.isatty():
        return ask_secret(prompt, confirm)
    return sys.stdin.readline().rstrip("\r\n")
