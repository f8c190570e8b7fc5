"""Private files and trusted directories: never through a symlink, never in another user's hands.

A plugin's database may hold secrets (password hashes) or users' words; a file
another user may read, or a symlink planted where it is to be created, would
hand them over. So the file is created by ``open()`` with ``O_NOFOLLOW`` before
SQLite ever sees the path (SQLite gives its ``-wal`` and ``-shm`` companions
the database's mode, and opens them with ``O_NOFOLLOW`` itself).

A directory the daemon writes in (state, log, control socket) must be trusted
the way OpenSSH's ``StrictModes`` trusts a home directory: it, and every
directory above it, is owned by root or by us and writable by no one else (a
sticky directory such as ``/tmp`` may be above it, never be it). Whoever else
could write there could plant a symlink or replace the control socket.

Standard library only, and no pathlib: ``daemonctl`` checks the socket's
directory with this module before it sends anything.
"""

from __future__ import annotations

import errno
import os
import stat

#: the files of an SQLite database at PATH: PATH itself and its companions
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")
#: the first 16 bytes of every SQLite database file
SQLITE_HEADER = b"SQLite format 3\x00"


class PrivateFileError(Exception):
    """A private file or a trusted directory cannot be used; the message is one line for the operator.

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
            raise PrivateFileError(f"refusing to open {what} {os.fspath(path)}: it is a symbolic link") from None
        raise PrivateFileError(f"cannot open {what} {os.fspath(path)}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PrivateFileError(f"{what} {os.fspath(path)} is not a regular file")
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
    # Before SQLite opens it in this process, never after: closing any descriptor of a file
    # drops every POSIX lock this process holds on it, SQLite's included, and another process
    # would then take the database for unused and remove its WAL under the writer.
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        os.close(open_private(path, what))
    else:
        if stat.S_ISLNK(info.st_mode):
            raise PrivateFileError(f"refusing to open {what} {os.fspath(path)}: it is a symbolic link")
        if stat.S_ISREG(info.st_mode) and not _is_sqlite(os.fspath(path), info):
            # someone else's file (a typo, /etc/passwd): say so, and never advise a chmod on it
            raise PrivateFileError(f"{os.fspath(path)} is not a usable {what}: it is not an SQLite database; "
                                   f"give the {what} a path of its own")
    check_private_sqlite(path, what, secret)


def check_private_sqlite(path: str | os.PathLike, what: str = "database", secret: str | None = None) -> None:
    """PrivateFileError if the database or its ``-wal``/``-shm``/``-journal`` file is a symlink
    (SQLite would follow it), is not a regular file, or, given ``secret`` (what the file holds),
    if others may read or write it: such a file is left for the operator to fix, not changed
    behind their back. Only looks (``lstat``), never opens: safe while SQLite has the database
    open. Returns ``None`` when all is well. Example: see :func:`create_private_sqlite`."""
    path = os.fspath(path)
    for suffix in SQLITE_SUFFIXES:
        name = f"{path}{suffix}"
        try:
            info = os.lstat(name)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode):
            raise PrivateFileError(f"refusing to use {what} {name}: it is a symbolic link")
        if not stat.S_ISREG(info.st_mode):
            raise PrivateFileError(f"{name} is not a usable {what}: it is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if secret and mode & 0o077:
            raise PrivateFileError(f"refusing to use {what} {name}: mode {mode:04o} lets other users read "
                                   f"or write it ({secret}); run: chmod 600 {name}")


def _is_sqlite(name: str, info: os.stat_result) -> bool:
    """Whether the regular file ``name`` is an SQLite database (an empty file is a new one)."""
    if not stat.S_ISREG(info.st_mode):
        return False
    if info.st_size == 0:
        return True
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return True  # unreadable here: SQLite will say why when it opens it
    try:
        return os.read(fd, len(SQLITE_HEADER)) == SQLITE_HEADER
    finally:
        os.close(fd)


def make_dirs(path: str | os.PathLike, mode: int = 0o700) -> bool:
    """Create the directory ``path`` (``mode``) and any missing above it (0755), whatever the
    umask, so that none of them is writable by others; True if ``path`` was created."""
    path = os.path.abspath(os.fspath(path))
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for i, directory in enumerate(reversed(missing)):
        wanted = mode if i == len(missing) - 1 else 0o755
        try:
            os.mkdir(directory, wanted)
        except FileExistsError:
            continue  # made meanwhile (another daemond): checked like any other
        os.chmod(directory, wanted)  # mkdir's mode passes through the umask
    return bool(missing)


def check_trusted_dir(path: str | os.PathLike, what: str = "directory", delegated: bool = False) -> None:
    """PrivateFileError (one line, with the fix) unless the directory ``path`` and every directory
    above it (symlinks resolved) are owned by root or by this process's user and writable by
    no one else; a sticky directory (``/tmp``) may stand above ``path``, not be it.

    ``delegated`` (daemonctl's view): ``path`` may also belong to another user if its parent is
    writable by root or us only — then root (or we) made it for that user, as systemd makes
    ``/run/daemond`` for the service's user; a directory someone made in ``/tmp`` never is."""
    shown = os.fspath(path)
    real = os.path.realpath(shown)
    trusted = {0, os.geteuid()}
    current, first = real, True
    while True:
        try:
            info = os.stat(current)
        except OSError as exc:
            raise PrivateFileError(f"cannot check {what} {shown}: {current}: {exc.strerror or exc}") from None
        where = shown if current == real else f"{current} (above {shown})"
        if not stat.S_ISDIR(info.st_mode):
            raise PrivateFileError(f"{what} {where} is not a directory")
        if info.st_uid not in trusted and not (first and delegated and _made_by_trusted(current, trusted)):
            raise PrivateFileError(f"refusing to use {what} {where}: it is owned by {_user(info.st_uid)}, "
                                   f"not by {_user(os.geteuid())} or root")
        if info.st_mode & 0o022 and (first or not info.st_mode & stat.S_ISVTX):
            who = "group and others" if info.st_mode & 0o022 == 0o022 else \
                  "its group" if info.st_mode & 0o020 else "others"
            raise PrivateFileError(f"refusing to use {what} {where}: mode {stat.S_IMODE(info.st_mode):04o} "
                                   f"lets {who} write in it; run: chmod go-w {current}")
        parent = os.path.dirname(current)
        if parent == current:
            return
        current, first = parent, False


def _made_by_trusted(directory: str, trusted: set[int]) -> bool:
    """Whether only root or we could have made ``directory``: its parent is ours and not writable by others."""
    try:
        parent = os.stat(os.path.dirname(directory))
    except OSError:
        return False
    return parent.st_uid in trusted and not parent.st_mode & 0o022


def _user(uid: int) -> str:
    import pwd  # only for a refusal's message
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def check_trusted_socket(path: str, what: str = "control socket") -> None:
    """PrivateFileError unless the Unix socket ``path`` may be trusted with what a client sends:
    its directory passes :func:`check_trusted_dir` (``delegated``: it may be the daemon's user's,
    made for it by root), and the socket is not a symlink and belongs to root, to us or to the
    directory's owner. A path with nothing there passes: connecting will say so."""
    try:
        info = os.lstat(path)
    except OSError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise PrivateFileError(f"refusing to use {what} {path}: it is a symbolic link")
    if not stat.S_ISSOCK(info.st_mode):
        raise PrivateFileError(f"refusing to use {what} {path}: it is not a socket")
    directory = os.path.dirname(path) or "."
    check_trusted_dir(directory, f"{what}'s directory", delegated=True)
    owner = os.stat(directory).st_uid
    if info.st_uid not in (0, os.geteuid(), owner):
        raise PrivateFileError(f"refusing to use {what} {path}: it is owned by {_user(info.st_uid)}, "
                               f"not by root, {_user(os.geteuid())} or its directory's owner")
