"""The control socket, driven over the real Unix socket of an in-process daemon."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from daemon.control import protocol
from daemon.control import endpoint as control_endpoint
from daemon.core import StartError
from daemon.testing import LineClient

ECHO = {"e": {"plugins": ["echo"]}}
CTL = "tests.plugins.ctlplugin:CtlPlugin"


class RawControl:
    """A control-socket client speaking JSON lines by hand, as a socat user would."""

    def __init__(self, path: Path, timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.reader = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, message: dict) -> None:
        self.send(json.dumps(message).encode() + b"\n")

    def reply(self) -> dict:
        line = self.reader.readline()
        if not line:
            raise EOFError("control connection closed")
        return json.loads(line)

    def stream_until(self, suffix: str) -> str:
        """Read stream items until one ends with ``suffix`` (other log lines may come first)."""
        while True:
            reply = self.reply()
            assert "stream" in reply, reply
            if reply["stream"].endswith(suffix):
                return reply["stream"]

    def ask(self, message: dict) -> dict:
        self.request(message)
        return self.reply()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def __enter__(self) -> RawControl:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@pytest.fixture
def echo_daemon(daemond_factory):
    return daemond_factory(ECHO, plugins={CTL: None})


def test_status_over_the_socket_has_what_the_issue_lists(echo_daemon):
    with RawControl(echo_daemon.control_socket) as ctl, echo_daemon.client("e") as client:
        client.send_line("hi")
        assert client.read_line() == "hi"  # the session is running
        reply = ctl.ask({"command": "status", "id": 7})
    assert reply["ok"] is True and reply["id"] == 7
    status = reply["result"]
    assert status["pid"] == os.getpid()
    assert status["config"] == str(echo_daemon.config_path.absolute())
    assert status["paused"] is False and status["started_at"] > 0
    assert status["reload"] is None  # no reload yet
    (listener,) = status["listeners"]
    assert listener["name"] == "e" and listener["address"] == list(echo_daemon.address("e"))
    assert listener["plugins"] == ["echo"] and listener["connections"] == 1
    assert status["threads"]["all"] - status["threads"]["spare"] == 1  # the session's, busy
    assert status["plugins"]["echo"]["errors"] == 0
    assert status["plugins"][CTL]["wiped"] == 0  # a plugin's daemond_status
    assert status["control"]["socket"] == str(echo_daemon.control_socket)
    assert "text" not in reply  # text only when asked for


def test_text_is_rendered_on_request(echo_daemon):
    with RawControl(echo_daemon.control_socket) as ctl:
        reply = ctl.ask({"command": "status", "text": True})
    assert f"(pid {os.getpid()})" in reply["text"]
    assert "e " in reply["text"] and "plugins: echo" in reply["text"]


def test_help_lists_core_and_plugin_commands(echo_daemon):
    reply = echo_daemon.control("help")
    by_name = {c["name"]: c for c in reply["result"]}
    assert {"status", "pause", "resume", "stop", "reload", "logs", "clear-logs", "help"} <= set(by_name)
    assert by_name["status"]["plugin"] is None
    assert by_name["wipe"]["plugin"] == CTL and by_name["wipe"]["confirm"] == "Really wipe everything?"
    assert by_name["logs"]["usage"] == "logs [-n LINES] [-f]"
    one = echo_daemon.control("help", "echo-args")["result"]
    assert one["usage"] == "echo-args WORD [-t TIMES] [--loud] [--mode MODE]"
    assert echo_daemon.control("help", "nope")["error"]["code"] == "usage"


def test_arguments_by_words_and_by_name(echo_daemon):
    by_words = echo_daemon.control("echo-args", "hello", "-t", "3", "--loud", "--mode=b")
    assert by_words["result"] == {"word": "hello", "times": 3, "loud": True, "mode": "b"}
    by_name = echo_daemon.control("echo-args", word="hi", times=2)
    assert by_name["result"] == {"word": "hi", "times": 2, "loud": False, "mode": "a"}
    for argv, fragment in ((["-t", "3"], "missing argument 'word'"), (["x", "-t", "many"], "bad value for times"),
                           (["x", "--mode", "c"], "must be one of a, b"), (["x", "--what"], "unknown option --what"),
                           (["x", "y"], "unexpected argument 'y'"), (["x", "-t"], "-t needs a value")):
        reply = echo_daemon.control("echo-args", *argv)
        assert reply["ok"] is False and reply["error"]["code"] == "usage", argv
        assert fragment in reply["error"]["message"], reply
    usage = echo_daemon.control("echo-args", "--help")
    assert usage["ok"] and usage["result"].startswith("usage: echo-args WORD")


def test_failures_are_replies_with_codes(echo_daemon):
    assert echo_daemon.control("fail")["error"] == {"code": "failed", "message": "it failed on purpose",
                                                    "details": {"why": "testing"}}
    crash = echo_daemon.control("crash")["error"]
    assert crash["code"] == "internal" and "RuntimeError: crashed on purpose" in crash["message"]
    assert echo_daemon.control("nope")["error"]["code"] == "usage"
    # the control thread lives on
    assert echo_daemon.control("status")["ok"]


def test_a_missing_argument_is_asked_for(echo_daemon):
    needed = echo_daemon.control("secret", "ann")["error"]
    assert needed == {"code": "argument-needed", "message": "secret: give the token",
                      "details": {"argument": "token", "prompt": "token for ann", "secret": True,
                                  "confirm": True}}
    # words and the asked-for argument by name, together
    assert echo_daemon.control("secret", "ann", "--note", "hi", token="xyz")["result"].startswith("ann got a token of 3")
    both = echo_daemon.control("secret", "ann", "--token", "a", token="b")["error"]
    assert both == {"code": "usage", "message": "secret: token given both by name and as words"}


def test_confirm_is_enforced_by_the_daemon(echo_daemon):
    reply = echo_daemon.control("wipe")
    assert reply["error"] == {"code": "confirm", "message": "Really wipe everything?"}
    assert echo_daemon.control("status")["result"]["plugins"][CTL]["wiped"] == 0  # nothing happened
    with echo_daemon.client("e") as one, echo_daemon.client("e") as two:
        for c in (one, two):
            c.send_line("hi")
            assert c.read_line() == "hi"
        done = echo_daemon.control("wipe", confirmed=True)
    assert done["result"] == {"wiped": 1, "sessions": 2}  # while clients are connected


@pytest.mark.parametrize("garbage, code", [
    (b"garbage\n", "bad-request"),
    (b"{\"command\": \"status\"\n", "bad-request"),
    (b"[1, 2]\n", "bad-request"),
    (b"{}\n", "bad-request"),
    (b"{\"command\": 5}\n", "bad-request"),
    (b"{\"command\": \"status\", \"argv\": \"-n 5\"}\n", "bad-request"),
    (b"{\"command\": \"status\", \"args\": [1]}\n", "bad-request"),
    (b"{\"command\": \"status\", \"confirmed\": \"yes\"}\n", "bad-request"),
    (b"{\"command\": \"status\", \"surprise\": 1}\n", "bad-request"),
    (b"\xff\xfe\xfd\n", "bad-request"),
    (b"{\"command\": \"logs\", \"argv\": [\"-n\", \"1\"], \"args\": {\"lines\": 1}}\n", "usage"),
    (b"{\"command\": \"no-such-command\"}\n", "usage"),
])
def test_garbage_gets_an_error_reply_and_the_connection_lives(echo_daemon, garbage, code):
    with RawControl(echo_daemon.control_socket) as ctl:
        ctl.send(garbage)
        reply = ctl.reply()
        assert reply["ok"] is False and reply["error"]["code"] == code, reply
        assert ctl.ask({"command": "status"})["ok"]


def test_blank_lines_and_crlf_are_tolerated(echo_daemon):
    with RawControl(echo_daemon.control_socket) as ctl:
        ctl.send(b"\n\r\n{\"command\": \"status\", \"id\": 1}\r\n")
        assert ctl.reply()["id"] == 1


def test_one_mib_request_is_refused_and_the_connection_lives(echo_daemon):
    with RawControl(echo_daemon.control_socket) as ctl:
        big = json.dumps({"command": "status", "id": "x" * (1024 * 1024)}).encode() + b"\n"
        sender = threading.Thread(target=ctl.send, args=(big,), name="test-sender")
        sender.start()
        reply = ctl.reply()
        sender.join()
        assert reply["error"]["code"] == "too-long"
        assert ctl.ask({"command": "status", "id": 2})["id"] == 2  # the rest of the long line was skipped
    with RawControl(echo_daemon.control_socket) as ctl:  # and the control thread accepts on
        assert ctl.ask({"command": "status"})["ok"]


def test_several_requests_on_one_connection_in_order(echo_daemon):
    with RawControl(echo_daemon.control_socket) as ctl:
        ctl.send(b"".join(json.dumps({"command": "status", "id": i}).encode() + b"\n" for i in range(20)))
        assert [ctl.reply()["id"] for _ in range(20)] == list(range(20))


def _parallel_status(daemon, n: int, leave: bool) -> list[dict]:
    clients = [RawControl(daemon.control_socket) for _ in range(n)]  # all connected at once
    replies: list[dict] = [{} for _ in clients]

    def ask(i: int) -> None:
        replies[i] = clients[i].ask({"command": "status", "id": i})
        if leave:
            clients[i].close()

    threads = [threading.Thread(target=ask, args=(i,), name=f"test-status-{i}") for i in range(len(clients))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        for c in clients:
            c.close()
    return replies


def test_a_hundred_parallel_status_requests_are_all_answered(echo_daemon):
    """The clients stay connected: each is served by a thread of its own."""
    replies = _parallel_status(echo_daemon, 100, leave=False)
    assert [r.get("id") for r in replies] == list(range(100))
    assert all(r["ok"] for r in replies)


def test_a_burst_over_the_client_limit_waits_its_turn(daemond_factory, monkeypatch):
    """More clients than control threads: the rest wait in the backlog and are answered in turn."""
    monkeypatch.setattr(control_endpoint, "MAX_CLIENTS", 8)
    d = daemond_factory(ECHO)
    replies = _parallel_status(d, 100, leave=True)
    assert [r.get("id") for r in replies] == list(range(100))
    assert all(r["ok"] for r in replies)


def test_pause_refuses_at_once_and_resume_accepts_again(echo_daemon):
    host, port = echo_daemon.address("e")
    with echo_daemon.client("e") as kept:
        kept.send_line("accepted")  # a session, not just a connection queued in the backlog
        assert kept.read_line() == "accepted"  # (those are reset when the listener pauses)
        assert echo_daemon.control("pause")["result"].startswith("paused 1 listeners")
        with pytest.raises(ConnectionRefusedError):  # refused, not left hanging in a backlog
            socket.create_connection((host, port), timeout=5)
        assert echo_daemon.control("pause")["result"] == "already paused"
        assert echo_daemon.control("status")["result"]["paused"] is True
        kept.send_line("still here")  # a connected session carries on
        assert kept.read_line() == "still here"
        assert echo_daemon.control("resume")["result"] == "resumed 1 listeners"
        assert echo_daemon.control("resume")["result"] == "not paused; nothing to do"
    with LineClient(host, port) as again:
        again.send_line("back")
        assert again.read_line() == "back"


def test_logs_tail_and_clear(echo_daemon):
    import logging
    log = logging.getLogger("daemond.test")
    for i in range(10):
        log.warning("line %d before clearing", i)
    lines = echo_daemon.control("logs", "-n", "5")["result"]
    assert len(lines) == 5 and lines[-1].endswith("line 9 before clearing")
    assert echo_daemon.control("logs", lines=0)["result"] == []
    assert echo_daemon.control("logs", "-n", "-1")["error"]["code"] == "usage"
    log_file = echo_daemon.config.log_file
    cleared = echo_daemon.control("clear-logs")
    assert cleared["result"] == {"file": str(log_file), "cleared": True}
    log.warning("first line after clearing")
    data = log_file.read_bytes()
    assert b"before clearing" not in data and b"\0" not in data
    assert data.startswith(b"20") and b"first line after clearing" in data  # at offset 0: a timestamp, no hole
    in_memory = echo_daemon.control("logs")["result"]
    assert not [line for line in in_memory if "before clearing" in line]
    assert [line for line in in_memory if "clearing" in line][-1].endswith("first line after clearing")


def test_logs_follow_streams_until_the_client_leaves(echo_daemon):
    import logging
    log = logging.getLogger("daemond.test")
    log.warning("before following")
    with RawControl(echo_daemon.control_socket) as ctl:
        ctl.request({"command": "logs", "argv": ["-n", "1", "-f"], "id": "f"})
        assert ctl.reply() == {"streaming": True, "id": "f"}
        ctl.stream_until("before following")  # the tail, then what follows
        for i in range(3):
            log.warning("followed %d", i)
            ctl.stream_until(f"followed {i}")
        assert echo_daemon.daemon.logs.memory._followers  # subscribed
    _wait_until(lambda: not echo_daemon.daemon.logs.memory._followers)  # unsubscribed once the client left
    _wait_until(lambda: echo_daemon.control("status")["result"]["control"]["clients"] == 1)


def test_a_half_closed_client_still_gets_its_stream(echo_daemon):
    """socat shuts down its writing side when its input ends, and reads on."""
    import logging
    with RawControl(echo_daemon.control_socket) as ctl:
        ctl.request({"command": "logs", "args": {"follow": True, "lines": 0}})
        ctl.sock.shutdown(socket.SHUT_WR)
        assert ctl.reply() == {"streaming": True}
        logging.getLogger("daemond.test").warning("after the half-close")
        ctl.stream_until("after the half-close")


def test_a_stream_ends_with_a_final_reply(echo_daemon):
    reply = echo_daemon.control("count", "--to", "4")
    assert reply["ok"] and reply["streamed"] == ["1", "2", "3", "4"]


def test_stop_ends_followers_and_joins_every_control_thread(daemond_factory):
    d = daemond_factory(ECHO)
    ctl = RawControl(d.control_socket)
    idle = RawControl(d.control_socket)
    try:
        ctl.request({"command": "logs", "args": {"follow": True, "lines": 0}})
        assert ctl.reply() == {"streaming": True}
        assert idle.ask({"command": "status"})["ok"]
        d.stop()  # must not hang on the stream or the idle client (the autouse fixture checks the threads)
        last = [json.loads(line) for line in ctl.reader.readlines()]
        assert last[-1] == {"ok": True, "result": None}
        assert idle.reader.readline() == b""
    finally:
        ctl.close()
        idle.close()
    assert not d.control_socket.exists()  # removed at stop


def test_stop_command_requests_a_stop(echo_daemon):
    reply = echo_daemon.control("stop")
    assert reply["ok"] and echo_daemon.daemon.stop_requested


def test_reload_applies_and_refuses_and_status_shows_it(daemond_factory):
    import yaml
    echo_daemon = daemond_factory(ECHO, reload={"watch": False})  # only our reloads
    path = echo_daemon.config_path
    doc = yaml.safe_load(path.read_text())
    doc["listeners"]["e"]["idle_timeout"] = 10
    path.write_text(yaml.safe_dump(doc))
    applied = echo_daemon.control("reload")
    assert applied["ok"] and applied["result"]["ok"] is True, applied
    assert any("idle_timeout" in change for change in applied["result"]["changes"]), applied
    assert echo_daemon.control("status")["result"]["reload"]["ok"] is True
    doc["listeners"]["e"]["port"] = "many"
    path.write_text(yaml.safe_dump(doc))
    refused = echo_daemon.control("reload")["error"]
    assert refused["code"] == "failed"
    assert refused["message"].startswith(f"reload refused: {path}:") and "listeners.e.port" in refused["message"]
    assert refused["details"]["ok"] is False
    assert echo_daemon.control("status")["result"]["reload"]["ok"] is False


def test_a_plugin_loaded_by_a_reload_brings_its_commands(daemond_factory):
    d = daemond_factory(ECHO, reload={"watch": False})
    assert d.control("wipe")["error"]["code"] == "usage"  # no such command yet
    text = d.config_path.read_text()
    d.config_path.write_text(text + f"plugins:\n  {CTL}: null\n")
    assert d.control("reload")["ok"]
    assert d.control("wipe", confirmed=True)["result"]["wiped"] == 1


def test_socket_and_directory_modes(daemond_factory, tmp_path):
    sock_path = tmp_path / "run" / "ctl" / "control.sock"
    old = os.umask(0)  # the daemon must not depend on a tight umask
    try:
        d = daemond_factory(ECHO, control={"socket": str(sock_path)})
    finally:
        os.umask(old)
    assert stat.S_ISSOCK(sock_path.stat().st_mode)
    assert stat.S_IMODE(sock_path.stat().st_mode) == 0o660
    assert stat.S_IMODE(sock_path.parent.stat().st_mode) == 0o750
    assert d.control("status")["ok"]


def test_a_stale_socket_is_replaced(daemond_factory, tmp_path):
    sock_path = tmp_path / "ctl" / "control.sock"
    sock_path.parent.mkdir()
    crashed = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    crashed.bind(str(sock_path))  # bound and closed without unlinking: a crashed daemon's leftover
    crashed.close()
    d = daemond_factory(ECHO, control={"socket": str(sock_path)})
    assert d.control("status")["ok"]


def test_a_live_socket_of_another_daemon_is_refused(daemond_factory, tmp_path):
    sock_path = tmp_path / "ctl" / "control.sock"
    first = daemond_factory(ECHO, control={"socket": str(sock_path)})
    with pytest.raises(StartError) as exc:
        daemond_factory(ECHO, control={"socket": str(sock_path)})
    assert str(exc.value) == (f"control socket {sock_path} is in use by another running daemond (pid {os.getpid()}); "
                              "stop it first or set control.socket")
    assert first.control("status")["ok"]  # the first one is untouched


def test_a_file_in_the_way_is_refused(daemond_factory, tmp_path):
    in_the_way = tmp_path / "control.sock"
    in_the_way.write_text("not a socket")
    with pytest.raises(StartError, match="exists and is not a socket"):
        daemond_factory(ECHO, control={"socket": str(in_the_way)})
    assert in_the_way.read_text() == "not a socket"


def test_an_unknown_group_is_refused(daemond_factory, tmp_path):
    with pytest.raises(StartError, match="control.group 'no-such-group-here': no such group"):
        daemond_factory(ECHO, control={"socket": str(tmp_path / "c.sock"), "group": "no-such-group-here"})


def test_a_too_long_socket_path_is_refused(daemond_factory, tmp_path):
    with pytest.raises(StartError, match="is too long"):
        daemond_factory(ECHO, control={"socket": str(tmp_path / ("x" * 120) / "c.sock")})


def test_hook_daemond_control_commands(daemond_factory):
    """Each plugin's commands are registered under its name, run over the socket, and listed by help."""
    d = daemond_factory(ECHO, plugins={CTL: None})
    described = {c["name"]: c for c in d.control("help")["result"]}
    assert {n for n, c in described.items() if c["plugin"] == CTL} == {"wipe", "fail", "crash", "echo-args", "secret", "count"}
    assert d.control("echo-args", "x")["result"]["word"] == "x"
    with pytest.raises(StartError) as raised:
        daemond_factory(ECHO, plugins={"tests.plugins.badcommands:Raises": None})
    assert str(raised.value) == ("plugin 'tests.plugins.badcommands:Raises' failed to provide control commands: "
                                 "RuntimeError: no commands today")
    with pytest.raises(StartError, match="returned 'status', not a ControlCommand"):
        daemond_factory(ECHO, plugins={"tests.plugins.badcommands:NotACommand": None})


