"""A real ``redis-server`` for the cluster tests: its own, on a free port in a temporary directory.

Never the machine's Redis service: each test that asks for ``redis_server`` gets a fresh
server with append-only persistence (``appendfsync always``: what the docs recommend), stopped
when the test ends. ``kill()`` and ``start()`` again (same port, same directory, same data)
stand for a crash and a restart. Skipped, saying why, only when ``redis-server`` is not
installed (``.ci/run`` installs Debian's ``redis-server`` package).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1:``port``, its files in ``directory``."""

    def __init__(self, directory: Path, appendfsync: str = "always", password: str | None = None):
        self.directory = directory
        self.password = password
        self.directory.mkdir(parents=True, exist_ok=True)
        self.appendfsync = appendfsync
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = directory / "redis.log"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15) -> RedisServer:
        argv = [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.directory), "--save", "", "--appendonly", "yes",
                "--appendfsync", self.appendfsync, "--daemonize", "no", "--logfile", str(self.log),
                "--unixsocket", ""] + (["--requirepass", self.password] if self.password else [])
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.client().ping():
                    return self
            except Exception:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = self.log.read_text(errors="replace") if self.log.exists() else ""
                raise AssertionError(f"redis-server did not start on port {self.port}:\n{text[-2000:]}")
            time.sleep(0.05)

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=0, socket_timeout=5, decode_responses=True,
                           password=self.password)

    def kill(self) -> None:
        """SIGKILL: a crash (what was fsynced to the append-only file survives)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def started(directory: Path, **kwargs) -> RedisServer:
    """A started ``RedisServer``; a free port taken by someone else meanwhile is tried again."""
    for attempt in range(3):
        server = RedisServer(directory, **kwargs)
        try:
            return server.start()
        except AssertionError:
            server.stop()
            in_use = server.log.exists() and "Address already in use" in server.log.read_text(errors="replace")
            if attempt == 2 or not in_use:
                raise
    raise AssertionError("unreachable")


@pytest.fixture
def redis_server(tmp_path):
    """A started ``RedisServer`` of this test's own; stopped at teardown."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does)")
    server = started(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()
