"""The installed ``daemonctl`` against real daemons: commands, output, exit statuses, finding the socket."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from tests.support.process import installed
from tests.support.pty import Terminal

ECHO = {"e": {"plugins": ["echo"]}}
CTL = "tests.plugins.ctlplugin:CtlPlugin"
REPO = Path(__file__).resolve().parents[2]


def daemonctl(*args: str, env: dict | None = None, cwd=None, timeout: float = 30, **kwargs) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("DAEMOND_SOCKET", "DAEMOND_CONFIG", "RUNTIME_DIRECTORY")}
    proc = subprocess.run([installed("daemonctl"), *args], capture_output=True, text=True, timeout=timeout,
                          env={**environ, **(env or {})}, cwd=cwd,
                          **({"stdin": subprocess.DEVNULL} if "input" not in kwargs else {}), **kwargs)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def d(daemond_factory):
    return daemond_factory(ECHO, plugins={CTL: None})


def ctl(d, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return daemonctl("--socket", str(d.control_socket), *args, **kwargs)


# -- every command -----------------------------------------------------------------------


def test_status_for_people_and_for_machines(d):
    text = ctl(d, "status")
    assert text.returncode == 0 and text.stderr == ""
    assert f"(pid {os.getpid()}): running, since " in text.stdout
    assert f"config:      {d.config_path.absolute()}" in text.stdout
    assert "last reload: none since start" in text.stdout
    assert re.search(r"^  e +127\.0\.0\.1:\d+ +0 connected .*plugins: echo$", text.stdout, re.M), text.stdout
    assert re.search(r"^  echo +0\.1\.0 \(built-in\)  errors: 0$", text.stdout, re.M), text.stdout
    machine = ctl(d, "--json", "status")
    reply = json.loads(machine.stdout)
    assert machine.returncode == 0 and reply["ok"] is True and reply["result"]["pid"] == os.getpid()
    assert "text" not in reply
    assert json.loads(ctl(d, "status", "--json").stdout)["result"]["pid"] == os.getpid()  # --json after the command


def test_help_lists_plugin_commands(d):
    out = ctl(d, "help").stdout
    for usage in ("status", "pause", "resume", "stop", "reload", "logs [-n LINES] [-f]", "clear-logs", "help [COMMAND]"):
        assert f"\n  {usage} " in out, usage
    assert re.search(rf"^  wipe +forget everything \(asks first\)  \[{re.escape(CTL)}\]$", out, re.M), out
    one = ctl(d, "help", "logs")
    assert one.returncode == 0 and one.stdout.startswith("usage: logs [-n LINES] [-f]\n")
    assert "-n, --lines" in one.stdout


def test_pause_and_resume_say_what_they_did(d):
    host, port = d.address("e")
    first = ctl(d, "pause")
    assert (first.returncode, first.stdout) == (0, "paused 1 listeners; connected sessions carry on\n")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=5)
    again = ctl(d, "pause")
    assert (again.returncode, again.stdout) == (0, "already paused\n")
    assert "PAUSED" in ctl(d, "status").stdout
    assert ctl(d, "resume").stdout == "resumed 1 listeners\n"
    assert ctl(d, "resume").stdout == "not paused; nothing to do\n"
    socket.create_connection((host, port), timeout=5).close()


def test_logs_and_clear_logs(d):
    logging.getLogger("daemond.test").warning("a line to find")
    out = ctl(d, "logs", "-n", "1")
    assert out.returncode == 0 and out.stdout.endswith("WARNING daemond.test: a line to find\n")
    assert len(ctl(d, "logs").stdout.splitlines()) <= 50
    cleared = ctl(d, "clear-logs")
    assert (cleared.returncode, cleared.stdout) == (0, f"emptied {d.config.log_file} and the in-memory lines\n")
    assert d.config.log_file.stat().st_size == 0
    assert ctl(d, "logs").stdout == ""


def test_plugin_command_arguments_pass_through(d):
    out = ctl(d, "--json", "echo-args", "word", "-t", "2", "--loud")
    assert json.loads(out.stdout)["result"] == {"word": "word", "times": 2, "loud": True, "mode": "a"}
    out = ctl(d, "echo-args", "--", "-starts-with-a-dash")
    assert "word: -starts-with-a-dash" in out.stdout


def test_streamed_results_print_as_they_come(d):
    out = ctl(d, "count", "--to", "3")
    assert (out.returncode, out.stdout) == (0, "1\n2\n3\n")
    lines = [json.loads(line) for line in ctl(d, "--json", "count").stdout.splitlines()]
    assert lines == [{"streaming": True}, {"stream": "1"}, {"stream": "2"}, {"stream": "3"}, {"ok": True, "result": None}]


# -- exit statuses ---------------------------------------------------------------------------


@pytest.mark.parametrize("args, status, message", [
    (["nope"], 2, "daemonctl: unknown command 'nope' (try help)"),
    (["logs", "-n", "many"], 2, "daemonctl: logs: bad value for lines: 'many'"),
    (["logs", "--lines"], 2, "daemonctl: logs: --lines needs a value"),
    (["pause", "extra"], 2, "daemonctl: pause: unexpected argument 'extra' (usage: pause)"),
    (["fail"], 1, "daemonctl: it failed on purpose"),
    (["crash"], 1, "daemonctl: crash failed: RuntimeError: crashed on purpose"),
])
def test_failures_are_one_line_with_the_right_status(d, args, status, message):
    out = ctl(d, *args)
    assert (out.returncode, out.stderr, out.stdout) == (status, message + "\n", "")


def test_json_failures_go_to_stdout_with_details(d):
    out = ctl(d, "--json", "fail")
    assert out.returncode == 1
    assert json.loads(out.stdout)["error"] == {"code": "failed", "message": "it failed on purpose", "details": {"why": "testing"}}


def test_reload_exit_status_follows_the_outcome(daemond_factory):
    import yaml
    d = daemond_factory(ECHO, reload={"watch": False})  # only our reloads
    doc = yaml.safe_load(d.config_path.read_text())
    doc["listeners"]["e"]["max_line"] = 100
    d.config_path.write_text(yaml.safe_dump(doc))
    applied = ctl(d, "reload")
    assert applied.returncode == 0 and applied.stdout.startswith("reload applied (") and "max_line" in applied.stdout
    assert "last reload: applied at " in ctl(d, "status").stdout
    doc["listeners"]["e"]["port"] = "many"
    d.config_path.write_text(yaml.safe_dump(doc))
    refused = ctl(d, "reload")
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"daemonctl: reload refused: {d.config_path}:") and "listeners.e.port" in refused.stderr
    assert "last reload: refused at " in ctl(d, "status").stdout


@pytest.mark.parametrize("args", [[], ["--bogus", "status"], ["-s"], ["--timeout", "soon", "status"]])
def test_usage_errors_exit_2(args):
    out = daemonctl(*args)
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith("daemonctl: ")


def test_help_and_version():
    assert daemonctl("--help").stdout.startswith("usage: daemonctl")
    assert daemonctl("--version").stdout.startswith("daemonctl ")


def test_no_daemon_is_exit_3_naming_the_socket(tmp_path):
    missing = tmp_path / "control.sock"
    out = daemonctl("--socket", str(missing), "status")
    assert out.returncode == 3 and out.stdout == ""
    assert out.stderr == (f"daemonctl: no daemond answers at {missing}: no such socket "
                          "(is daemond running? see -s, -c, $DAEMOND_SOCKET)\n")


def test_stale_socket_is_exit_3(tmp_path):
    stale = tmp_path / "control.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()
    out = daemonctl("--socket", str(stale), "status")
    assert out.returncode == 3
    assert out.stderr == (f"daemonctl: no daemond answers at {stale}: "
                          "connection refused (a stale socket: daemond is not running)\n")


def test_a_daemon_that_never_answers_is_exit_3(tmp_path):
    mute = tmp_path / "control.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(mute))
    server.listen()
    try:
        out = daemonctl("--socket", str(mute), "--timeout", "0.5", "status")
    finally:
        server.close()
    assert out.returncode == 3 and out.stderr == f"daemonctl: no reply from daemond at {mute} in time (see --timeout)\n"


# -- finding the socket ------------------------------------------------------------------------


def test_socket_from_daemond_socket_env(d):
    assert daemonctl("status", env={"DAEMOND_SOCKET": str(d.control_socket)}).returncode == 0


def test_socket_from_the_config_file(d):
    assert daemonctl("-c", str(d.config_path), "status").returncode == 0
    assert daemonctl("status", env={"DAEMOND_CONFIG": str(d.config_path)}).returncode == 0


def test_socket_from_the_search_path(d, tmp_path):
    (tmp_path / "etc").mkdir()
    shutil.copy(d.config_path, tmp_path / "etc" / "daemond.yaml")  # state_dir in it is absolute
    assert daemonctl("status", cwd=tmp_path).returncode == 0


def test_relative_control_socket_in_config(daemond_factory):
    d = daemond_factory(ECHO, control={"socket": "sub/ctl.sock"})
    assert d.control_socket == d.config.state_dir / "sub" / "ctl.sock"
    assert daemonctl("-c", str(d.config_path), "status").returncode == 0


def test_runtime_directory_like_systemd(daemond_factory, tmp_path, monkeypatch):
    runtime = tmp_path / "run"
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(runtime))
    d = daemond_factory(ECHO)
    assert d.control_socket == runtime / "control.sock"
    assert daemonctl("-c", str(d.config_path), "status", env={"RUNTIME_DIRECTORY": str(runtime)}).returncode == 0


def test_an_unreadable_config_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("control: {socket: [unclosed\n")
    out = daemonctl("-c", str(bad), "status")
    assert out.returncode == 2 and out.stderr.startswith(f"daemonctl: cannot read config {bad}: ")
    missing = daemonctl("-c", str(tmp_path / "none.yaml"), "status")
    assert missing.returncode == 2 and "No such file or directory" in missing.stderr


def test_daemonctl_imports_only_what_it_needs(d):
    probe = ("import sys; from daemon import ctl; sys.argv = ['daemonctl'] + sys.argv[1:]; code = ctl.main();"
             "print(' '.join(sorted(sys.modules)), file=sys.stderr); sys.exit(code)")
    heavy = {"pluggy", "watchdog", "daemon.core", "daemon.config", "daemon.loader", "daemon.commands", "plugins",
             "socket", "selectors", "typing"}
    by_socket = subprocess.run([sys.executable, "-c", probe, "--socket", str(d.control_socket), "status"],
                               capture_output=True, text=True, timeout=30)
    assert by_socket.returncode == 0
    loaded = set(by_socket.stderr.split())
    assert not loaded & (heavy | {"yaml"}), loaded & (heavy | {"yaml"})
    by_config = subprocess.run([sys.executable, "-c", probe, "-c", str(d.config_path), "status"],
                               capture_output=True, text=True, timeout=30)
    assert by_config.returncode == 0
    loaded = set(by_config.stderr.split())
    assert not loaded & (heavy | {"yaml"}), loaded & (heavy | {"yaml"})  # a plain config is read line by line
    fancy = d.config_path.parent / "fancy.yaml"
    fancy.write_text(f"state_dir: &dir {d.config.state_dir}\n" + d.config_path.read_text().split("\n", 1)[1])
    by_pyyaml = subprocess.run([sys.executable, "-c", probe, "-c", str(fancy), "status"],
                               capture_output=True, text=True, timeout=30)
    assert by_pyyaml.returncode == 0, by_pyyaml.stderr
    loaded = set(by_pyyaml.stderr.split())
    assert "yaml" in loaded and not loaded & heavy, loaded & heavy  # an anchor: PyYAML reads it


# -- confirmation ------------------------------------------------------------------------------


def test_confirmation_without_a_terminal_needs_yes(d):
    out = ctl(d, "wipe")
    assert out.returncode == 2
    assert out.stderr == "daemonctl: wipe asks: Really wipe everything? — answer on a terminal, or pass --yes\n"
    assert d.control("status")["result"]["plugins"][CTL]["wiped"] == 0
    yes = ctl(d, "wipe", "--yes")
    assert yes.returncode == 0 and "wiped: 1" in yes.stdout
    assert ctl(d, "-y", "wipe").returncode == 0


@pytest.mark.parametrize("answer, status, wiped", [("y", 0, 1), ("yes", 0, 1), ("n", 1, 0), ("", 1, 0)])
def test_confirmation_on_a_terminal(d, answer, status, wiped):
    term = Terminal([installed("daemonctl"), "--socket", str(d.control_socket), "wipe"])
    try:
        term.expect("Really wipe everything? [y/N] ")
        term.write(answer + "\n")
        rest = term.read_to_end()
        assert term.wait() == status, rest
    finally:
        term.close()
    assert d.control("status")["result"]["plugins"][CTL]["wiped"] == wiped
    if not wiped:
        assert "daemonctl: wipe: not confirmed; nothing done" in rest


def test_a_secret_is_asked_for_without_echo(d):
    term = Terminal([installed("daemonctl"), "--socket", str(d.control_socket), "secret", "ann"])
    try:
        term.expect("token for ann: ")
        term.write("hunter2-secret\n")
        term.expect("again: ")  # a new secret is asked twice on a terminal
        term.write("hunter2-secret\n")
        term.expect("note: ")  # not a secret, and asked for on the terminal too (echoed)
        term.write("a note\n")
        rest = term.read_to_end()
        assert term.wait() == 0, rest
    finally:
        term.close()
    assert "ann got a token of 14 characters; note: a note" in rest
    assert "hunter2-secret" not in term.output.decode()  # never echoed


def test_a_new_secret_typed_differently_twice_does_nothing(d):
    term = Terminal([installed("daemonctl"), "--socket", str(d.control_socket), "secret", "ann", "--note", "n"])
    try:
        term.expect("token for ann: ")
        term.write("hunter2-secret\n")
        term.expect("again: ")
        term.write("hunter3-secret\n")
        rest = term.read_to_end()
        assert term.wait() == 1, rest
    finally:
        term.close()
    assert "daemonctl: the tokens you typed differ; nothing done" in rest and "got a token" not in rest


def test_a_secret_from_stdin_for_scripts(d):
    piped = subprocess.run([installed("daemonctl"), "--socket", str(d.control_socket), "secret", "ann", "--note", "n"],
                           input="from-a-pipe\n", capture_output=True, text=True, timeout=30)
    assert (piped.returncode, piped.stdout) == (0, "ann got a token of 11 characters; note: n\n")
    unasked = ctl(d, "secret", "ann", "--token", "t")  # a non-secret needs a terminal
    assert (unasked.returncode, unasked.stderr) == (2, "daemonctl: secret: give a note\n")


def test_auth_users_and_clear_auth_through_daemonctl(daemond_factory):
    from tests.support.auth import auth_settings
    d = daemond_factory({"login": {"plugins": ["auth", "echo"]}}, {"auth": auth_settings()})
    term = Terminal([installed("daemonctl"), "--socket", str(d.control_socket), "users", "add", "carol"])
    try:
        term.expect("password for carol: ")
        term.write("carol-password-1\n")
        term.expect("again: ")
        term.write("carol-password-1\n")
        assert "added carol" in term.read_to_end() and term.wait() == 0
    finally:
        term.close()
    assert "carol-password-1" not in term.output.decode()
    with d.client("login") as carol:
        carol.read_line()
        assert carol.command("/login carol carol-password-1")[1].startswith("+OK logged in as carol")
        assert ctl(d, "users", "add", "bo", input="bo-password-1\n").returncode == 0
        listed = ctl(d, "users", "list").stdout.splitlines()
        assert re.fullmatch(r"NAME +CREATED +LAST LOGIN +FROM", listed[0]), listed
        assert re.fullmatch(r"bo     \S+Z  never", listed[1]), listed
        assert re.fullmatch(r"carol  \S+Z  \S+Z  127\.0\.0\.1", listed[2]), listed
        starts = {line.index("Z  ") for line in listed[1:]}  # the columns line up
        assert len(starts) == 1 and listed[0].index("LAST LOGIN") == starts.pop() + 3, listed
        cleared = ctl(d, "clear-auth", "--yes")  # while carol is connected
        assert cleared.returncode == 0 and cleared.stdout.startswith("deleted 2 users")
        carol.send_line("still connected")
        assert carol.read_line() == "still connected"
    assert json.loads(ctl(d, "--json", "users", "list").stdout)["result"] == []
    assert ctl(d, "users", "list").stdout == "no users\n"  # not an empty screen
    assert "carol-password-1" not in d.config.log_file.read_text()
    unasked = ctl(d, "users", "add", "gina")  # stdin is /dev/null: nothing to read, and nobody asked
    assert unasked.returncode == 2
    assert "reads one line from stdin" in unasked.stderr and "asks for it on a terminal" in unasked.stderr
    assert "--password-file" in unasked.stderr
    secret = d.config.state_dir.parent / "gina.pw"
    secret.write_text("gina-password-1\nignored\n")
    secret.chmod(0o644)
    loose = ctl(d, "--password-file", str(secret), "users", "add", "gina")
    assert loose.returncode == 2 and "may be read by others (mode 0644): chmod 600 it" in loose.stderr
    secret.chmod(0o600)
    assert ctl(d, "--password-file", str(secret), "users", "add", "gina").stdout == "added gina\n"
    with d.client("login") as gina:
        gina.read_line()
        assert gina.command("/login gina gina-password-1")[1].startswith("+OK logged in as gina")
    helped = ctl(d, "help", "users").stdout
    assert helped.count("asks for it") + helped.count("asked for") == 1, helped


# -- logs -f and clear-logs under load ------------------------------------------------------


def test_logs_follow_streams_until_ctrl_c(d):
    log = logging.getLogger("daemond.test")
    log.warning("already there")
    follower = subprocess.Popen([installed("daemonctl"), "--socket", str(d.control_socket), "logs", "-f", "-n", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follower.stdout.readline().endswith("WARNING daemond.test: already there\n")
        for i in range(5):
            log.warning("streamed %d", i)
            while not follower.stdout.readline().endswith(f"WARNING daemond.test: streamed {i}\n"):
                pass  # other daemon lines (the reload watcher's) may come between
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 0
        assert follower.stderr.read() == ""
    finally:
        follower.kill()
        follower.wait()
        follower.stdout.close()
        follower.stderr.close()


def test_clear_logs_under_concurrent_logging(d):
    """Truncated in place while a thread logs: no NUL hole, the file starts at a line, nothing lost after."""
    log = logging.getLogger("daemond.test")
    log_file = d.config.log_file
    stop = threading.Event()
    written = [0]

    def write() -> None:
        while not stop.is_set():
            log.info("tick %06d %s", written[0], "x" * 100)
            written[0] += 1

    writer = threading.Thread(target=write, name="test-log-writer")
    writer.start()
    try:
        while written[0] < 2000:
            stop.wait(0.01)
        before = log_file.stat().st_size
        done_before = written[0]
        assert ctl(d, "clear-logs").returncode == 0
        after_clear = written[0]
        while written[0] < after_clear + 500:
            stop.wait(0.01)
    finally:
        stop.set()
        writer.join()
    in_memory = ctl(d, "logs", "-n", "100000").stdout.splitlines()  # before the file: the daemon may log meanwhile
    data = log_file.read_bytes()
    assert b"\0" not in data
    assert len(data) < before
    # every line whole, the first at offset 0 (the daemon's own lines may come between the ticks)
    assert all(re.fullmatch(rb"\S+ \S+ [A-Z]+ [\w.]+: .*", line) for line in data.splitlines()), data[:300]
    ticks = [int(m) for m in re.findall(rb"^\S+ \S+ INFO daemond\.test: tick (\d{6}) x{100}$", data, re.M)]
    assert ticks[0] >= done_before  # what was there before the clear is gone
    assert ticks == list(range(ticks[0], written[0]))  # and nothing logged after it was lost
    assert set(in_memory) <= set(data.decode().splitlines())


# -- the installed daemond ----------------------------------------------------------------


def _proc_socket(proc) -> Path:
    return proc.config.parent / "state" / "control.sock"


def test_stop_returns_once_the_daemon_has_stopped(daemond_process):
    proc = daemond_process(ECHO)
    with proc.client("e") as client:
        out = daemonctl("--socket", str(_proc_socket(proc)), "stop")
        assert (out.returncode, out.stdout) == (0, "daemond is stopping\ndaemond stopped\n")
        assert client.expect_closed() == b""
    assert proc.proc.wait(10) == 0
    assert not _proc_socket(proc).exists()
    assert daemonctl("--socket", str(_proc_socket(proc)), "status").returncode == 3


def test_second_daemond_on_the_same_socket_is_refused(daemond_process, tmp_path):
    sock_path = tmp_path / "shared" / "control.sock"
    first = daemond_process(ECHO, control={"socket": str(sock_path)})
    # the same port too, as when one config is started twice: the daemon is named, not the port
    same = {"e": {"plugins": ["echo"], "port": first.ports["e"]}}
    second = daemond_process(same, control={"socket": str(sock_path)}, ready=False)
    assert second.proc.wait(15) == 1
    err = second.stderr().strip().splitlines()
    assert err[-1] == (f"daemond: control socket {sock_path} is in use by another running daemond "
                       f"(pid {first.proc.pid}); stop it first or set control.socket")
    assert "Traceback" not in second.stderr()
    assert daemonctl("--socket", str(sock_path), "status").returncode == 0  # the first one carries on
    assert first.terminate() == 0


def test_daemond_replaces_the_socket_of_a_killed_daemond(daemond_process, tmp_path):
    sock_path = tmp_path / "shared" / "control.sock"
    crashed = daemond_process(ECHO, control={"socket": str(sock_path)})
    crashed.kill()  # SIGKILL: the socket file stays behind
    assert sock_path.exists()
    assert daemonctl("--socket", str(sock_path), "status").returncode == 3
    daemond_process(ECHO, control={"socket": str(sock_path)})
    assert daemonctl("--socket", str(sock_path), "status").returncode == 0


def test_sighup_asks_for_a_reload(daemond_process):
    proc = daemond_process(ECHO)
    proc.proc.send_signal(signal.SIGHUP)
    _wait_for_log(proc, "SIGHUP received: reloading")
    _wait_for_log(proc, "reload (signal) of ")
    assert daemonctl("--socket", str(_proc_socket(proc)), "status").returncode == 0  # still running
    assert proc.terminate(signal.SIGINT) == 0


def _wait_for_log(proc, text: str, timeout: float = 10) -> None:
    import time
    deadline = time.monotonic() + timeout
    while text not in proc.stderr():
        assert time.monotonic() < deadline, proc.stderr()
        time.sleep(0.05)


# -- another uid ----------------------------------------------------------------------------


def _need_nobody() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run daemonctl as nobody")


def test_daemonctl_as_a_foreign_uid(daemond_factory):
    _need_nobody()
    open_dir = Path(tempfile.mkdtemp(prefix="daemond-ctl-"))
    try:
        open_dir.chmod(0o755)
        sock_path = open_dir / "ctl" / "control.sock"
        daemond_factory(ECHO, control={"socket": str(sock_path)})
        as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", installed("daemonctl")]
        kept_out = subprocess.run([*as_nobody, "--socket", str(sock_path), "status"], capture_output=True, text=True, timeout=30)
        assert kept_out.returncode == 3 and "Traceback" not in kept_out.stderr
        assert kept_out.stderr == (f"daemonctl: cannot use the control socket {sock_path}: permission denied "
                                   "(run as root, as daemond's user or as a member of control.group)\n")
        sock_path.parent.chmod(0o755)  # open the modes wide on purpose: the uid check must hold on its own
        sock_path.chmod(0o666)
        refused = subprocess.run([*as_nobody, "--socket", str(sock_path), "status"], capture_output=True, text=True, timeout=30)
        assert refused.returncode == 1 and refused.stdout == ""
        assert refused.stderr.startswith("daemonctl: uid 65534 may not control this daemond (allowed: root, uid 0)")
    finally:
        shutil.rmtree(open_dir, ignore_errors=True)


def test_plugins_lists_version_source_and_listeners(daemond_factory):
    d = daemond_factory({"e": {"plugins": ["echo"]}, "r": {"plugins": ["tests.plugins.raiser"]}})
    with d.client("r") as c:
        c.send_line("boom")
        c.expect_closed()
    out = ctl(d, "plugins")
    assert out.returncode == 0, out.stderr
    assert re.search(r"^echo +0\.1\.0 +built-in +0 +e +plugins\.echo$", out.stdout, re.M), out.stdout
    assert re.search(r"^tests\.plugins\.raiser +\? +path +1 +r +tests\.plugins\.raiser$", out.stdout, re.M), out.stdout
    listed = json.loads(ctl(d, "--json", "plugins").stdout)["result"]
    assert {p["name"]: p["source"] for p in listed} == {"echo": "built-in", "tests.plugins.raiser": "path"}


def test_json_gets_an_error_object_on_stdout_for_daemonctls_own_failures(d, tmp_path):
    gone = daemonctl("--socket", str(tmp_path / "nobody.sock"), "--json", "status")
    assert gone.returncode == 3
    reply = json.loads(gone.stdout)
    assert reply["ok"] is False and reply["error"]["code"] == "no-daemon" and reply["error"]["source"] == "daemonctl"
    assert reply["error"]["message"] in gone.stderr  # the same one line, for people
    unconfirmed = ctl(d, "wipe", "--json")  # no terminal, no --yes
    assert unconfirmed.returncode == 2 and json.loads(unconfirmed.stdout)["error"]["code"] == "usage"
    bad = daemonctl("--json", "--timeout", "soon", "status")
    assert bad.returncode == 2 and json.loads(bad.stdout)["error"]["code"] == "usage"
    assert ctl(d, "status").stdout and "{" not in daemonctl("--socket", str(tmp_path / "x"), "status").stdout
