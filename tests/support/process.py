"""The installed ``daemond`` and ``daemonctl``, run as processes, for the system tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon.testing import LineClient

BIN = Path(sys.executable).parent
#: the repository, on the daemons' PYTHONPATH for the test plugins (``tests.plugins.NAME``)
ROOT = Path(__file__).resolve().parents[2]


def installed(command: str) -> str:
    """The path of an installed console script in this venv."""
    path = BIN / command
    if not path.exists():
        pytest.fail(f"{command} is not installed next to {sys.executable}; install with pip install -e '.[test]'")
    return str(path)


_LISTEN = re.compile(r"listening on (\S+):(\d+) \((\S+)\)")


class DaemonProcess:
    """``daemond`` run as a subprocess through the installed command."""

    def __init__(self, config: Path, env: dict | None = None, extra_args: tuple = (), preexec_fn=None):
        self.config = config
        self.stderr_path = config.parent / "stderr.log"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [installed("daemond"), "-c", str(config), "--no-console", *extra_args],
            stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},  # tests.plugins: a path, not the cwd
            preexec_fn=preexec_fn,  # e.g. a lower RLIMIT_NOFILE
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

    def ctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """``daemonctl -c CONFIG ARGS`` against this daemon (its control socket from its config)."""
        environ = {k: v for k, v in os.environ.items() if k not in ("DAEMOND_SOCKET", "DAEMOND_CONFIG", "RUNTIME_DIRECTORY")}
        proc = subprocess.run([installed("daemonctl"), "-c", str(self.config), *args], capture_output=True, text=True,
                              timeout=timeout, env=environ, stdin=subprocess.DEVNULL)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def status(self) -> dict:
        """``daemonctl --json status``'s result."""
        out = self.ctl("--json", "status")
        assert out.returncode == 0, out
        return json.loads(out.stdout)["result"]

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


