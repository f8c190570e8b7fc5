"""Item 17: kill -9 at random moments during registrations, messages and clear-auth loses nothing acknowledged."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import threading
import time

from tests.support.process import DaemonProcess
from tests.support.robustness import CHEAP_ARGON2, wait_until
from daemon.testing import write_config

ROUNDS = 4  # at least; more until the registrations acknowledged across rounds reach TARGET
TARGET = 500
MAX_ROUNDS = 40


def test_kill_9_at_random_moments_keeps_both_databases_sound_and_every_acknowledged_write(tmp_path):
    # Bound: none to configure: SQLite WAL with one transaction per registration and
    # per message. Rounds on one state directory, each killed 0.3-1.5 s in (and not before
    # 10-30 registrations of its own), until 500 registrations were acknowledged (at least
    # 4 rounds); every round's daemon must open what the last one left.
    rng = random.Random(9)
    state = tmp_path / "state"
    plugins = {"auth": {"argon2": CHEAP_ARGON2, "max_attempts": 100_000, "register_per_address": None, "register_total": None}, "chat": {"rate": 0}}
    registered: set[str] = set()  # names acknowledged since the last clear-auth finished
    messages: set[str] = set()
    total_registrations = 0
    clears = []
    round_no = -1
    while round_no + 1 < ROUNDS or (total_registrations < TARGET and round_no + 1 < MAX_ROUNDS):
        round_no += 1
        config = write_config(tmp_path / f"round{round_no}", {"chat": {"plugins": ["auth", "chat"],
                                                                    "max_unauthenticated_per_ip": None}},
                              plugins, state_dir=str(state))
        proc = DaemonProcess(config)
        try:
            proc.wait_ready(1)
        except BaseException:
            proc.kill()
            raise
        lock = threading.Lock()  # guards the two sets and the counters while the workers run
        cleared_at = [None]
        this_round = [0]  # registrations acknowledged in this round

        def worker(w):
            nonlocal total_registrations
            for i in range(100_000):
                name = f"r{round_no}w{w}n{i}"
                started = time.monotonic()
                try:
                    with proc.client("chat", timeout=5) as c:
                        c.read_line()
                        if not c.command(f"/register {name} password-{i}")[1].startswith("+OK registered"):
                            continue
                        with lock:
                            total_registrations += 1
                            this_round[0] += 1
                            if cleared_at[0] is None or started > cleared_at[0]:
                                registered.add(name)
                        if c.command(f"/me says {name}")[1] == "+OK":
                            with lock:
                                messages.add(f"says {name}")
                except (OSError, EOFError, TimeoutError):
                    return  # killed

        def clear():
            time.sleep(rng.uniform(0.1, 0.6))
            result = subprocess.run([sys.executable, "-m", "plugins.auth", "-c", str(config), "clear-auth", "--yes"],
                                    capture_output=True, text=True, timeout=30)
            clears.append(result.returncode)
            if result.returncode == 0:
                with lock:
                    cleared_at[0] = time.monotonic()
                    registered.clear()

        threads = [threading.Thread(target=worker, args=(w,), name=f"test-kill9-{w}") for w in range(4)]
        threads.append(threading.Thread(target=clear, name="test-clear-auth"))
        for t in threads:
            t.start()
        try:
            time.sleep(rng.uniform(0.3, 1.5))
            # ... and not before some writes went through: on a loaded machine a daemon just
            # started may have acknowledged next to nothing in that time
            busy = rng.randint(10, 30)
            wait_until(lambda: this_round[0] >= busy, 60, 0.01)
        finally:
            proc.kill()  # SIGKILL
            for t in threads:
                t.join(30)
        for db in ("auth.db", "chat.db"):
            conn = sqlite3.connect(state / db)
            try:
                assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], (round_no, db)
            finally:
                conn.close()
        conn = sqlite3.connect(state / "auth.db")
        try:
            stored = {row[0] for row in conn.execute("SELECT name FROM users")}
        finally:
            conn.close()
        assert registered <= stored, (round_no, sorted(registered - stored)[:5], clears, cleared_at, len(stored))
        conn = sqlite3.connect(state / "chat.db")
        try:
            history = {row[0] for row in conn.execute("SELECT text FROM messages")}
        finally:
            conn.close()
        assert messages <= history, (round_no, sorted(messages - history)[:5])
    print(f"kill -9: {round_no + 1} rounds, {total_registrations} registrations acknowledged")
    assert total_registrations >= TARGET, (total_registrations, round_no + 1)  # the kills hit a busy daemon
    assert clears.count(0) >= ROUNDS // 2, clears  # clear-auth ran while the daemon was busy
