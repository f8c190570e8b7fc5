"""daemond's console, driven through a pseudo-terminal as an operator would type at it."""

from __future__ import annotations

import re
import socket
import subprocess
import time

import pytest

from daemon.testing import write_config
from tests.support import chat
from tests.support.process import installed
from tests.support.pty import Terminal
from tests.support.robustness import ENV

PROMPT = "daemond> "
CTL = "tests.plugins.ctlplugin:CtlPlugin"


class Console:
    """daemond with its stdin and stdout on a terminal (stderr, the log, to a file)."""

    def __init__(self, tmp_path, args=(), controlling: bool = True, listeners: dict | None = None,
                 plugins: dict | None = None):
        self.config = write_config(tmp_path, listeners or {"e": {"plugins": ["echo"]}}, plugins or {CTL: None})
        self.stderr_path = tmp_path / "stderr.log"
        self._stderr = open(self.stderr_path, "wb")
        self.term = Terminal([installed("daemond"), "-c", str(self.config), *args], stderr=self._stderr,
                             controlling=controlling, env=ENV)  # ENV: tests.plugins is importable
        self.socket = tmp_path / "state" / "control.sock"

    def port(self) -> int:
        deadline = time.monotonic() + 15
        while True:
            found = re.search(r"listening on 127\.0\.0\.1:(\d+) \(e\)", self.stderr_path.read_text())
            if found:
                return int(found.group(1))
            assert time.monotonic() < deadline and self.term.proc.poll() is None, self.stderr_path.read_text()
            time.sleep(0.05)

    def run(self, line: str) -> str:
        """Type a line; the output up to the next prompt."""
        self.term.write(line + "\n")
        return self.term.expect(PROMPT)

    def daemonctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([installed("daemonctl"), "--socket", str(self.socket), *args],
                              capture_output=True, text=True, timeout=30)

    def close(self) -> None:
        self.term.close()
        self._stderr.close()


@pytest.fixture
def console(tmp_path):
    c = Console(tmp_path)
    yield c
    c.close()


def test_console_runs_commands_through_the_registry(console):
    console.term.expect("`help` lists the commands")
    console.term.expect(PROMPT)
    status = console.run("status")
    assert "): running, since " in status and "plugins: echo" in status
    helped = console.run("help")
    assert "logs [-n LINES] [-f]" in helped and f"[{CTL}]" in helped  # plugin commands too
    assert "word: hi" in console.run("echo-args hi --loud")
    assert "usage error: unknown command 'nope' (try help)" in console.run("nope")
    assert "error: it failed on purpose" in console.run("fail")
    assert "error: No closing quotation" in console.run("echo-args 'open quote")
    assert console.daemonctl("status").returncode == 0  # the control socket works alongside


def test_console_pause_refuses_connections_and_resume_accepts(console):
    port = console.port()
    console.term.expect(PROMPT)
    assert "paused 1 listeners" in console.run("pause")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    assert "already paused" in console.run("pause")
    assert "resumed 1 listeners" in console.run("resume")
    socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_tab_completion_and_history(console):
    console.term.expect(PROMPT)
    console.term.write("sta\t\n")  # completes to "status"
    assert "): running, since " in console.term.expect(PROMPT)
    console.term.write("logs --li\t3\n")  # an option of the command completes too
    out = console.term.expect(PROMPT)
    assert "logs --lines 3" in out
    console.term.write("\x1b[A\x1b[A\n")  # up, up: "status" again from the history
    assert "): running, since " in console.term.expect(PROMPT)


def test_confirmation_at_the_console(console):
    console.term.expect(PROMPT)
    console.term.write("wipe\n")
    console.term.expect("Really wipe everything? [y/N] ")
    console.term.write("n\n")
    assert "wipe: not confirmed; nothing done" in console.term.expect(PROMPT)
    console.term.write("wipe\n")
    console.term.expect("[y/N] ")
    console.term.write("y\n")
    assert "wiped: 1" in console.term.expect(PROMPT)
    assert "wiped: 2" in console.run("wipe --yes")