def test_duplicate_command_names_stop_the_start(daemond_factory):
    with pytest.raises(StartError) as exc:
        daemond_factory(ECHO, plugins={"tests.plugins.dupcommand": None})
    assert str(exc.value) == "plugin 'tests.plugins.dupcommand': control command 'status' is already provided by the core"


# -- who may connect: SO_PEERCRED -------------------------------------------------------

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"command": "status"}\\n')
except BrokenPipeError:
    pass  # refused peers are closed at once; the reply is still there to read
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
    if data.endswith(b"\\n"):
        break
print(data.decode(), end="")
if sys.argv[2:] == ["check-closed"]:
    try:
        print("closed" if s.recv(1) == b"" else "open")
    except ConnectionResetError:
        print("closed")
"""


def _as_nobody(path: Path, *extra: str) -> list[str]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a client as nobody")
    proc = subprocess.run([*NOBODY, "/usr/bin/python3", "-c", CLIENT, str(path), *extra],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest.fixture
def open_dir():
    """A directory anybody may enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="daemond-ctl-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_foreign_uid_is_refused_with_one_line(daemond_factory, open_dir):
    sock_path = open_dir / "ctl" / "control.sock"
    d = daemond_factory(ECHO, control={"socket": str(sock_path)})
    # open the file modes wide on purpose: the uid check must hold on its own
    sock_path.parent.chmod(0o755)
    sock_path.chmod(0o666)
    reply, state = _as_nobody(sock_path, "check-closed")
    error = json.loads(reply)["error"]
    assert error["code"] == "forbidden" and error["message"].startswith("uid 65534 may not control this daemond")
    assert state == "closed"
    assert d.control("status")["result"]["control"]["refused"] == 1


