"""The chat plugin's documentation and shipped config stay true to its code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from tests.support.chat import CHEAP_ARGON2, Room

from plugins.chat import COMMANDS, SCHEMA

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "chat.md").read_text()


def test_the_commented_example_in_the_shipped_config_lists_every_setting_with_its_default():
    text = (ROOT / "etc" / "daemond.yaml").read_text()
    example = text.split("# plugins:\n", 1)[1]
    lines = ["plugins:"] + [line[2:] for line in example.splitlines() if line.startswith("# ")]
    section = yaml.safe_load("\n".join(lines))["plugins"]["chat"]
    values, problems = SCHEMA.validate(section, None, "plugins.chat")
    assert not problems
    assert values == SCHEMA.defaults()
    assert set(section) == set(SCHEMA.fields)


def test_every_setting_command_and_error_token_is_documented():
    code = "\n".join(p.read_text() for p in (ROOT / "plugins" / "chat").glob("*.py"))
    sent = set(re.findall(r'(?:err|RoomError)\(\s*"([a-z-]+)"', code))  # replies, and room API errors
    assert {"already-connected", "no-such-user", "bad-argument", "bad-text", "flood"} <= sent
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", DOC, re.MULTILINE))
    assert sent <= documented, sent - documented
    for key in SCHEMA.fields:
        assert f"| `{key}` |" in DOC, key
    for usage, _ in COMMANDS:
        assert f"`{usage}`" in DOC, usage


def test_the_shipped_config_serves_echo_and_chat(daemond_process, tmp_path):
    config = yaml.safe_load((ROOT / "etc" / "daemond.yaml").read_text())
    assert config["listeners"]["chat"]["port"] == 9091
    assert config["listeners"]["chat"]["plugins"] == ["auth", "chat"]
    assert config["listeners"]["echo"]["plugins"] == ["echo"]
    listeners = {name: {**spec, "port": 0} for name, spec in config["listeners"].items()}
    running = daemond_process(listeners, {"auth": {"argon2": CHEAP_ARGON2}})
    with running.client("echo") as echo:
        echo.send_line("ping")
        assert echo.read_line() == "ping"
    room = Room(running)
    alice, bob, carol = room.people("alice", "bob", "carol")
    alice.send_line("it works")
    assert bob.read_line() == "MSG alice it works"
    assert carol.read_line() == "MSG alice it works"
    room.close()
    assert running.terminate() == 0
