"""Item 23 (control side): fuzzing the control request parser, alone and through a live control socket.

Bounded for CI by ``max_examples``. Expected outcome: every request line gets
exactly one reply that follows the schema; nothing a client sends makes a
command fail with ``internal`` (an unexpected exception in the daemon); the
control thread lives on and still answers ``status``.
"""

from __future__ import annotations

import json
import socket

from hypothesis import HealthCheck, assume, given, settings, strategies as st

from daemon.control import protocol

#: every command a daemon with auth and chat offers, except stop (it would end the test's daemon)
#: and clear-logs (it would empty the log the test reads at the end)
COMMANDS = ["status", "pause", "resume", "reload", "logs", "clear-auth", "help", "plugins", "users"]
FIELDS = ["command", "args", "argv", "id", "confirmed", "text"]
CODES = {protocol.BAD_REQUEST, protocol.TOO_LONG, protocol.USAGE, protocol.CONFIRM, protocol.ARGUMENT_NEEDED,
         protocol.FAILED}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
words = st.sampled_from(["-n", "5", "-1", "0", "--lines", "-f", "--follow", "--yes", "list", "add", "delete",
                         "alice", "status", "x" * 40, "", "--", "-", "--json", "99999999999999999999"]) | st.text(max_size=12)


@st.composite
def requests(draw) -> bytes:
    """Request lines: mostly well-formed objects with wrong or odd values, some garbage."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=200)).replace(b"\n", b" ")
    if kind == 1:
        return json.dumps(draw(json_values)).encode()
    message: dict = {"command": draw(st.sampled_from(COMMANDS) | st.text(max_size=10))}
    if draw(st.booleans()):
        message["argv"] = draw(st.lists(words, max_size=5))
    if draw(st.booleans()):
        message["args"] = draw(st.dictionaries(st.sampled_from(["lines", "follow", "action", "name", "password",
                                                                  "command", "n"]) | st.text(max_size=6),
                                               json_values, max_size=3))
    for field in ("id", "confirmed", "text"):
        if draw(st.integers(0, 3)) == 0:
            message[field] = draw(json_values)
    if kind == 2:  # a field of any type
        message[draw(st.sampled_from(FIELDS) | st.text(max_size=6))] = draw(json_values)
    return json.dumps(message).encode()


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300) | requests())
def test_the_request_parser_accepts_only_the_schema_and_raises_nothing_else(line):
    try:
        message = protocol.parse_request(line)
    except protocol.ProtocolError as exc:
        assert exc.code == protocol.BAD_REQUEST and exc.message
        return
    assert set(message) <= set(FIELDS)
    assert isinstance(message["command"], str) and message["command"]
    assert message.get("args") is None or isinstance(message["args"], dict)
    argv = message.get("argv")
    assert argv is None or (isinstance(argv, list) and all(isinstance(w, str) for w in argv))
    assert isinstance(message.get("confirmed", False), bool) and isinstance(message.get("text", False), bool)


def _ask(path, line: bytes) -> dict:
    """One request on a fresh connection; the first reply (a stream is left by closing)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(line + b"\n")
        with sock.makefile("rb") as replies:
            first = replies.readline()
    assert first.endswith(b"\n"), (line, first)
    return json.loads(first)


def test_fuzzed_requests_over_the_control_socket_never_break_the_control_thread(daemond_factory):
    d = daemond_factory({"chat": {"plugins": ["auth", "chat"]}},
                        plugins={"auth": {"argon2": {"time_cost": 1, "memory_cost": 8, "parallelism": 1}}})
    path = d.control_socket
    seen: set[str] = set()

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(requests())
    def one(line):
        assume(line.strip())  # a blank line is skipped, like a blank line at a shell prompt: no reply
        reply = _ask(path, line)
        if reply.get("streaming"):
            return  # logs -f: closing the connection ends it
        assert isinstance(reply.get("ok"), bool), (line, reply)
        if not reply["ok"]:
            error = reply["error"]
            assert error["code"] in CODES, (line, reply)  # never "internal": nothing raised unexpectedly
            assert isinstance(error["message"], str) and error["message"], (line, reply)
            seen.add(error["code"])

    one()
    assert {protocol.BAD_REQUEST, protocol.USAGE} <= seen  # the fuzzer reached both the parser and the commands
    assert d.daemon.control.is_alive()
    status = d.control("status")
    assert status["ok"] and all(p["errors"] == 0 for p in status["result"]["plugins"].values()), status
    assert "Traceback" not in "\n".join(d.control("logs", "-n", "1000")["result"] or [])
