"""The auth plugin's documentation stays true to its code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from plugins.auth.settings import SCHEMA

ROOT = Path(__file__).resolve().parents[2]


def test_the_commented_example_in_the_shipped_config_lists_every_setting_with_its_default():
    text = (ROOT / "etc" / "daemond.yaml").read_text()
    example = text.split("# plugins:\n", 1)[1]
    lines = ["plugins:"] + [line[2:] for line in example.splitlines() if line.startswith("# ")]
    section = yaml.safe_load("\n".join(lines))["plugins"]["auth"]
    values, problems = SCHEMA.validate(section, None, "plugins.auth")
    assert not problems
    assert values == SCHEMA.defaults()
    assert set(section) == set(SCHEMA.fields)


def test_every_error_token_the_plugin_sends_is_documented():
    code = "\n".join(p.read_text() for p in (ROOT / "plugins" / "auth").glob("*.py"))
    sent = set(re.findall(r'err\(\s*"([a-z-]+)"', code)) | set(re.findall(r'return "([a-z-]+)", f?"', code))
    assert {"bad-name", "name-taken", "weak-password", "bad-credentials", "too-many-attempts", "timeout",
            "registration-closed", "auth-required", "bad-token", "bad-password", "usage"} <= sent
    protocol = (ROOT / "docs" / "protocol.md").read_text()
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", protocol, re.MULTILINE))
    assert sent <= documented, sent - documented
