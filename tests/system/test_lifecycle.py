"""Running the installed daemond: start, errors an operator can cause, shutdown."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.process import installed

REPO = Path(__file__).resolve().parents[2]


def connect_retry(port, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_bare_daemond_from_a_clone_serves_echo_on_9090(tmp_path):
    """The README's promise: after install, a bare `daemond` in the clone just works."""
    for port in (9090, 9091):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                pytest.fail(f"something already listens on 127.0.0.1:{port} (a daemond you started?): "
                            "stop it before running the tests")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "xdg")}
    env.pop("DAEMOND_CONFIG", None)
    env.pop("STATE_DIRECTORY", None)
    proc = subprocess.Popen([installed("daemond")], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with connect_retry(9090) as s:
            s.sendall(b"hello daemond\n")
            assert s.recv(100) == b"hello daemond\n"
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=10)[0].decode()
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert f"with config file {REPO / 'etc' / 'daemond.yaml'}" in out
    assert (tmp_path / "xdg" / "daemond" / "daemond.log").exists()


def test_python_dash_m_daemon(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "daemon", "--version"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.startswith("daemond ")


def test_port_in_use_is_one_line_and_exit_1(daemond_process):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        proc = daemond_process({"e": {"plugins": ["echo"], "port": port}}, ready=False)
        assert proc.proc.wait(15) == 1
        err = proc.stderr().strip().splitlines()
        assert err[-1] == f"daemond: listener 'e': cannot listen on 127.0.0.1:{port}: address already in use"
        assert "Traceback" not in proc.stderr()
    finally:
        blocker.close()


def test_unusable_state_dir_is_one_line_and_exit_1(daemond_process, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = daemond_process({"e": {"plugins": ["echo"]}}, ready=False, state_dir=str(blocker / "state"))
    assert proc.proc.wait(15) == 1
    assert proc.stderr().strip().splitlines()[-1].startswith(f"daemond: cannot create state directory {blocker / 'state'}")
    assert "Traceback" not in proc.stderr()


def test_privileged_port_as_unprivileged_user(tmp_path):
    """Permission denied: one clear line, exit 1 (needs root to switch to nobody)."""
    if os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists():
        pytest.skip("needs root and setpriv to run daemond as an unprivileged user")
    shared = Path(tempfile.mkdtemp(prefix="daemond-nobody-"))
    shared.chmod(0o755)
    config = shared / "d.yaml"
    config.write_text(f"state_dir: {shared / 'state'}\nlogging: {{file: null}}\n"
                      "listeners:\n  e: {port: 80, plugins: [echo]}\n")
    config.chmod(0o644)
    (shared / "state").mkdir(mode=0o700)  # nobody's own: a state directory others may write in is refused
    os.chown(shared / "state", 65534, 65534)
    probe = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                            installed("daemond"), "--version"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"nobody cannot run this venv's daemond here: {probe.stderr.strip()[:200]}")
    proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           installed("daemond"), "-c", str(config), "--no-console"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "daemond: listener 'e': cannot listen on 127.0.0.1:80: permission denied (ports below 1024 need privileges)")


def test_sigterm_with_1000_idle_clients_exits_0_within_5s(daemond_process):
    proc = daemond_process({"e": {"plugins": ["echo"], "max_connections": 2000}})
    clients = []
    try:
        for _ in range(1000):
            clients.append(socket.create_connection(("127.0.0.1", proc.ports["e"]), timeout=10))
        clients[-1].sendall(b"!")
        assert clients[-1].recv(1) == b"!"  # the last one is served, so all were accepted
        begun = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        code = proc.proc.wait(15)
        took = time.monotonic() - begun
    finally:
        for c in clients:
            c.close()
    assert code == 0, proc.stderr()
    assert took < 5, f"shutdown took {took:.2f}s"
    assert "Traceback" not in proc.stderr()


def test_sigint_stops_too(daemond_process):
    proc = daemond_process({"e": {"plugins": ["echo"]}})
    proc.proc.send_signal(signal.SIGINT)
    assert proc.proc.wait(10) == 0


