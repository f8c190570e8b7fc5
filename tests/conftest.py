"""Fixtures for daemond's own tests (``daemond_factory`` comes from daemon.testing)."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from daemon.testing import write_config
from tests.support.chat import chat  # noqa: F401 - the chat tests' fixture
from tests.support.redis import redis_server  # noqa: F401 - the cluster tests' fixture
from tests.support.process import DaemonProcess


def pytest_configure(config):
    # Run as a background job of a shell without job control (as CI may run us), this process
    # inherits SIGINT ignored, and so would every daemond and daemonctl the tests start: their
    # Ctrl-C tests would then wait in vain. A handler here is reset to the default at exec.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
