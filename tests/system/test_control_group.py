"""control.group with daemond not root, as systemd runs it: a group the process is not in fails
--check-config, the start (exit 78, which the unit does not restart) and a reload, saying why."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.process import installed

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
EXIT_CONFIG = 78


@pytest.fixture
def open_dir():
    """A directory nobody may read (tmp_path is private to root), with a state dir of nobody's."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run daemond as nobody")
    path = Path(tempfile.mkdtemp(prefix="daemond-group-"))
    path.chmod(0o755)
    (path / "state").mkdir(mode=0o700)
    os.chown(path / "state", pwd.getpwnam("nobody").pw_uid, -1)
    probe = subprocess.run([*NOBODY, installed("daemond"), "--version"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        shutil.rmtree(path)
        pytest.skip(f"cannot run this venv's daemond as nobody here: {probe.stderr.strip()[:200]}")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def config(directory: Path, group: str | None) -> Path:
    path = directory / "d.yaml"
    path.write_text(f"state_dir: {directory / 'state'}\nlogging: {{file: null}}\n"
                    f"control: {{group: {group or 'null'}}}\nlisteners:\n  e: {{port: 0, plugins: [echo]}}\n")
    path.chmod(0o644)
    return path


def as_nobody(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*NOBODY, installed("daemond"), *args, "--no-console"], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_a_group_daemond_is_not_in_fails_check_config_and_start_with_the_reason(open_dir):
    path = config(open_dir, "root")
    checked = subprocess.run([*NOBODY, installed("daemond"), "--check-config", "-c", str(path)],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 1
    assert checked.stderr.startswith(f"{path}: control.group root: daemond (uid 65534) is not in group root")
    assert "Group=root" in checked.stderr
    started = as_nobody("-c", str(path))
    assert started.returncode == EXIT_CONFIG, started.stderr
    assert "daemond: control.group root: daemond (uid 65534) is not in group root" in started.stderr
    assert "Traceback" not in started.stderr
    assert subprocess.run([installed("daemond"), "--check-config", "-c", str(path)],  # root may give any group
                          capture_output=True, text=True, timeout=30).returncode == 0


def test_its_own_group_is_given_without_chown_and_a_reload_to_a_foreign_one_is_refused(open_dir):
    path = config(open_dir, "nogroup")  # the process's own group: the socket is born with it
    with open(open_dir / "stderr.log", "wb") as err:
        proc = subprocess.Popen([*NOBODY, installed("daemond"), "-c", str(path), "--no-console"],
                                stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    try:
        sock = open_dir / "state" / "control.sock"
        deadline = time.monotonic() + 15
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, (open_dir / "stderr.log").read_text()
            time.sleep(0.05)
        assert sock.stat().st_gid == 65534 and oct(sock.stat().st_mode & 0o777) == "0o660"
        config(open_dir, "root")
        reload = subprocess.run([installed("daemonctl"), "--socket", str(sock), "reload"], capture_output=True,
                                text=True, timeout=30)
        assert reload.returncode == 1
        assert "control.group root: daemond (uid 65534) is not in group root" in reload.stderr
        assert "a restart with this config would fail" in reload.stderr
        assert proc.poll() is None  # still running on the old config
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