def test_plugins_run_in_list_order(daemond_factory):
    d = daemond_factory({"a": {"plugins": ["tests.plugins.order:First", "tests.plugins.order:Second"]},
                         "b": {"plugins": ["tests.plugins.order:Second", "tests.plugins.order:First"]}})
    with d.client("a") as c:
        assert [c.read_line(), c.read_line()] == ["OPEN first", "OPEN second"]
        assert c.command("x")[1] == "+OK second saw x"
    with d.client("b") as c:
        assert [c.read_line(), c.read_line()] == ["OPEN second", "OPEN first"]


def test_a_plugin_with_an_unknown_hook_is_refused_naming_it(tmp_path):
    config = tmp_path / "d.yaml"
    config.write_text("listeners:\n  x: {port: 0, plugins: [tests.plugins.badhook]}\n")
    proc = subprocess.run([installed("daemond"), "--check-config", "-c", str(config)], capture_output=True,
                          text=True, timeout=30, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1
    assert "plugin 'tests.plugins.badhook'" in proc.stderr and "daemond_sesion_open" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_line_protocol_framing_errors_keep_the_connection(daemond_factory):
    d = daemond_factory({"r": {"plugins": ["tests.plugins.shout"], "max_line": 32}})
    with d.client("r") as c:
        c.send(b"x" * 100 + b"\n")
        assert c.read_line().startswith("-ERR line-too-long")
        c.send(b"\xc0\xafbad\n")  # an overlong encoding of '/'
        assert c.read_line().startswith("-ERR bad-encoding")
        c.send(b"nul\x00here\n")
        assert c.read_line().startswith("-ERR bad-encoding")
        c.send(b"\xed\xa0\x80\n")  # a surrogate
        assert c.read_line().startswith("-ERR bad-encoding")
        assert c.command("crlf works\r")[1] == "+OK CRLF WORKS"
        assert c.command("//slash")[1] == "+OK /SLASH"
        assert c.command("/nope")[1].startswith("-ERR unknown-command /nope")
        lines, final = c.command("/help")
        assert "HELP /quit - close the connection" in lines and final.startswith("+OK")
        assert "HELP TEXT - any plain line is shouted back" in lines
        assert c.command("/quit")[1] == "+OK bye"
        assert c.expect_closed() == b""


def test_a_plugin_that_fails_to_import(daemond_process, tmp_path):
    """Reported with its name and the error; fatal whether a listener or only a plugins: section names it."""
    proc = daemond_process({"e": {"plugins": ["echo"]}}, plugins={"tests.plugins.broken_import": {}}, ready=False)
    assert proc.proc.wait(15) == 1
    assert "plugin 'tests.plugins.broken_import': cannot import 'tests.plugins.broken_import': " \
           "No module named 'daemond_no_such_dependency' (known: " in proc.stderr()
    assert "Traceback" not in proc.stderr()
    proc = daemond_process({"e": {"plugins": ["echo", "tests.plugins.broken_import"]}}, ready=False)
    assert proc.proc.wait(15) == 1
    assert "plugin 'tests.plugins.broken_import': cannot import 'tests.plugins.broken_import': " \
           "No module named 'daemond_no_such_dependency'" in proc.stderr()
    assert "Traceback" not in proc.stderr()


def test_tuning_sets_the_gil_switch_interval_and_reload_changes_it(daemond_factory):
    import sys as _sys

    import yaml

    before = _sys.getswitchinterval()
    try:
        d = daemond_factory({"e": {"plugins": ["echo"]}}, tuning={"switch_interval": 0.02}, reload={"watch": False})
        assert _sys.getswitchinterval() == pytest.approx(0.02)
        doc = yaml.safe_load(d.config_path.read_text())
        doc["tuning"]["switch_interval"] = 0.08
        d.config_path.write_text(yaml.safe_dump(doc))
        report = d.daemon.reload()
        assert report["ok"] and _sys.getswitchinterval() == pytest.approx(0.08)
    finally:
        _sys.setswitchinterval(before)