def test_chat_rooms_at_the_console(tmp_path):
    c = Console(tmp_path, listeners=chat.listener(), plugins=chat.settings())
    try:
        c.term.expect(PROMPT)
        assert "created #dev" in c.run("rooms create dev")
        assert "topic of #dev: ship it friday" in c.run("rooms topic dev 'ship it friday'")
        listed = c.run("rooms")
        assert "#dev  0 members  0 messages  topic: ship it friday" in listed and "#lobby  0 members" in listed
        c.term.write("rooms delete dev\n")
        c.term.expect("Delete room #dev, its history and topic, and part its members? [y/N] ")
        c.term.write("n\n")
        assert "rooms: not confirmed; nothing done" in c.term.expect(PROMPT)
        assert "#dev" in c.run("rooms list")
        assert "deleted #dev; 0 members parted" in c.run("rooms delete dev --yes")
        assert "#dev" not in c.run("rooms")
        assert "error: there is no room #dev" in c.run("rooms delete dev --yes")
    finally:
        c.close()


def test_a_secret_asked_at_the_console_is_not_echoed(console):
    console.term.expect(PROMPT)
    console.term.write("secret ann --note n\n")
    console.term.expect("token for ann: ")
    console.term.write("console-secret\n")
    console.term.expect("again: ")  # a new secret is asked twice
    console.term.write("console-secret\n")
    assert "ann got a token of 14 characters" in console.term.expect(PROMPT)
    console.term.write("secret bob --note n\n")
    console.term.expect("token for bob: ")
    console.term.write("console-secret\n")
    console.term.expect("again: ")
    console.term.write("console-typo\n")
    after = console.term.expect(PROMPT)
    assert "error: the tokens you typed differ; nothing done" in after and "got a token" not in after
    assert "console-secret" not in console.term.output.decode()
    assert "console-typo" not in console.term.output.decode()


def test_logs_follow_at_the_console_ends_with_ctrl_c(console):
    port = console.port()
    console.term.expect(PROMPT)
    console.term.write("logs -f -n 0\n")
    console.term.expect("logs -f -n 0")
    # The terminal echoes the command before the daemon has subscribed to the log:
    # connect until a connection's line streams past (each try is a fresh line).
    for attempt in range(40):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        try:
            console.term.expect("connect e 127.0.0.1:", timeout=0.5)  # streamed as it is logged
            break
        except AssertionError:
            assert attempt < 39, "no log line was streamed"
    console.term.write("\x03")  # Ctrl-C ends the stream, not the daemon
    console.term.expect(PROMPT)
    assert "): running" in console.run("status")


def test_stop_at_the_console(console):
    console.term.expect(PROMPT)
    console.term.write("stop\n")
    console.term.expect("daemond is stopping")
    assert console.term.wait() == 0


def test_ctrl_c_at_the_prompt_stops_the_daemon(console):
    console.term.expect(PROMPT)
    console.term.write("\x03")
    assert console.term.wait() == 0, console.stderr_path.read_text() + console.term.read_to_end()
    assert "SIGINT received: stopping" in console.stderr_path.read_text()


def test_daemonctl_stop_wakes_the_console(console):
    console.term.expect(PROMPT)
    out = console.daemonctl("stop")
    assert out.returncode == 0 and out.stdout.endswith("daemond stopped\n")
    assert console.term.wait() == 0


def test_ctrl_d_leaves_the_console_and_the_daemon_runs_on(console):
    console.term.expect(PROMPT)
    console.term.write("\x04")
    console.term.expect("console closed; daemond runs on")
    assert console.daemonctl("status").returncode == 0
    assert console.term.proc.poll() is None
    console.term.proc.terminate()
    assert console.term.wait() == 0


def test_no_console_flag_and_no_terminal(tmp_path):
    quiet = Console(tmp_path / "a", args=("--no-console",))
    try:
        quiet.port()
        assert quiet.daemonctl("status").returncode == 0
        assert PROMPT not in quiet.term.output.decode()
        quiet.term.proc.terminate()
        assert quiet.term.wait() == 0
        assert PROMPT not in quiet.term.read_to_end()
    finally:
        quiet.close()


