"""Item 23: property-based fuzzing of the line framer, and a stateful chat session against a model.

Bounded for CI: each test has a fixed ``max_examples`` and no deadline; the
whole file takes well under 30 s on 2 cores. The control request parser's fuzz
targets are in test_fuzz_control.py.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis import given
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from daemon.lines import BadEncoding, LineFramer, TooLong
from daemon.testing import LineClient
from tests.support.robustness import wait_until


def framer_events(max_line: int, chunks: list[bytes]) -> list:
    framer = LineFramer(max_line)
    events = []
    for chunk in chunks:
        framer.feed(chunk)
        while (event := framer.next()) is not None:
            events.append(_event(event))
    return events


def _event(event):
    if isinstance(event, TooLong):
        return ("too-long", event.limit)
    if isinstance(event, BadEncoding):
        return ("bad-encoding",)
    assert isinstance(event, str)
    return ("line", event)


def model_events(max_line: int, data: bytes) -> list:
    """What docs/protocol.md promises, computed on the whole input at once."""
    *lines, tail = data.split(b"\n")
    events = []
    for raw in lines:
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        if len(raw) > max_line:
            events.append(("too-long", max_line))
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            events.append(("bad-encoding",))
            continue
        events.append(("bad-encoding",) if "\x00" in text else ("line", text))
    if len(tail) > max_line + 1:  # an over-long line is reported before its end arrives
        events.append(("too-long", max_line))
    return events


# Bytes that exercise the framer: LF, CR, NUL, ASCII, UTF-8 lead and continuation bytes, invalid bytes.
_BYTES = st.binary(min_size=0, max_size=40) | st.lists(
    st.sampled_from([b"\n", b"\r", b"\r\n", b"\x00", b"a", b"xyz", "é".encode(), "漢".encode(), b"\xc0\xaf",
                     b"\xed\xa0\x80", b"\xff", b"\xe2\x82", b"\x80"]), max_size=30).map(b"".join)


@st.composite
def chunked(draw):
    max_line = draw(st.integers(min_value=16, max_value=40))
    pieces = draw(st.lists(_BYTES | st.binary(min_size=30, max_size=120).map(lambda b: b.replace(b"\n", b"")),
                           max_size=12))
    data = b"".join(pieces)
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(data)), max_size=8)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    return max_line, data, chunks


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunked())
def test_the_line_framer_matches_its_model_however_input_is_chunked(case):
    max_line, data, chunks = case
    assert framer_events(max_line, chunks) == model_events(max_line, data)


# -- a chat session against a model ------------------------------------------------

NAMES = ["ann", "bob", "cyd", "dee"]
TEXT = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 .,!?:'é漢\-]{0,30}", fullmatch=True).filter(lambda t: t == t.rstrip())


class ChatSession(RuleBasedStateMachine):
    """Random joins, messages, actions, private messages, /who and disconnects.

    The model is the set of connected names and, per client, the lines it must
    receive next. After each step every client syncs with ``/who``: the lines
    before its reply must be exactly what the model expects, in order.
    """

    running = None  # set by the test: one daemon for all examples

    def __init__(self):
        super().__init__()
        self.clients: dict[str, LineClient] = {}
        self.expected: dict[str, list[str]] = {}

    def teardown(self):
        for client in self.clients.values():
            client.close()
        # wait until the room is empty again, for the next example
        assert wait_until(lambda: not self.running.daemon.sessions("chat"), 10)

    def _others(self, name):
        return [n for n in self.clients if n != name]

    def _sync(self, actor: str | None = None):
        # The actor first: its /who is handled after its own line, so by then its
        # line has been queued to every other client ahead of their /who replies.
        order = sorted(self.clients, key=lambda n: n != actor)
        for name in order:
            client = self.clients[name]
            lines, final = client.command("/who")
            assert lines == self.expected[name], (name, lines, self.expected[name])
            assert final == "+OK " + " ".join(sorted(self.clients)), final
            self.expected[name] = []

    @precondition(lambda self: len(self.clients) < len(NAMES))
    @rule(data=st.data())
    def join(self, data):
        name = data.draw(st.sampled_from([n for n in NAMES if n not in self.clients]))
        client = self.running.client("chat")
        assert client.read_line().startswith("+OK")
        client.send_line(name)
        assert client.read_line() == f"+OK logged in as {name}"
        for other in self.clients:
            self.expected[other].append(f"JOIN {name}")
        self.clients[name] = client
        self.expected[name] = []
        self._sync()

    @precondition(lambda self: self.clients)
    @rule(data=st.data())
    def duplicate_login_is_refused(self, data):
        name = data.draw(st.sampled_from(sorted(self.clients)))
        with self.running.client("chat") as client:
            client.read_line()
            client.send_line(name)
            assert b"-ERR already-connected" in client.expect_closed()
        self._sync()

    @precondition(lambda self: self.clients)
    @rule(data=st.data(), text=TEXT, kind=st.sampled_from(["say", "me"]))
    def say(self, data, text, kind):
        name = data.draw(st.sampled_from(sorted(self.clients)))
        client = self.clients[name]
        if kind == "say":
            client.send_line(text)
            line = f"MSG {name} {text}"
        else:
            assert client.command(f"/me {text}") == ([], "+OK")
            line = f"ACTION {name} {text}"
        for other in self._others(name):
            self.expected[other].append(line)
        self._sync(name)

    @precondition(lambda self: self.clients)
    @rule(data=st.data(), text=TEXT)
    def private(self, data, text):
        name = data.draw(st.sampled_from(sorted(self.clients)))
        target = data.draw(st.sampled_from(NAMES))
        reply = self.clients[name].command(f"/msg {target} {text}")
        if target == name:  # to oneself: the line comes ahead of the +OK
            assert reply == ([f"PRIV {name} {text}"], "+OK")
        elif target in self.clients:
            assert reply == ([], "+OK")
            self.expected[target].append(f"PRIV {name} {text}")
        else:
            assert reply == ([], f"-ERR no-such-user {target} is not connected")
        self._sync()

    @precondition(lambda self: self.clients)
    @rule(data=st.data(), polite=st.booleans())
    def leave(self, data, polite):
        name = data.draw(st.sampled_from(sorted(self.clients)))
        client = self.clients.pop(name)
        if polite:
            assert client.command("/quit") == ([], "+OK bye")
        client.close()
        del self.expected[name]
        assert wait_until(lambda: all(s.user != name for s in self.running.daemon.sessions("chat")), 10)
        for other in self.clients:
            self.expected[other].append(f"PART {name}")
        self._sync()


def test_a_chat_session_behaves_like_its_model(daemond_factory):
    ChatSession.running = daemond_factory({"chat": {"plugins": ["tests.plugins.fakelogin", "chat"]}},
                                          {"chat": {"rate": 0, "replay": 0}}, reload={"watch": False})
    try:
        run_state_machine_as_test(ChatSession, settings=settings(max_examples=40, stateful_step_count=15,
                                                                 deadline=None,
                                                                 suppress_health_check=[HealthCheck.too_slow]))
    finally:
        ChatSession.running = None
