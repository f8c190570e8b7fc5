"""Echo latency while chat users send the sanitiser's worst lines (issue 19 item 3).

Starts the installed ``daemond`` with two listeners: ``echo``, and ``chat``
(``tests.plugins.fakelogin`` then ``chat``, no flood control). One client
measures echo round trips (a 64-byte line, one at a time) for ``--seconds``:
first with the chat idle, then while ``--senders`` chat users each send one
attack line after another (a reader in the room consumes the fan-out), then
while they send benign lines of the same length. It prints p50/p99/max of the
echo round trip in each phase and the ratio of p99 to the idle p99.

    .venv/bin/python bench/sanitizer_bench.py [--seconds 5] [--senders 3] [--line osc-c1-then-esc]

To compare with an older sanitiser, run it on a tree where
``plugins/chat/text.py`` is the old one; README-sanitizer.md has figures.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import find_daemond

ROOT = Path(__file__).resolve().parents[1]

#: attack lines (about 4 KiB of UTF-8 each); the first is issue 19's
LINES = {
    "osc-c1-then-esc": "\x9da" * 1300 + "\x1bq",
    "osc-esc-then-esc": "\x1b]a" * 1300 + "\x1bq",
    "escapes": "\x1b" * 4000,
    "benign": "plain words\tand a tab " * 180,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(workdir: Path) -> tuple[subprocess.Popen, int, int]:
    echo_port, chat_port = free_port(), free_port()
    config = workdir / "daemond.yaml"
    config.write_text(json.dumps({
        "state_dir": str(workdir / "state"),
        "logging": {"level": "warning", "file": "daemond.log"},
        "listeners": {
            "echo": {"host": "127.0.0.1", "port": echo_port, "plugins": ["echo"]},
            "chat": {"host": "127.0.0.1", "port": chat_port, "plugins": ["tests.plugins.fakelogin", "chat"],
                     "idle_timeout": 0},
        },
        "plugins": {"chat": {"rate": 0, "replay": 0}},
    }))
    daemond = find_daemond() or sys.exit("daemond is not installed: pip install -e . first")
    proc = subprocess.Popen([daemond, "-c", str(config), "--no-console"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", chat_port), timeout=1).close()
            socket.create_connection(("127.0.0.1", echo_port), timeout=1).close()
            return proc, echo_port, chat_port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit("daemond did not start")
            time.sleep(0.1)


def chat_user(port: int, name: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"/nick {name}\n".encode())
    buf = b""
    while buf.count(b"\n") < 2:  # the greeting and "+OK logged in"
        buf += sock.recv(4096)
    return sock


def drain(sock: socket.socket, stop: threading.Event) -> None:
    while not stop.is_set():
        ready, _, _ = select.select([sock], [], [], 0.2)
        try:
            if ready and not sock.recv(1 << 20):
                return
        except OSError:
            return


def send_forever(sock: socket.socket, line: bytes, stop: threading.Event) -> None:
    batch = line * 8
    try:
        while not stop.is_set():
            sock.sendall(batch)
    except OSError:
        pass  # closed at the end of the phase


def echo_latencies(port: int, seconds: float) -> list[float]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = b"x" * 63 + b"\n"
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        sock.sendall(payload)
        got = 0
        while got < len(payload):
            got += len(sock.recv(4096))
        times.append(time.perf_counter() - start)
        time.sleep(0.001)
    sock.close()
    return sorted(times)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


def phase(echo_port: int, chat_port: int, seconds: float, senders: int, line: str | None) -> list[float]:
    stop = threading.Event()
    threads = []
    socks = []
    if line is not None:
        reader = chat_user(chat_port, "reader")
        socks.append(reader)
        threads.append(threading.Thread(target=drain, args=(reader, stop), daemon=True))
        data = line.encode() + b"\n"
        for n in range(senders):
            sender = chat_user(chat_port, f"sender{n}")
            socks.append(sender)
            threads.append(threading.Thread(target=send_forever, args=(sender, data, stop), daemon=True))
            threads.append(threading.Thread(target=drain, args=(sender, stop), daemon=True))
        for t in threads:
            t.start()
        time.sleep(0.5)
    try:
        return echo_latencies(echo_port, seconds)
    finally:
        stop.set()
        for s in socks:
            s.close()
        time.sleep(0.3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="of echo measurement per phase")
    parser.add_argument("--senders", type=int, default=3)
    parser.add_argument("--line", default="osc-c1-then-esc", choices=[k for k in LINES if k != "benign"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sanitizer-bench-") as tmp:
        proc, echo_port, chat_port = start(Path(tmp))
        try:
            results = {}
            for name, line in (("idle", None), (args.line, LINES[args.line]), ("benign", LINES["benign"])):
                results[name] = phase(echo_port, chat_port, args.seconds, args.senders, line)
        finally:
            proc.terminate()
            proc.wait(20)
    idle_p99 = pct(results["idle"], 0.99)
    print(f"echo round trip, {args.senders} chat senders, {args.seconds:g} s a phase")
    print(f"{'phase':<20} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p99/idle':>9}")
    for name, times in results.items():
        print(f"{name:<20} {len(times):>6} {pct(times, 0.5):>8.2f} {pct(times, 0.99):>8.2f} "
              f"{times[-1] * 1000:>8.2f} {pct(times, 0.99) / idle_p99:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
