"""Issue 19.1: directories another user owns or may write in, and symlinks planted in them.

The daemon refuses to start with one line (OpenSSH StrictModes style) when its state, log or
control socket directory is not owned by its user or root, or is writable by group or others;
every file it creates or truncates is opened with O_NOFOLLOW, so a planted symlink's target is
never touched; ``daemonctl`` checks the socket and its directory before it sends anything.
Run as root (the tests chown to ``nobody``, uid 65534).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from tests.support.process import DaemonProcess, installed

NOBODY = 65534
SECRET = b"root's own file: nobody may make the daemon write here\n"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory to nobody")


def config(directory: Path, **top) -> Path:
    directory.mkdir(mode=0o755, exist_ok=True)
    doc = {"state_dir": str(directory / "state"), "logging": {"file": "daemond.log"},
           "listeners": {"e": {"port": 0, "plugins": ["echo"]}}, **top}
    path = directory / "daemond.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def daemond(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([installed("daemond"), "-c", str(path), "--no-console"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)


def refused(proc: subprocess.CompletedProcess, logged: bool = False) -> str:
    """The one line a refused start prints (exit 1, no traceback); ``logged``: the last line,
    after the log lines of a start that got as far as the plugins."""
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 or logged, proc.stderr
    assert lines[-1].startswith("daemond: ")
    return lines[-1]


def planted(directory: Path, names: list[str], tmp_path: Path) -> list[Path]:
    """Symlinks ``directory/NAME`` to files of root's that must stay as they are."""
    targets = []
    for name in names:
        target = tmp_path / f"target-{name}"
        target.write_bytes(SECRET)
        (directory / name).symlink_to(target)
        targets.append(target)
    return targets


def untouched(targets: list[Path]) -> None:
    for target in targets:
        assert target.read_bytes() == SECRET, target


def test_a_state_directory_owned_by_another_user_is_refused(tmp_path):
    path = config(tmp_path / "d")
    state = tmp_path / "d" / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    targets = planted(state, ["daemond.log", "control.sock"], tmp_path)
    line = refused(daemond(path))
    assert line == (f"daemond: refusing to use state directory {state}: it is owned by uid 65534 (nobody), "
                    "not by uid 0 (root) or root")
    untouched(targets)


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o1777])
def test_a_state_directory_others_may_write_in_is_refused(tmp_path, mode):
    path = config(tmp_path / "d")
    state = tmp_path / "d" / "state"
    state.mkdir()
    state.chmod(mode)
    line = refused(daemond(path))
    assert line.startswith(f"daemond: refusing to use state directory {state}: mode {mode:04o} lets ")
    assert line.endswith(f"write in it; run: chmod go-w {state}")


def test_a_directory_above_the_state_directory_that_others_may_write_in_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # not sticky: anyone may rename the state directory away and put theirs
    path = config(tmp_path / "d", state_dir=str(shared / "state"))
    line = refused(daemond(path))
    assert line == (f"daemond: refusing to use state directory {shared} (above {shared / 'state'}): mode 0777 "
                    f"lets group and others write in it; run: chmod go-w {shared}")


def test_a_log_directory_owned_by_another_user_is_refused(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o755)
    os.chown(logs, NOBODY, NOBODY)
    targets = planted(logs, ["daemond.log"], tmp_path)
    path = config(tmp_path / "d", logging={"file": str(logs / "daemond.log")})
    assert refused(daemond(path)).startswith(f"daemond: refusing to use log directory {logs}: it is owned by uid 65534")
    untouched(targets)


def test_a_control_socket_directory_owned_by_another_user_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    os.chown(run, NOBODY, NOBODY)
    path = config(tmp_path / "d", control={"socket": str(run / "control.sock")})
    assert refused(daemond(path), logged=True) == (f"daemond: refusing to use control socket directory {run}: it is owned by "
                                      "uid 65534 (nobody), not by uid 0 (root) or root")
    assert list(run.iterdir()) == []


@pytest.mark.parametrize("name, message", [
    ("daemond.log", "refusing to open log file {state}/daemond.log: it is a symbolic link"),
    ("auth.db", "plugin 'auth' failed to start: refusing to open users database {state}/auth.db: it is a symbolic link"),
    ("auth.db-wal", "refusing to use users database {state}/auth.db-wal: it is a symbolic link"),
    ("auth.db-shm", "refusing to use users database {state}/auth.db-shm: it is a symbolic link"),
    ("chat.db", "refusing to open chat history {state}/chat.db: it is a symbolic link"),
    ("chat.db-wal", "refusing to use chat history {state}/chat.db-wal: it is a symbolic link"),
])
def test_a_symlink_where_the_daemon_writes_is_never_followed(tmp_path, name, message):
    path = config(tmp_path / "d", listeners={"c": {"port": 0, "plugins": ["auth", "chat"]}})
    state = tmp_path / "d" / "state"
    state.mkdir(mode=0o700)
    targets = planted(state, [name], tmp_path)
    line = refused(daemond(path), logged=True)
    assert message.format(state=state) in line
    untouched(targets)


