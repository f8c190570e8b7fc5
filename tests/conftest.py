"""Fixtures for daemond's own tests (``daemond_factory`` comes from daemon.testing)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from daemon.testing import LineClient, write_config
from tests.chatkit import chat  # noqa: F401 - the chat tests' fixture

BIN = Path(sys.executable).parent


def pytest_configure(config):
    # Run as a background job of a shell without job control (as CI may run us), this process
    # inherits SIGINT ignored, and so would every daemond and daemonctl the tests start: their
    # Ctrl-C tests would then wait in vain. A handler here is reset to the default at exec.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def installed(command: str) -> str:
    """The path of an installed console script in this venv."""
    path = BIN / command
    if not path.exists():
        pytest.fail(f"{command} is not installed next to {sys.executable}; install with pip install -e '.[test]'")
    return str(path)


@pytest.fixture(autouse=True)
def no_thread_leaks():
    """Every test must leave no thread behind (daemons join what they start)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not extra, f"threads left running: {[t.name for t in extra]}"


_LISTEN = re.compile(r"listening on (\S+):(\d+) \((\S+)\)")


class DaemonProcess:
    """``daemond`` run as a subprocess through the installed command."""

    def __init__(self, config: Path, env: dict | None = None, extra_args: tuple = ()):
        self.config = config
        self.stderr_path = config.parent / "stderr.log"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [installed("daemond"), "-c", str(config), "--no-console", *extra_args],
            stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr,
            env={**os.environ, **(env or {})},
        )
        self.ports: dict[str, int] = {}

    def wait_ready(self, listeners: int, timeout: float = 15) -> DaemonProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.stderr()
            self.ports = {m.group(3): int(m.group(2)) for m in _LISTEN.finditer(text)}
            # "ready:" comes once everything, the config watcher included, has started
            if len(self.ports) >= listeners and "daemond: ready: " in text:
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"daemond exited {self.proc.returncode}:\n{text}")
            time.sleep(0.05)
        raise AssertionError(f"daemond not ready in {timeout}s:\n{self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def client(self, listener: str, **kwargs) -> LineClient:
        return LineClient("127.0.0.1", self.ports[listener], **kwargs)

    def terminate(self, sig=signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._stderr.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._stderr.close()


@pytest.fixture
def daemond_process(tmp_path):
    """Start ``daemond`` subprocesses from config dicts; killed at teardown if still running."""
    procs: list[DaemonProcess] = []

    def start(listeners: dict, plugins: dict | None = None, env: dict | None = None, ready: bool = True, **top) -> DaemonProcess:
        path = write_config(tmp_path / f"proc{len(procs)}", listeners, plugins, **top)
        proc = DaemonProcess(path, env=env)
        procs.append(proc)
        return proc.wait_ready(len(listeners)) if ready else proc

    yield start
    for proc in procs:
        proc.kill()
