"""One test per hook in daemon/hookspecs.py, and the meta-tests that keep the contract honest:
every hook documented in docs/plugins.md (generated from its docstring) and tested here."""

import inspect
import re
import time
from pathlib import Path

import pytest
import yaml

from daemon import hookdocs, hookspecs

REPO = Path(__file__).resolve().parents[2]
REC = "tests.plugins.recorder:Recorder"


def recorder(d):
    return d.daemon.config.plugins[REC].obj


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# -- the meta-tests ------------------------------------------------------------

def test_every_hook_has_its_own_test():
    sources = "\n".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py"))
    missing = [n for n in hookdocs.hook_names() if f"def test_hook_{n}(" not in sources]
    assert not missing, f"hooks without a test_hook_<name> test: {missing}"


def test_every_hook_is_documented_for_plugin_authors():
    for name in hookdocs.hook_names():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        for part in ("**When:**", "Thread:**", "**Call mode:**", "raises"):
            assert part in doc, f"{name}: docstring lacks {part!r}"
    listed = [n for names in hookdocs.PHASES.values() for n in names]
    assert sorted(listed) == sorted(hookdocs.hook_names()), "hookdocs.PHASES must list every hook once"


def test_docs_plugins_md_reference_matches_hookspecs():
    text = (REPO / "docs" / "plugins.md").read_text()
    assert hookdocs.splice(text, hookdocs.render()) == text, \
        "docs/plugins.md is out of date: run python -m daemon.hookdocs --write"
    for name in hookdocs.hook_names():
        assert f"#### `{name}`" in text


# -- one test per hook ------------------------------------------------------------

def test_hook_daemond_settings_schema(daemond_factory):
    d = daemond_factory({"r": {"plugins": [REC]}}, plugins={REC: {"tag": "T"}})
    assert recorder(d).settings == {"tag": "T", "open_line": False}  # defaults filled in


def test_hook_daemond_configure(daemond_factory):
    d = daemond_factory({"r": {"plugins": [REC]}}, plugins={REC: {"tag": "one"}}, reload={"watch": False})
    rec = recorder(d)
    assert rec.calls[0] == ("configure", {"tag": "one", "open_line": False})
    doc = yaml.safe_load(d.config_path.read_text())
    doc["plugins"][REC]["tag"] = "two"
    d.config_path.write_text(yaml.safe_dump(doc))
    assert d.daemon.reload()["ok"]
    assert rec.calls[-1] == ("configure", {"tag": "two", "open_line": False})
    assert d.daemon.reload()["ok"]  # unchanged section: not configured again
    assert [c for c in rec.calls if c[0] == "configure"] == [("configure", {"tag": "one", "open_line": False}),
                                                             ("configure", {"tag": "two", "open_line": False})]


def test_hook_daemond_start(daemond_factory):
    d = daemond_factory({"e": {"plugins": ["echo"]}}, reload={"watch": False})
    doc = yaml.safe_load(d.config_path.read_text())
    doc["listeners"]["r"] = {"host": "127.0.0.1", "port": 0, "plugins": [REC]}
    d.config_path.write_text(yaml.safe_dump(doc))
    assert d.daemon.reload()["ok"]
    rec = recorder(d)
    # historic: a plugin loaded by a reload is started too, once, after being configured
    assert rec.names() == ["configure", "start"]


def test_hook_daemond_stopping(daemond_factory):
    d = daemond_factory({"r": {"plugins": [REC]}}, plugins={REC: {"tag": "bye"}})
    with d.client("r") as c:
        assert c.command("rec hi")[1] == "+OK bye hi"
        d.stop()
        assert c.read_line() == "NOTICE bye going down"
        assert c.expect_closed() == b""
    assert ("stopping", 1) in recorder(d).calls


def test_hook_daemond_stopped(daemond_factory):
    d = daemond_factory({"r": {"plugins": [REC]}})
    with d.client("r") as c:
        c.command("rec x")
        d.stop()
    assert recorder(d).calls[-1] == ("stopped", 0)  # last, after every session ended


def test_hook_daemond_login_gate(daemond_factory):
    gate, legacy = "tests.plugins.recorder:Gate", "tests.plugins.recorder:LegacyGate"
    with pytest.warns(DeprecationWarning, match="the daemond_login_gate attribute is deprecated"):
        d = daemond_factory({name: {"plugins": plugins, "max_unauthenticated_per_ip": 1} for name, plugins in
                             (("g", [gate, REC]), ("l", [legacy, REC]), ("r", [REC]), ("a", ["auth", REC]))},
                            plugins={"auth": {"argon2": {"time_cost": 1, "memory_cost": 8, "parallelism": 1}}})
    assert {name: listener.chain.login_gated for name, listener in d.daemon.listeners.items()} == \
        {"g": True, "l": True, "r": False, "a": True}
    for name in ("g", "l"):  # a second connection not logged in from one address is refused ...
        with d.client(name) as first:
            assert first.read_line() == "+OK name?"
            with d.client(name) as second:
                assert second.read_line().startswith("-ERR too-many-connections too many connections not logged in")
            first.send_line("alice")
            assert (first.read_line(), first.read_line()) == ("WELCOME alice", "+OK in")  # the recorder greets
            with d.client(name) as third:  # ... until the first logged in
                assert third.read_line() == "+OK name?"
    with d.client("r") as first, d.client("r") as second:  # not gated: no such cap
        assert first.command("rec a")[1] == "+OK rec a" and second.command("rec b")[1] == "+OK rec b"