def test_clear_logs_never_truncates_through_a_symlink(tmp_path):
    path = config(tmp_path / "d")
    state = tmp_path / "d" / "state"
    proc = DaemonProcess(path).wait_ready(1)
    try:
        log = state / "daemond.log"
        assert log.stat().st_size > 0
        log.unlink()
        (target,) = planted(state, ["daemond.log"], tmp_path)
        ctl = subprocess.run([installed("daemonctl"), "-c", str(path), "clear-logs"], capture_output=True,
                             text=True, timeout=30)
        assert ctl.returncode in (0, 1) and "Traceback" not in ctl.stderr
        untouched([target])
        assert proc.terminate() == 0
        untouched([target])  # nor was a line appended to it on the way out
        assert proc.stderr().count(f"refusing to open log file {state / 'daemond.log'}: it is a symbolic link") == 1
    finally:
        proc.kill()


# -- daemonctl ------------------------------------------------------------------------

class FakeDaemon:
    """A listening socket somebody else planted: records what a client sends it."""

    def __init__(self, path: Path, owner: int):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        os.chown(path, owner, owner)
        self.sock.listen(1)
        self.sock.settimeout(15)
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            try:
                self.received = conn.recv(65536)
                conn.sendall(b'{"ok": true, "id": 1, "result": "fake"}\n')
            except OSError:
                pass

    def close(self):
        if self.thread.is_alive():  # nobody came (daemonctl refused): wake its accept() instead of waiting it out
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as wake:
                    wake.connect(str(self.path))
            except OSError:
                pass
        self.thread.join(20)
        self.sock.close()


def daemonctl(socket_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([installed("daemonctl"), "-s", str(socket_path), "-t", "5", *args],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


def ctl_refused(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 3, proc
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.endswith("; nothing was sent")
    return line


def test_daemonctl_refuses_a_socket_owned_by_another_user(tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    fake = FakeDaemon(run / "control.sock", NOBODY)
    proc = daemonctl(fake.path, "users", "add", "alice", "--yes")
    fake.close()
    assert ctl_refused(proc) == (f"daemonctl: refusing to use control socket {fake.path}: it is owned by uid 65534 "
                                 "(nobody), not by root, uid 0 (root) or its directory's owner; nothing was sent")
    assert fake.received == b""


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777])
def test_daemonctl_refuses_a_socket_in_a_directory_others_may_write_in(tmp_path, mode):
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(mode)
    fake = FakeDaemon(run / "control.sock", 0)
    proc = daemonctl(fake.path, "status")
    fake.close()
    assert f"refusing to use control socket's directory {run}: mode {mode:04o} lets " in ctl_refused(proc)
    assert fake.received == b""


def test_daemonctl_refuses_a_directory_another_user_made_in_a_shared_one(tmp_path):
    public = tmp_path / "tmp"
    public.mkdir()
    public.chmod(0o1777)  # like /tmp: anyone may make a directory here
    run = public / "daemond"
    run.mkdir(mode=0o700)
    os.chown(run, NOBODY, NOBODY)
    fake = FakeDaemon(run / "control.sock", NOBODY)
    proc = daemonctl(fake.path, "status")
    fake.close()
    assert f"refusing to use control socket's directory {run}: it is owned by uid 65534" in ctl_refused(proc)
    assert fake.received == b""


def test_daemonctl_trusts_a_directory_root_made_for_the_daemons_user(tmp_path):
    """systemd's RuntimeDirectory= under DynamicUser=: /run/daemond belongs to the service's user."""
    run = tmp_path / "run"
    run.mkdir(mode=0o750)
    os.chown(run, NOBODY, NOBODY)  # made by root (its parent is root's alone), given to the daemon's user
    fake = FakeDaemon(run / "control.sock", NOBODY)
    proc = daemonctl(fake.path, "--json", "status")
    fake.close()
    assert b'"command": "status"' in fake.received, proc


def test_daemonctl_refuses_a_symlink_to_a_socket(tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    fake = FakeDaemon(run / "real.sock", 0)
    (run / "control.sock").symlink_to(fake.path)
    proc = daemonctl(run / "control.sock", "status")
    fake.close()
    assert ctl_refused(proc) == (f"daemonctl: refusing to use control socket {run / 'control.sock'}: "
                                 "it is a symbolic link; nothing was sent")
    assert fake.received == b""
