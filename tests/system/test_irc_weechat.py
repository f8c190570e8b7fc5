"""A real IRC client program, WeeChat (headless), against the IRC front end.

WeeChat connects with SASL PLAIN, joins ``#lobby`` and says a line that a line-protocol user
receives; the line user answers and WeeChat's log of the channel shows it. WeeChat is driven
through its FIFO pipe (``plugin.buffer *text``), as a script would drive it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.irc import line_user, password, register_user, start

WEECHAT = shutil.which("weechat-headless")


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(WEECHAT is None, reason="weechat-headless is not installed (apt-get install weechat-headless)")
def test_weechat_joins_lobby_and_talks_with_a_line_user(daemond_factory, tmp_path):
    server = start(daemond_factory)
    register_user(server, "alice")
    bob = line_user(server, "bob")
    host, port = server.address("irc")
    home = tmp_path / "weechat"
    home.mkdir()
    commands = ";".join([
        "/set logger.file.flush_delay 0",
        "/set logger.file.path %h/logs",
        f"/server add daemond {host}/{port} -nicks=alice -username=alice -sasl_mechanism=plain "
        f"-sasl_username=alice -sasl_password={password('alice')} -autojoin=#lobby",
        "/connect daemond",
    ])
    process = subprocess.Popen([WEECHAT, "--dir", str(home), "-r", commands],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert bob.read_line(timeout=30) == "JOIN alice"  # WeeChat registered by SASL and joined #lobby
        log = lambda: next(Path(home, "logs").glob("irc.daemond.#lobby.weechatlog"), None)  # noqa: E731
        _wait_for(log, 30, "WeeChat's #lobby buffer (its log)")  # it has taken in its JOIN
        fifo = _wait_for(lambda: next(home.glob("weechat_fifo*"), None), 30, "WeeChat's FIFO")
        with open(fifo, "w") as pipe:
            pipe.write("irc.daemond.#lobby *hello from weechat\n")
        assert bob.read_line(timeout=30) == "MSG alice hello from weechat"
        bob.send_line("hello back, weechat")
        _wait_for(lambda: log() and "hello back, weechat" in log().read_text(errors="replace"), 30,
                  "the line user's message in WeeChat's log")
        text = log().read_text(errors="replace")
        assert "bob\thello back, weechat" in text
        assert "alice\thello from weechat" in text
        with open(fifo, "w") as pipe:
            pipe.write("irc.server.daemond */quit leaving\n")
        assert bob.read_line(timeout=30) == "PART alice"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