def test_hook_daemond_farewell(daemond_factory):
    polite, plain = "tests.plugins.recorder:PoliteGate", "tests.plugins.recorder:Gate"
    d = daemond_factory({"p": {"plugins": [polite, REC], "max_unauthenticated_per_ip": 1, "max_logged_in_per_ip": 1},
                         "g": {"plugins": [plain, REC], "max_unauthenticated_per_ip": 1}})
    with d.client("p") as first:  # at accept: the plugin's words instead of -ERR
        assert first.read_line() == "+OK name?"
        with d.client("p") as second:
            assert second.read_line() == "SORRY too-many-connections: too many connections not logged in from 127.0.0.1 (1)"
            assert second.expect_closed() == b""
        first.send_line("alice")
        assert (first.read_line(), first.read_line()) == ("WELCOME alice", "+OK in")
        with d.client("p") as third:  # at login, over max_logged_in_per_ip
            assert third.read_line() == "+OK name?"
            third.send_line("bob")
            assert third.read_line() == "SORRY too-many-connections: too many sessions logged in from 127.0.0.1 (1)"
            assert third.expect_closed() == b""
        result = d.control("kick", "alice", reason="enough")  # the operator's kick, in its words too
        assert result["ok"] and first.read_line() == "SORRY kicked: enough"
        assert first.expect_closed() == b""
    with d.client("g") as first, d.client("g") as second:  # no implementation: the line protocol's -ERR
        assert first.read_line() == "+OK name?"
        assert second.read_line() == "-ERR too-many-connections too many connections not logged in from 127.0.0.1 (1)"


def test_hook_daemond_session_open(daemond_factory):
    d = daemond_factory({"r": {"plugins": [REC], "max_line": 64}}, plugins={REC: {"open_line": True}})
    with d.client("r") as c:
        c.send_line("nobody")
        assert c.read_line() == "-ERR go-away"
        assert c.expect_closed() == b""
    rec = recorder(d)
    wait_for(lambda: ("session_close", "refused") in rec.calls)
    assert ("session_open", "r", "127.0.0.1") in rec.calls
    assert "line_received" not in rec.names()  # a raising open hook ends the session


def test_hook_daemond_session_login(daemond_factory):
    d = daemond_factory({"r": {"plugins": [REC]}}, plugins={REC: {"open_line": True}})
    with d.client("r") as c:
        c.send_line("alice")
        assert c.read_line() == "WELCOME alice"
        assert c.command("rec who")[1] == "+OK rec who"
        assert [s.user for s in d.daemon.sessions()] == ["alice"]
    assert ("session_login", "alice") in recorder(d).calls


def test_hook_daemond_line_received(daemond_factory):
    grab = "tests.plugins.recorder:Grabber"
    d = daemond_factory({"rg": {"plugins": [REC, grab]}, "gr": {"plugins": [grab, REC]}})
    with d.client("rg") as c:
        assert c.command("rec a")[1] == "+OK rec a"  # the recorder handles it first
        assert c.command("other")[1] == "+OK grabbed other"  # None: the next plugin tries
    with d.client("gr") as c:
        assert c.command("rec b")[1] == "+OK grabbed rec b"  # firstresult: the recorder never sees it
    assert ("line_received", "rec b") not in recorder(d).calls


def test_hook_daemond_data_received(daemond_factory):
    d = daemond_factory({"b": {"plugins": ["tests.plugins.recorder:Bytes"]}})
    with d.client("b") as c:
        c.send(b"\x00\x01\x02\xff")
        assert c.read_line() == "4"


def test_hook_daemond_session_close(daemond_factory):
    d = daemond_factory({"r": {"plugins": ["tests.plugins.recorder:BrokenClose", REC], "idle_timeout": 0.2}})
    rec = recorder(d)
    with d.client("r") as c:
        c.command("/quit")
    wait_for(lambda: ("session_close", "quit") in rec.calls)  # called although an earlier close hook raised
    with d.client("r") as c:
        c.expect_closed()
    wait_for(lambda: ("session_close", "timeout") in rec.calls)
    assert d.daemon.status()["plugins"]["tests.plugins.recorder:BrokenClose"]["errors"] == 2


def test_hook_daemond_line_commands(daemond_factory):
    d = daemond_factory({"r": {"plugins": [REC]}})
    with d.client("r") as c:
        lines, final = c.command("/help")
    assert "HELP rec TEXT - record TEXT" in lines and final.startswith("+OK")


def test_hook_daemond_status(daemond_factory):
    d = daemond_factory({"r": {"plugins": [REC]}})
    with d.client("r") as c:
        c.command("rec x")
    status = d.daemon.status()["plugins"][REC]
    assert status["recorded"] >= 4 and status["source"] == "path" and status["listeners"] == ["r"]


def test_trace_hooks_logs_every_call_with_arguments_and_results(daemond_process):
    proc = daemond_process({"s": {"plugins": ["tests.plugins.shout"]}, "e": {"plugins": ["echo"]}},
                           env={"DAEMOND_TRACE_HOOKS": "1"})
    with proc.client("s") as c:
        assert c.command("hi")[1] == "+OK HI"
    with proc.client("e") as c:
        c.send(b"raw")
        assert c.sock.recv(3) == b"raw"
    assert proc.terminate() == 0
    err = proc.stderr()
    assert re.search(r"daemond\.trace: call daemond_line_received\(session=<daemon\.session\.Session .*line='hi'\) "
                     r"-> \['tests\.plugins\.shout'\]", err), err[-3000:]
    assert "daemond.trace:   daemond_line_received returned True" in err
    # the hot path is traced too when tracing is on
    assert re.search(r"call daemond_data_received\(.*data=b'raw'\) -> \['echo'\]", err)


def test_trace_hooks_never_shows_a_password():
    from daemon.loader import _args

    traced = _args({"session": None, "name": "alice", "password": "correct horse"})
    assert traced == "session=None, name='alice', password=<hidden>"
