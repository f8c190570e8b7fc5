"""Issue 19 items 11 and 12: descriptor exhaustion and log floods, against the installed daemond.

Expected outcome: a client connecting and resetting in a loop grows the log by a
bounded number of lines per address and window (``RATE_BURST`` per
``RATE_WINDOW``, then one summary line), not by one line per connection; the
log file never grows past ``logging.max_size`` (it moves to ``<file>.1``); and
under ``ulimit -n 256``, 320 echo connections leave ``daemonctl status``
answering, the accept loop quiet in the log, and the daemon accepting again
once the connections are gone.
"""

from __future__ import annotations

import re
import resource
import socket
import struct
import subprocess
import time

from daemon.logs import RATE_BURST, RATE_WINDOW
from daemon.testing import write_config
from tests.support.process import DaemonProcess, installed
from tests.support.robustness import wait_until

ECHO = {"echo": {"plugins": ["echo"], "max_connections": 100_000}}
#: a log line is ~150 bytes; a window lets RATE_BURST through per address, plus one summary line
LINE = 200


def _reset(port: int, source: str = "127.0.0.1") -> None:
    """Connect and reset at once (SO_LINGER 0: the close sends RST)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))


def _start(tmp_path, preexec_fn=None, **logging) -> DaemonProcess:
    config = write_config(tmp_path, ECHO, logging={"file": "daemond.log", "level": "info", **logging})
    proc = DaemonProcess(config, preexec_fn=preexec_fn)
    try:
        return proc.wait_ready(1)
    except BaseException:
        proc.kill()
        raise


def _daemonctl(config, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([installed("daemonctl"), "-c", str(config), "--timeout", str(timeout), *args],
                          capture_output=True, text=True, timeout=timeout + 10, stdin=subprocess.DEVNULL)


def test_a_connect_reset_loop_adds_a_bounded_number_of_log_lines_per_window(tmp_path):
    proc = _start(tmp_path)
    log_file = tmp_path / "state" / "daemond.log"
    try:
        port = proc.ports["echo"]
        time.sleep(0.5)
        before = log_file.stat().st_size
        connections = 0
        started = time.monotonic()
        while time.monotonic() - started < RATE_WINDOW + 1:  # one whole window and into the next
            _reset(port)
            connections += 1
        time.sleep(1)
        grown = log_file.stat().st_size - before
        print(f"{connections} connect-resets in {RATE_WINDOW + 1:g} s grew the log by {grown} bytes")
        assert connections > 10 * RATE_BURST, connections  # else the bound below proves nothing
        # two windows: each at most RATE_BURST lines and one summary line
        assert grown < 2 * (RATE_BURST + 1) * LINE, (connections, grown)
        text = log_file.read_text()
        summary = re.search(r"… and ([\d,]+) more connections from 127\.0\.0\.1 in the last 10 s", text)
        assert summary, text[-2000:]
        assert int(summary.group(1).replace(",", "")) > connections / 4, (summary.group(0), connections)
    finally:
        proc.terminate()


def test_the_log_file_moves_aside_past_max_size(tmp_path):
    proc = _start(tmp_path, max_size=64 * 1024)
    log_file = tmp_path / "state" / "daemond.log"
    try:
        port = proc.ports["echo"]
        for n in range(2, 250):  # 248 addresses: each its own budget of lines, ~0.8 MB in all
            for _ in range(RATE_BURST // 2):
                _reset(port, f"127.0.0.{n}")
        deadline = time.monotonic() + 10
        while not log_file.with_name("daemond.log.1").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert log_file.with_name("daemond.log.1").exists()
        assert log_file.stat().st_size <= 64 * 1024 + LINE
        assert log_file.with_name("daemond.log.1").stat().st_size <= 64 * 1024 + LINE
    finally:
        proc.terminate()
    assert log_file.stat().st_size > 0  # the daemon went on logging into the new file


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def test_out_of_descriptors_the_control_socket_answers_and_the_log_stays_quiet(tmp_path):
    proc = _start(tmp_path, preexec_fn=_limit_descriptors)
    log_file = tmp_path / "state" / "daemond.log"
    clients: list[socket.socket] = []
    try:
        port = proc.ports["echo"]
        for _ in range(320):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            clients.append(sock)
        time.sleep(2)  # the accepting thread meets EMFILE over and over meanwhile
        started = time.monotonic()
        status = _daemonctl(proc.config, "--json", "status", timeout=10)
        answered = time.monotonic() - started
        print(f"daemonctl status answered in {answered:.3f} s with 320 connections under ulimit -n 256")
        assert status.returncode == 0, (status.stdout, status.stderr)
        assert '"connections"' in status.stdout
        # the connections held are served; the rest were refused at once, not left hanging
        served = refused = 0
        for sock in clients:
            try:
                sock.sendall(b"ping\n")
                reply = sock.recv(100)
            except OSError:
                reply = b""
            if reply.startswith(b"ping"):
                served += 1
            else:
                assert reply in (b"", b"-ERR too-many-connections daemon is out of file descriptors\n"), reply
                refused += 1
        assert served > 150 and refused > 0, (served, refused)
        text = log_file.read_text()
        assert text.count("cannot accept") <= 5, text.count("cannot accept")
        assert text.count("out of file descriptors") <= RATE_BURST + 1, text.count("out of file descriptors")
        # a control client accepted now borrows spares, and keeps them as long as it stays
        lingering = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        clients.append(lingering)
        lingering.connect(str(tmp_path / "state" / "control.sock"))
        lingering.sendall(b'{"command": "status"}\n')
        assert lingering.makefile("rb").readline().startswith(b'{"ok": true')
    finally:
        for sock in clients[:-1]:
            sock.close()
    try:
        time.sleep(1)
        # accepting again, though the control client that borrowed spares is still there
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"again\n")
            assert sock.recv(100) == b"again\n"
        clients[-1].close()

        def given_back() -> str | None:  # once the daemon has seen the control client go
            out = _daemonctl(proc.config, "--json", "status", timeout=10).stdout
            return None if '"descriptors": {"spare": 8, "lent": 0' not in out else out

        assert wait_until(given_back, 30, 0.2), _daemonctl(proc.config, "--json", "status", timeout=10).stdout
    finally:
        clients[-1].close()
        proc.terminate()
