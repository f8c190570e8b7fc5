"""Item 23 (control side) and issue 19 item 8: fuzzing the control request parser, alone and through a live control socket.

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
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
words = st.sampled_from(["-n", "5", "-1", "0", "--lines", "-f", "--follow", "--yes", "list", "add", "delete",
                         "alice", "status", "x" * 40, "", "--", "-", "--json", "99999999999999999999"]) | st.text(max_size=12)


@st.composite
def requests(draw) -> bytes:
    """Request lines: mostly well-formed objects with wrong or odd values, some garbage."""
    kind = draw(st.integers(0, 10))
    if kind == 10:  # nested deeper than the parser's limit (and than Python's recursion limit)
        # (hypothesis raises the recursion limit while it runs: go well past it, within MAX_REQUEST)
        depth = draw(st.sampled_from([32, 33, 1000, 3000, 10000, 30000]) | st.integers(1, 2000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"k":', b"}")]))
        field = draw(st.sampled_from([b"id", b"args", b"argv"]))
        return b'{"command": "status", "' + field + b'": ' + opener * depth + (b"1" if opener != b"[" else b"") \
            + closer * depth + b"}"
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


def _strict_json(line: bytes) -> dict:
    """A reply line parsed as RFC 8259 JSON: NaN, Infinity and -Infinity are not JSON."""
    def refuse(constant):
        raise AssertionError(f"reply is not valid JSON ({constant}): {line[:200]!r}")
    return json.loads(line, parse_constant=refuse)


def _ask(path, line: bytes) -> dict:
    """One request on a fresh connection; the first reply (a stream is left by closing)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(line + b"\n")
        with sock.makefile("rb") as replies:
            first = replies.readline()
    assert first.endswith(b"\n"), (line, first)
    return _strict_json(first)  # every reply is JSON, whatever was sent


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


EDGE_CASES = [
    # (request line, the error codes it may get)
    (b'{"command": "status", "id": ' + b"[" * 1000 + b"]" * 1000 + b"}", {protocol.BAD_REQUEST}),
    (b'{"command": "status", "id": ' + b"{\"a\":" * 1000 + b"1" + b"}" * 1000 + b"}", {protocol.BAD_REQUEST}),
    (b'{"command": "logs", "args": {"lines": Infinity}}', {protocol.BAD_REQUEST, protocol.USAGE}),
    (b'{"command": "logs", "args": {"lines": -Infinity}}', {protocol.BAD_REQUEST, protocol.USAGE}),
    (b'{"command": "logs", "args": {"lines": 1e400}}', {protocol.BAD_REQUEST, protocol.USAGE}),
    (b'{"command": "logs", "args": {"lines": NaN}}', {protocol.BAD_REQUEST, protocol.USAGE}),
    (b'{"command": "status", "id": NaN}', {protocol.BAD_REQUEST}),
    (b'{"command": "status", "id": 1e400}', {protocol.BAD_REQUEST}),
    (b'{"command": "logs", "argv": ["-n", "inf"]}', {protocol.USAGE}),
    (b'{"command": "logs", "argv": ["-n", "1e400"]}', {protocol.USAGE}),
]


def test_deep_and_non_finite_requests_get_an_error_reply_and_the_connection_lives(daemond_factory):
    """Issue 19 item 8: each edge case gets one bad-request/usage reply that is valid JSON, and the
    request pipelined after it on the same connection is answered too."""
    d = daemond_factory({"echo": {"plugins": ["echo"]}})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(d.control_socket))
        with sock.makefile("rb") as replies:
            for n, (line, codes) in enumerate(EDGE_CASES):
                sock.sendall(line + b"\n" + protocol.request("status", id=n))
                reply = _strict_json(replies.readline())
                assert reply.get("ok") is False and reply["error"]["code"] in codes, (line[:80], reply)
                assert reply["error"]["message"], reply
                after = _strict_json(replies.readline())  # the connection lives and lost nothing
                assert after.get("ok") is True and after.get("id") == n, (line[:80], after)
    assert d.daemon.control.is_alive()
    assert "Traceback" not in "\n".join(d.control("logs", "-n", "1000")["result"] or [])
