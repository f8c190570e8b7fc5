"""Logging: connection lines, the log file, and the journal's priority prefixes."""

import os
import re
import socket
import time


def test_connect_and_disconnect_lines_with_peer_bytes_and_duration(daemond_process):
    proc = daemond_process({"e": {"plugins": ["echo"]}})
    with socket.create_connection(("127.0.0.1", proc.ports["e"]), timeout=5) as s:
        s.sendall(b"12345")
        assert s.recv(5) == b"12345"
        local = "%s:%d" % s.getsockname()[:2]
    assert proc.terminate() == 0
    log_file = (proc.config.parent / "state" / "daemond.log").read_text()
    for text in (proc.stderr(), log_file):
        assert re.search(rf"INFO daemond.session: connect e {local}\n", text)
        assert re.search(rf"INFO daemond.session: disconnect e {local} user=- reason=eof in=5 out=5 duration=\d+\.\d+s",
                         text)


def test_under_the_journal_lines_carry_syslog_priorities_and_no_timestamp(daemond_process):
    proc = daemond_process({"e": {"plugins": ["echo"], "max_connections": 1}}, env={"JOURNAL_STREAM": "8:12345"})
    held = socket.create_connection(("127.0.0.1", proc.ports["e"]), timeout=5)
    held.sendall(b"x")
    held.recv(1)
    extra = socket.create_connection(("127.0.0.1", proc.ports["e"]), timeout=5)
    assert extra.recv(1) == b""  # refused: a warning is logged
    held.close()
    extra.close()
    assert proc.terminate() == 0
    lines = [line for line in proc.stderr().splitlines() if line]
    assert lines and all(re.match(r"<[2-7]>daemond", line) for line in lines), lines[:5]
    assert any(line.startswith("<6>daemond: listening on") for line in lines)
    assert any(line.startswith("<4>daemond.listener: refused e") for line in lines)
    assert not any(re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", line) for line in lines)
    # the log file keeps its timestamps
    assert re.search(r"^\d{4}-\d\d-\d\d ", (proc.config.parent / "state" / "daemond.log").read_text(), re.M)


def open_paths(pid):
    """What the process's descriptors point at; one may close while we look (a client's socket)."""
    paths = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            paths.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass
    return paths


def test_logrotate_rename_is_followed_and_the_old_file_released(daemond_process):
    proc = daemond_process({"e": {"plugins": ["echo"]}})
    log_file = proc.config.parent / "state" / "daemond.log"
    rotated = log_file.with_name("daemond.log.1")
    log_file.rename(rotated)  # what logrotate does (without copytruncate)
    with socket.create_connection(("127.0.0.1", proc.ports["e"]), timeout=5) as s:
        s.sendall(b"after rotation")
        assert s.recv(100) == b"after rotation"
        local = "%s:%d" % s.getsockname()[:2]
    deadline = time.monotonic() + 5
    while not (log_file.exists() and f"connect e {local}" in log_file.read_text()):
        assert time.monotonic() < deadline, "no new log file"
        time.sleep(0.05)
    assert f"connect e {local}" not in rotated.read_text()
    fds = open_paths(proc.proc.pid)
    assert str(rotated) not in fds and not any(f.endswith("(deleted)") for f in fds)
    assert proc.terminate() == 0
