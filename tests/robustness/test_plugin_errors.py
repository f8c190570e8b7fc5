"""Item 22: a plugin raising in any session hook ends only that connection, and status counts it; outside sessions, nothing breaks and it is counted too."""

from __future__ import annotations

import pytest

from tests.plugins import hookbomb
from tests.support.robustness import recv_all, wait_until

BOMB = "tests.plugins.hookbomb"
SESSION_HOOKS = ["daemond_session_open", "daemond_session_login", "daemond_line_received",
                 "daemond_line_commands", "daemond_session_close"]


@pytest.fixture
def armed(request):
    hookbomb.HOOK = request.param
    yield request.param
    hookbomb.HOOK = None


@pytest.mark.parametrize("armed", SESSION_HOOKS, indirect=True)
def test_a_plugin_raising_in_a_session_hook_ends_only_that_connection_and_is_counted(daemond_factory, armed):
    d = daemond_factory({"l": {"plugins": ["tests.plugins.fakelogin", BOMB]}})
    bystander = d.client("l")
    bystander.read_line()
    bystander.send_line("alice")
    assert bystander.read_line().startswith("+OK logged in as alice")

    victim = d.client("l", source=hookbomb.BOMB_HOST)
    data = b""
    assert victim.read_line().startswith("+OK")  # fakelogin's prompt: its open hook runs first
    victim.send_line("mallory")
    if armed not in ("daemond_session_open", "daemond_session_login"):
        assert victim.read_line().startswith("+OK logged in as mallory")
        victim.send_line("/help" if armed == "daemond_line_commands" else "hello")
        if armed == "daemond_session_close":
            assert victim.read_line() == "+OK hello"
            victim.close()
    if armed != "daemond_session_close":
        data = victim.expect_closed()
        victim.close()
    assert b"Traceback" not in data and b"Boom" not in data
    assert wait_until(lambda: d.daemon.status()["plugins"][BOMB]["errors"] == 1), d.daemon.status()["plugins"][BOMB]
    bystander.send_line("still here")  # the other connection never noticed
    assert bystander.read_line() == "+OK still here"
    bystander.send_line("/help")
    _, final = bystander.reply()
    assert final.startswith("+OK")
    bystander.close()


def test_a_plugin_raising_in_daemond_data_received_ends_only_that_connection_and_is_counted(daemond_factory):
    d = daemond_factory({"b": {"plugins": ["tests.plugins.databomb"]}})
    with d.client("b") as bystander, d.client("b", source="127.0.0.9") as victim:
        bystander.send(b"one\0")
        assert bystander.read_bytes(4) == b"one\0"
        victim.send(b"boom")
        assert recv_all(victim.sock) == b""
        assert wait_until(lambda: d.daemon.status()["plugins"]["tests.plugins.databomb"]["errors"] == 1)
        bystander.send(b"two")
        assert bystander.read_bytes(3) == b"two"


def test_a_plugin_raising_outside_sessions_is_counted_and_harms_nothing(daemond_factory, caplog):
    # The daemon-wide hooks: status, a control command, configure at a reload, stopping and
    # stopped. Each raise is logged, counted against the plugin in status, and the daemon, its
    # control socket and its connections carry on (and it still stops cleanly).
    from tests.plugins import widebomb

    widebomb.ARMED = {"daemond_status", "command", "daemond_stopping", "daemond_stopped"}
    try:
        d = daemond_factory({"e": {"plugins": ["echo", "tests.plugins.widebomb"]}}, reload={"watch": False})
        name = "tests.plugins.widebomb"
        with d.client("e") as client:
            status = d.control("status")
            assert status["ok"] and status["result"]["plugins"][name]["status_error"].startswith("Boom: ")
            failed = d.control("widebomb")
            assert failed["error"]["code"] == "internal" and "Boom" in failed["error"]["message"]
            report = _reload_with(d, {name: {"explode": True}})
            assert not report["ok"] and any("Boom" in e for e in report["errors"]), report
            client.send(b"still echoing")
            assert client.read_bytes(13) == b"still echoing"
            counted = d.control("status")["result"]["plugins"][name]["errors"]
            assert counted == 4, counted  # status (this call too), the command, the reload's configure
        d.stop()
        assert "plugin tests.plugins.widebomb raised in daemond_stopping" in caplog.text
        assert "plugin tests.plugins.widebomb raised in daemond_stopped" in caplog.text
    finally:
        widebomb.ARMED = set()


def _reload_with(d, plugins: dict) -> dict:
    import yaml

    doc = yaml.safe_load(d.config_path.read_text())
    doc.setdefault("plugins", {}).update(plugins)
    d.config_path.write_text(yaml.safe_dump(doc))
    return d.daemon.reload()