def test_console_flag_without_a_controlling_terminal(tmp_path):
    forced = Console(tmp_path / "b", args=("--console",), controlling=False)
    try:
        forced.term.expect(PROMPT)
        assert "): running" in forced.run("status")
        forced.term.write("stop\n")
        assert forced.term.wait() == 0
    finally:
        forced.close()


def test_history_is_kept_in_the_state_dir(console, tmp_path):
    console.term.expect(PROMPT)
    console.run("help status")
    console.term.write("stop\n")
    assert console.term.wait() == 0
    history = tmp_path / "state" / "console_history"
    assert "help status" in history.read_text()
    assert history.stat().st_mode & 0o077 == 0


def test_log_lines_redraw_the_prompt_and_what_was_typed(tmp_path):
    config = write_config(tmp_path, {"e": {"plugins": ["echo"]}})
    term = Terminal([installed("daemond"), "-c", str(config)], controlling=True)  # stderr on the terminal too
    try:
        term.expect("listening on 127.0.0.1:")
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+) \(e\)", term.output.decode()).group(1))
        term.expect(PROMPT)
        term.write("sta")  # half typed, no Enter
        term.expect("sta")
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # logs a connect and a disconnect line while the operator is typing
        shown = term.expect(f"disconnect e ")
        term.expect(PROMPT + "sta")  # drawn again below the log lines, with what was typed
        term.write("tus\n")
        assert "): running, since " in term.expect(PROMPT)
        assert "connect e 127.0.0.1:" in shown
    finally:
        term.close()


def test_no_prompt_is_drawn_among_the_shutdown_lines(tmp_path):
    # Stopped from elsewhere (daemonctl), the console is not coming back: the log lines of the
    # shutdown must not each draw the prompt again below them.
    config = write_config(tmp_path, {"e": {"plugins": ["echo"]}})
    term = Terminal([installed("daemond"), "-c", str(config)], controlling=True)  # stderr on the terminal too
    try:
        term.expect(PROMPT)
        out = subprocess.run([installed("daemonctl"), "--socket", str(tmp_path / "state" / "control.sock"), "stop"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out
        assert term.wait() == 0
        rest = term.read_to_end()
        assert "stopped" in rest, rest  # the shutdown's log lines came after the prompt we saw
        assert PROMPT not in rest, rest
    finally:
        term.close()


def test_tab_completes_an_arguments_values_and_command_names(tmp_path):
    c = Console(tmp_path, listeners={"c": {"plugins": ["auth", "chat"]}}, plugins={"auth": None, "chat": None})
    try:
        c.term.expect(PROMPT)
        c.term.write("users \t\t")  # ambiguous: a second Tab lists the actions, not an option
        listed = c.term.expect("passwd")
        assert re.search(r"add\s+del\s+list\s+passwd", listed), listed
        assert "--password" not in listed
        c.term.write("l\t\n")  # "users l" completes to "users list"
        c.term.expect("no users")
        c.term.expect(PROMPT)
        c.term.write("help us\t\n")  # a command's name completes as help's argument
        assert "usage: users ACTION" in c.term.expect(PROMPT)
        c.term.write("users a\tgina --pa\t\x15\n")  # "users add gina --password ", then the line is dropped
        c.term.expect(PROMPT)
        assert "users add gina --password" in c.term.output.decode(errors="replace")
    finally:
        c.close()


def test_ctrl_c_on_a_half_typed_line_clears_it(console):
    console.term.expect(PROMPT)
    console.term.write("paus")
    console.term.expect("paus")
    console.term.write("\x03")
    console.term.expect(PROMPT)
    assert console.term.proc.poll() is None  # still running
    status = console.run("status")  # the dropped "paus" is not glued in front of it
    assert "): running, since " in status and "unknown command" not in status
    console.term.write("\x03")  # on an empty line: stop, as before
    assert console.term.wait() == 0
    assert "SIGINT received: stopping" in console.stderr_path.read_text()
