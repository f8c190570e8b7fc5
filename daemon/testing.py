"""Test helpers for daemond and its plugins (a pytest plugin, loaded automatically).

Installing daemond gives every pytest run two fixtures — nothing to import:
``daemond_factory`` starts a real daemon, in-process, on free ports, and
``daemond_check_config`` runs ``daemond --check-config`` on a config. The
example below uses the tutorial's ``rot13`` plugin (``examples/daemond-rot13``),
which greets each connection before it answers:

.. example: test

::

    def test_rot13(daemond_factory):
        d = daemond_factory({"rot": {"plugins": ["rot13"]}})
        with d.client("rot") as c:
            assert c.read_line() == "+OK rot13 ready"
            c.send_line("hello")
            assert c.read_line() == "+OK uryyb"

``daemond_factory(listeners, plugins=None, **top)`` writes a config (ports
default to 0: a free one), starts a :class:`RunningDaemon`, and stops it —
joining all its threads — when the test ends.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml


class LineClient:
    """A TCP client for line protocols, with timeouts so a test never hangs.

    ``d.client(listener, timeout=5.0, source=None)`` makes one connected to a
    listener of a :class:`RunningDaemon`; use it in a ``with`` block (it closes
    at the end). ``timeout``: seconds any read waits before ``TimeoutError``
    (each read may pass its own). ``source``: the local address to connect
    from (``"127.0.0.2"``: another client address, for per-address limits).
    """

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
        """Close the connection (the server sees EOF)."""
        self.sock.close()

    def send(self, data: bytes) -> None:
        """Send raw bytes as they are."""
        self.sock.sendall(data)

    def send_line(self, text: str) -> None:
        """Send one line: ``text`` UTF-8 encoded, with ``\\n`` added."""
        self.sock.sendall(text.encode("utf-8") + b"\n")

    def read_line(self, timeout: float | None = None) -> str:
        """The next line without its ending (``\\n`` or ``\\r\\n``); raises EOFError when the
        server closed, TimeoutError when nothing came within ``timeout`` (default: the client's)."""
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
        """Read one reply: ``(data lines, final line)``, the final line being the first that
        starts with ``+OK`` or ``-ERR``. ``c.reply()`` after ``c.send_line("/help")`` is
        ``(["HELP /help - …", …], "+OK")``."""
        lines = []
        while True:
            line = self.read_line(timeout)
            if line.startswith(("+OK", "-ERR")):
                return lines, line
            lines.append(line)

    def command(self, text: str, timeout: float | None = None) -> tuple[list[str], str]:
        """Send one line and return its reply (see :meth:`reply`): ``(data lines, final line)``.

        A greeting the server sent first is not skipped: read it with
        :meth:`read_line` before the first command."""
        self.send_line(text)
        return self.reply(timeout)

    def expect_closed(self, timeout: float | None = None) -> bytes:
        """Read until the server closes; returns the bytes that came before the close
        (TimeoutError if it stays open)."""
        try:
            self._fill(lambda: False, timeout)
        except TimeoutError:
            raise TimeoutError("connection still open") from None
        data, self._buf = self._buf, b""
        return data


class RunningDaemon:
    """A daemon running in the test's process, as ``daemond_factory`` returns it.

    It is the real daemon — listeners on real sockets, the control socket,
    reloads — started from a config file; it is stopped (every thread joined)
    when the test ends, or earlier by :meth:`stop`.
    """

    config_path: Path
    """The config file it was started from (``d.reconfigure`` edits it)."""

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
        """The ``(host, port)`` a listener is bound to (its port 0 became a free port)."""
        return self.daemon.listeners[listener].address

    def port(self, listener: str) -> int:
        """The port a listener is bound to."""
        return self.address(listener)[1]

    def client(self, listener: str, **kwargs) -> LineClient:
        """A :class:`LineClient` connected to ``listener`` (by name); ``timeout=`` and
        ``source=`` as for :class:`LineClient`."""
        host, port = self.address(listener)
        return LineClient(host, port, **kwargs)

    @property
    def control_socket(self) -> Path:
        """The daemon's control socket (where daemonctl connects)."""
        return self.config.control_socket

    def control(self, command: str, *argv: str, confirmed: bool = False, timeout: float = 10.0, **args) -> dict:
        """Run a control command over the control socket, as daemonctl does; the final reply.

        ``d.control("logs", "-n", "5")`` sends words, as typed after
        ``daemonctl logs``; ``d.control("logs", lines=5)`` sends arguments by
        name. ``confirmed=True`` answers a command's ``confirm`` question (as
        ``--yes``). The reply is a dict: ``{"ok": True, "result": …}`` (what
        the command's ``run`` returned), or ``{"ok": False, "error": {"code":
        …, "message": …}}`` — code ``usage``, ``failed`` (a ``CommandError``),
        ``confirm`` (a question to answer), ``argument-needed`` (an ``ArgumentNeeded``),
        ``internal`` (the command raised).
        Streamed lines, if any, are in ``reply["streamed"]``.
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
        """Edit the config file and reload it, as an operator's edit would.

        ``mutate(doc)`` changes the parsed YAML (a dict: ``doc["plugins"]``,
        ``doc["listeners"]``, …) in place; its return value is ignored. Returns
        the reload's report (a dict, ``report["ok"]`` true); fails the test if
        the reload was refused. Changed plugin settings reach
        ``daemond_configure`` before it returns.
        """
        doc = yaml.safe_load(self.config_path.read_text())
        mutate(doc)
        self.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        report = self.daemon.reload()
        assert report["ok"], report
        return report

    def stop(self) -> None:
        """Stop the daemon now (``daemond_stopping`` and ``daemond_stopped`` run); the fixture
        does it at the end of the test otherwise."""
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
    """Start in-process daemons for a test; each is stopped when the test ends.

    ``daemond_factory(listeners, plugins=None, **top) -> RunningDaemon``:
    ``listeners`` maps a listener's name to its settings (``{"plugins":
    [...]}``; ``host`` defaults to 127.0.0.1 and ``port`` to 0, a free port),
    ``plugins`` maps a plugin's name to its settings section, and other
    keywords are top-level config keys (``reload={"watch": False}``). The
    state directory and log file are in the test's ``tmp_path``. An invalid
    config fails the call with every problem in the exception's message.
    """
    started: list[RunningDaemon] = []

    def start(listeners: dict[str, dict[str, Any]], plugins: dict | None = None, **top) -> RunningDaemon:
        path = write_config(tmp_path / f"daemon{len(started)}", listeners, plugins, **top)
        running = RunningDaemon(path)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def daemond_check_config(tmp_path):
    """Run ``daemond --check-config`` on a config, as an operator would.

    ``daemond_check_config(listeners, plugins=None, **top) -> subprocess.CompletedProcess``
    writes the config as ``daemond_factory`` does and runs the check in a
    fresh process that sees the test's ``sys.path``. On a valid config
    ``returncode`` is 0 and ``stdout`` is ``PATH: ok (listeners: …; plugins: …)``;
    otherwise ``returncode`` is 1 and ``stderr`` has one line per problem,
    ``PATH:LINE:COL: plugins.<name>.<key>: message``, then
    ``daemond: config has N problem(s)``.
    """
    count = 0

    def check(listeners: dict[str, dict[str, Any]], plugins: dict | None = None, **top) -> subprocess.CompletedProcess:
        nonlocal count
        path = write_config(tmp_path / f"check{count}", listeners, plugins, **top)
        count += 1
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        return subprocess.run([sys.executable, "-m", "daemon", "--check-config", "-c", str(path)],
                              capture_output=True, text=True, env=env, timeout=60)

    return check
