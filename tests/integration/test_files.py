"""daemon.files: private files are created 0600 whatever the umask, and never reached through a
symlink; the auth store and the chat history both go through it."""

import os
import stat

import pytest

from daemon import PrivateFileError, check_private_sqlite, create_private_sqlite, open_private
from daemon.core import StartError
from plugins.auth.store import StoreError, UserStore
from tests.support.auth import start


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_private_file_is_created_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        os.close(open_private(tmp_path / "f"))
        create_private_sqlite(tmp_path / "db.sqlite")
    finally:
        os.umask(old)
    assert mode(tmp_path / "f") == mode(tmp_path / "db.sqlite") == 0o600


def test_a_symlink_is_refused_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    (tmp_path / "db").symlink_to(target)
    with pytest.raises(PrivateFileError, match=rf"^refusing to open users database {tmp_path / 'db'}: "
                                               r"it is a symbolic link$"):
        create_private_sqlite(tmp_path / "db", "users database")
    assert not target.exists()
    with pytest.raises(PrivateFileError, match="is not a regular file|cannot open"):
        open_private(tmp_path)


def test_an_sqlite_companion_that_is_a_symlink_or_shared_is_refused(tmp_path):
    db = tmp_path / "db"
    create_private_sqlite(db, secret="it holds secrets")
    (tmp_path / "db-wal").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PrivateFileError, match=r"db-wal: it is a symbolic link$"):
        check_private_sqlite(db, "chat history")
    (tmp_path / "db-wal").unlink()
    (tmp_path / "db-shm").touch(0o644)
    os.chmod(tmp_path / "db-shm", 0o644)
    check_private_sqlite(db)  # no secret: its mode is the owner's business
    with pytest.raises(PrivateFileError, match=r"db-shm: mode 0644 lets other users read or write it "
                                               r"\(it holds secrets\); run: chmod 600 "):
        check_private_sqlite(db, secret="it holds secrets")


def test_the_users_store_refuses_a_symlink(tmp_path):
    (tmp_path / "auth.db").symlink_to(tmp_path / "planted.db")
    with pytest.raises(StoreError, match="refusing to open users database .*auth.db: it is a symbolic link"):
        UserStore(tmp_path / "auth.db")
    assert not (tmp_path / "planted.db").exists()


def test_the_chat_history_refuses_a_symlink_with_one_line(daemond_factory, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "chat.db").symlink_to(tmp_path / "planted.db")
    with pytest.raises(StartError, match=r"^plugin 'chat' failed to start: refusing to open chat history "
                                         r".*chat\.db: it is a symbolic link$"):
        start(daemond_factory, plugins=("auth", "chat"), state_dir=str(state))
    assert not (tmp_path / "planted.db").exists()