def test_members_of_control_group_are_allowed(daemond_factory, open_dir):
    sock_path = open_dir / "ctl" / "control.sock"
    d = daemond_factory(ECHO, control={"socket": str(sock_path), "group": "nogroup"})
    # the daemon made the directory and the socket group-accessible for nogroup only
    assert sock_path.stat().st_gid == sock_path.parent.stat().st_gid == 65534
    (reply,) = _as_nobody(sock_path)
    assert json.loads(reply)["result"]["pid"] == os.getpid()
    assert d.control("status")["result"]["control"]["refused"] == 0


def test_the_directory_keeps_strangers_out_before_the_uid_check(daemond_factory, open_dir):
    sock_path = open_dir / "ctl" / "control.sock"
    daemond_factory(ECHO, control={"socket": str(sock_path)})
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a client as nobody")
    proc = subprocess.run([*NOBODY, "/usr/bin/python3", "-c", CLIENT, str(sock_path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "PermissionError" in proc.stderr


def _wait_until(condition, timeout: float = 10.0) -> None:
    import time
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_protocol_exit_status_mapping():
    assert protocol.exit_status(protocol.ok(1)) == 0
    assert protocol.exit_status(protocol.error(protocol.FAILED, "x")) == 1
    assert protocol.exit_status(protocol.error(protocol.INTERNAL, "x")) == 1
    assert protocol.exit_status(protocol.error(protocol.FORBIDDEN, "x")) == 1
    assert protocol.exit_status(protocol.error(protocol.USAGE, "x")) == 2
