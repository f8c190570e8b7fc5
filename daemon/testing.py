"""Test helpers for daemond and its plugins (a pytest plugin, loaded automatically).

Start a real daemon, in-process, on free ports, and talk to it over real sockets::

    def test_rot13(daemond_factory):
        d = daemond_factory({"rot": {"plugins": ["rot13"]}})
        with d.client("rot") as c:
            c.send_line("hello")
            assert c.read_line() == "uryyb"

``daemond_factory(listeners, plugins=None, **top)`` writes a config (ports
default to 0: a free one), starts a :class:`RunningDaemon`, and stops it —
joining all its threads — when the test ends.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import yaml


class LineClient:
    """A TCP client for line protocols, with timeouts so a test never hangs."""

    def __init__(self, host: str, port: int, timeout: float = 5.0, source: str | None = None):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.timeout = timeout
        self._buf = b""

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_line(self, text: str) -> None:
        self.sock.sendall(text.encode("utf-8") + b"\n")

    def read_line(self, timeout: float | None = None) -> str:
        """The next line without its ending; raises EOFError when the server closed."""
        if not self._fill(lambda: b"\n" in self._buf, timeout):
            raise EOFError(f"connection closed (unterminated: {self._buf[:200]!r})")
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode("utf-8").removesuffix("\r")

    def read_bytes(self, n: int, timeout: float | None = None) -> bytes:
        """Exactly ``n`` bytes (what is left over from line reads first); raises EOFError when the server closed."""
        if not self._fill(lambda: len(self._buf) >= n, timeout):
            raise EOFError(f"connection closed after {len(self._buf)} of {n} bytes")
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def _fill(self, enough, timeout: float | None) -> bool:
        """Receive into the buffer until ``enough()``; False if the server closed first
        (a reset counts as a close). TimeoutError at the deadline."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not enough():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"nothing more within {timeout or self.timeout}s (have {self._buf[:200]!r})")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return False
            if not chunk:
                return False
            self._buf += chunk
        return True

    def reply(self, timeout: float | None = None) -> tuple[list[str], str]:
        """Lines up to and including the final ``+OK``/``-ERR`` line: (data lines, final line)."""
        lines = []
        while True:
            line = self.read_line(timeout)
            if line.startswith(("+OK", "-ERR")):
                return lines, line
            lines.append(line)

    def command(self, text: str, timeout: float | None = None) -> tuple[list[str], str]:
        """Send one line and return its reply (see :meth:`reply`)."""
        self.send_line(text)
        return self.reply(timeout)

    def expect_closed(self, timeout: float | None = None) -> bytes:
        """Read until the server closes; returns what came before the close."""
        try:
            self._fill(lambda: False, timeout)
        except TimeoutError:
            raise TimeoutError("connection still open") from None
        data, self._buf = self._buf, b""
        return data


class RunningDaemon:
    """An in-process daemon started from a config written to ``directory``."""

    def __init__(self, config_path: Path):
        from daemon.config import load_config
        from daemon.loader import PluginLoader
        from daemon.core import Daemon

        self.config_path = config_path
        self.loader = PluginLoader()
        self.config = load_config(config_path, self.loader)
        self.daemon = Daemon(self.config, self.loader, log_to_stderr=False)
        self.daemon.start()

    def address(self, listener: str) -> tuple[str, int]:
        return self.daemon.listeners[listener].address

    def port(self, listener: str) -> int:
        return self.address(listener)[1]

    def client(self, listener: str, **kwargs) -> LineClient:
        host, port = self.address(listener)
        return LineClient(host, port, **kwargs)

    @property
    def control_socket(self) -> Path:
        return self.config.control_socket

    def control(self, command: str, *argv: str, confirmed: bool = False, timeout: float = 10.0, **args) -> dict:
        """Run a control command over the control socket, as daemonctl does; the final reply.

        ``d.control("logs", "-n", "5")`` sends words; ``d.control("logs", lines=5)``
        sends arguments by name. Stream lines, if any, are in ``reply["streamed"]``.
        """
        message: dict[str, Any] = {"command": command, "confirmed": confirmed}
        if argv:
            message["argv"] = list(argv)
        if args:
            message["args"] = args
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.control_socket))
            sock.sendall(json.dumps(message).encode() + b"\n")
            streamed = []
            with sock.makefile("rb") as replies:
                for line in replies:
                    reply = json.loads(line)
                    if "stream" in reply:
                        streamed.append(reply["stream"])
                    elif "ok" in reply:
                        reply["streamed"] = streamed
                        return reply
        raise EOFError(f"the daemon closed the control connection without a reply to {command!r}")

    def reconfigure(self, mutate) -> dict:
        """Edit the config file (``mutate(doc)`` changes the parsed YAML in place) and reload it.

        Returns the reload's report; fails the test if the reload was refused.
        """
        doc = yaml.safe_load(self.config_path.read_text())
        mutate(doc)
        self.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        report = self.daemon.reload()
        assert report["ok"], report
        return report

    def stop(self) -> None:
        self.daemon.stop()


def write_config(directory: Path, listeners: dict[str, dict[str, Any]], plugins: dict | None = None, **top) -> Path:
    """Write a daemond config; listeners get host 127.0.0.1 and port 0 unless given."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)  # not 0777 under umask 0: the daemon refuses that
    doc: dict[str, Any] = {"state_dir": str(directory / "state"), "logging": {"file": "daemond.log", "level": "debug"}}
    doc.update(top)
    doc["listeners"] = {name: {"host": "127.0.0.1", "port": 0, **spec} for name, spec in listeners.items()}
    if plugins:
        doc["plugins"] = plugins
    path = directory / "daemond.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def daemond_factory(tmp_path):
    """Start in-process daemons for a test; each is stopped when the test ends."""
    started: list[RunningDaemon] = []

    def start(listeners: dict[str, dict[str, Any]], plugins: dict | None = None, **top) -> RunningDaemon:
        path = write_config(tmp_path / f"daemon{len(started)}", listeners, plugins, **top)
        running = RunningDaemon(path)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
