"""The reload thread's periodic tick and the other files it watches."""

from __future__ import annotations

import threading
import time

from daemon.watcher import Reloader


def test_the_tick_runs_on_the_reload_thread_periodically(tmp_path):
    config = tmp_path / "daemond.yaml"
    config.write_text("x: 1\n")
    ticks: list[str] = []
    reloader = Reloader(config, "digest", lambda source: None,
                        tick=lambda: ticks.append(threading.current_thread().name), tick_interval=0.05)
    reloader.start(False, 0.05)
    try:
        deadline = time.monotonic() + 10
        while len(ticks) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        reloader.stop()
    assert len(ticks) >= 3 and set(ticks) == {"reload"}


def test_a_change_to_a_watched_file_reloads_whatever_the_config_hash(tmp_path):
    from daemon.config import file_digest
    config = tmp_path / "daemond.yaml"
    config.write_text("x: 1\n")
    other = tmp_path / "certs" / "cert.pem"
    other.parent.mkdir()
    other.write_text("one")
    reloads: list[str] = []
    reloader = Reloader(config, file_digest(config), reloads.append)
    reloader.watch_files([other])
    reloader.start(True, 0.05)
    try:
        time.sleep(0.2)
        new = other.with_name("new.pem")
        new.write_text("two")
        new.replace(other)
        deadline = time.monotonic() + 10
        while not reloads and time.monotonic() < deadline:
            time.sleep(0.02)
        assert reloads == ["watch"]
        reloader.watch_files([])  # no longer watched: its directory is dropped
        other.write_text("three")
        time.sleep(0.5)
        assert reloads == ["watch"]
    finally:
        reloader.stop()
