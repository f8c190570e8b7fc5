"""Issue 19.14: both stores refuse a database others may read, with the chmod advice — and never
advise a chmod on a file that is not a database (``/etc/passwd`` given as the path)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.process import installed

PLUGINS = {"auth": ["auth"], "chat": ["auth", "chat"]}
WHAT = {"auth": "users database", "chat": "chat history"}


def start(tmp_path: Path, plugin: str, database: str) -> subprocess.CompletedProcess:
    doc = {"state_dir": str(tmp_path / "state"), "logging": {"file": None},
           "listeners": {"l": {"port": 0, "plugins": PLUGINS[plugin]}},
           "plugins": {plugin: {"database": database}}}
    path = tmp_path / "daemond.yaml"
    path.write_text(yaml.safe_dump(doc))
    (tmp_path / "state").mkdir(mode=0o700, exist_ok=True)
    return subprocess.run([installed("daemond"), "-c", str(path), "--no-console"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)


def last_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("plugin", ["auth", "chat"])
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_database_others_may_read_is_refused_with_the_chmod_advice(tmp_path, plugin, mode):
    db = tmp_path / f"{plugin}.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    db.chmod(mode)
    line = last_line(start(tmp_path, plugin, str(db)))
    assert line == (f"daemond: plugin {plugin!r} failed to start: refusing to use {WHAT[plugin]} {db}: mode {mode:04o} "
                    f"lets other users read or write it (it holds {'password hashes' if plugin == 'auth' else 'users' + chr(39) + ' messages'}); "
                    f"run: chmod 600 {db}")
    assert db.stat().st_mode & 0o777 == mode  # left for the operator, not changed behind their back


@pytest.mark.parametrize("plugin", ["auth", "chat"])
def test_a_file_that_is_not_a_database_gets_no_chmod_advice(tmp_path, plugin):
    before = Path("/etc/passwd").read_bytes(), os.stat("/etc/passwd").st_mode
    line = last_line(start(tmp_path, plugin, "/etc/passwd"))
    assert line == (f"daemond: plugin {plugin!r} failed to start: /etc/passwd is not a usable {WHAT[plugin]}: "
                    f"it is not an SQLite database; give the {WHAT[plugin]} a path of its own")
    assert "chmod" not in line
    assert (Path("/etc/passwd").read_bytes(), os.stat("/etc/passwd").st_mode) == before
    assert not Path("/etc/passwd-wal").exists() and not Path("/etc/passwd-shm").exists()


@pytest.mark.parametrize("plugin", ["auth", "chat"])
def test_a_private_database_is_used(tmp_path, plugin):
    """The same file, mode 0600: the daemon starts (it is stopped by SIGTERM right after)."""
    db = tmp_path / f"{plugin}.db"
    sqlite3.connect(db).close()
    db.chmod(0o600)
    doc = {"state_dir": str(tmp_path / "state"), "logging": {"file": None},
           "listeners": {"l": {"port": 0, "plugins": PLUGINS[plugin]}}, "plugins": {plugin: {"database": str(db)}}}
    path = tmp_path / "daemond.yaml"
    path.write_text(yaml.safe_dump(doc))
    from tests.support.process import DaemonProcess
    proc = DaemonProcess(path).wait_ready(1)
    assert proc.terminate() == 0
