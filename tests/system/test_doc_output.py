"""What the documents quote of daemond's and daemonctl's output is what they print."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from daemon.control.console import BANNER
from tests.support.auth import auth_settings
from tests.support.process import installed
from tests.support.pty import Terminal

REPO = Path(__file__).resolve().parents[2]
CONTROL = (REPO / "docs" / "control.md").read_text()
README = (REPO / "README.md").read_text()


def console_block_after(text: str, command: str) -> list[str]:
    """The lines a ```console block shows after ``$ COMMAND`` (up to the next $ or the block's end)."""
    found = re.search(r"^\$ " + re.escape(command) + r"\n(.*?)(?=^\$ |^```)", text, re.M | re.S)
    assert found, f"no `$ {command}` in a console block"
    return found.group(1).splitlines()


def test_the_confirmation_quoted_is_the_one_asked(daemond_factory):
    d = daemond_factory({"login": {"plugins": ["auth", "echo"]}}, {"auth": auth_settings()})
    question, *rest = console_block_after(CONTROL, "daemonctl clear-auth")
    assert question.endswith(" y")
    term = Terminal([installed("daemonctl"), "--socket", str(d.control_socket), "clear-auth"])
    try:
        term.expect(question[:-1])  # the question and [y/N], as the terminal shows them
        term.write("y\n")
        assert term.read_to_end().strip().splitlines() == ["y", *rest]  # the terminal echoes the answer
        assert term.wait() == 0
    finally:
        term.close()


def test_the_console_banner_quoted_is_the_consoles():
    assert console_block_after(CONTROL, "daemond")[0] == BANNER


def test_daemonctls_usage_line_quoted_is_its_own():
    usage = subprocess.run([installed("daemonctl"), "--help"], capture_output=True, text=True, timeout=30).stdout
    first = usage.splitlines()[0].removeprefix("usage: ")
    assert f"```\n{first}\n```" in CONTROL


def test_the_check_config_line_in_the_readme_is_what_it_prints():
    shown = console_block_after(README, "daemond --check-config -c etc/daemond.yaml")
    got = subprocess.run([installed("daemond"), "--check-config", "-c", "etc/daemond.yaml"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert got.stdout.splitlines() == shown
