"""Logging: connection lines, the log file, and the journal's priority prefixes."""

import re
import socket


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
