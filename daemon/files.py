"""Private files: created mode 0600 whatever the umask, and never opened through a symlink.

A plugin's database may hold secrets (password hashes) or users' words; a file
another user may read, or a symlink planted where it is to be created, would
hand them over. So the file is created by ``open()`` with ``O_NOFOLLOW`` before
SQLite ever sees the path (SQLite gives its ``-wal`` and ``-shm`` companions
the database's mode).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

#: the files of an SQLite database at PATH: PATH itself and its companions
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


class PrivateFileError(Exception):
    """A private file cannot be used; the message is one line for the operator.

    Example (at start: report it as the operator's problem)::

        try:
            fd = open_private(daemon.resolve("notes.txt"), "notes file")
        except PrivateFileError as exc:
            raise PluginError(str(exc)) from None
    """


def open_private(path: str | os.PathLike, what: str = "file", flags: int = os.O_RDWR) -> int:
    """A descriptor (an ``int``) of the regular file ``path``, created mode 0600 if it does
    not exist; :class:`PrivateFileError` if it is a symlink, not a regular file, or cannot
    be opened. ``what`` names the file in that error's message; ``flags`` are ``os.open``'s
    (``O_CREAT``, ``O_NOFOLLOW`` and ``O_CLOEXEC`` are always added). An existing file's
    mode is left as it is.

    Example::

        with os.fdopen(open_private(daemon.resolve("notes.txt"), "notes file", os.O_WRONLY | os.O_APPEND), "a") as f:
            f.write("a line\\n")
    """
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PrivateFileError(f"refusing to open {what} {path}: it is a symbolic link") from None
        raise PrivateFileError(f"cannot open {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PrivateFileError(f"{what} {path} is not a regular file")
    return fd


def create_private_sqlite(path: str | os.PathLike, what: str = "database", secret: str | None = None) -> None:
    """Create the SQLite database file ``path`` (mode 0600) before SQLite opens it, then
    :func:`check_private_sqlite`. Call that again once SQLite has made its companions.
    Returns ``None``; raises :class:`PrivateFileError`.

    Example::

        path = daemon.resolve(settings["database"])
        create_private_sqlite(path, "word database", secret="users' words")
        db = sqlite3.connect(path)
        db.execute("PRAGMA journal_mode=WAL")
        check_private_sqlite(path, "word database", secret="users' words")
    """
    os.close(open_private(path, what))
    check_private_sqlite(path, what, secret)


def check_private_sqlite(path: str | os.PathLike, what: str = "database", secret: str | None = None) -> None:
    """PrivateFileError if the database or its ``-wal``/``-shm``/``-journal`` file is a symlink
    (SQLite would follow it) or, given ``secret`` (what the file holds), if others may read or
    write it: such a file is left for the operator to fix, not changed behind their back.
    Returns ``None`` when all is well. Example: see :func:`create_private_sqlite`."""
    for suffix in SQLITE_SUFFIXES:
        name = Path(f"{path}{suffix}")
        try:
            info = os.lstat(name)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode):
            raise PrivateFileError(f"refusing to use {what} {name}: it is a symbolic link")
        mode = stat.S_IMODE(info.st_mode)
        if secret and mode & 0o077:
            raise PrivateFileError(f"refusing to use {what} {name}: mode {mode:04o} lets other users read "
                                   f"or write it ({secret}); run: chmod 600 {name}")
