#!/usr/bin/env python3
"""Auth timing figures for the robustness suite (issue 9, items 7 and 9), as ratios.

* **Enumeration** (item 7): the median time of ``/login`` for an unknown name
  against the median for a known name with a wrong password, interleaved, at
  the shipped argon2id cost. Target: the ratio within 0.90-1.10.
* **Login storm** (item 9): the p99 echo round trip on one listener while 50
  clients register and then log in at once on another, against the p99 of the
  same echo client on the idle daemon just before. Target: at most 2x.

Each figure is a ratio of two measurements made in the same run, so the speed
of the machine cancels out. Starts ``daemond`` (the one installed next to this
Python) on free loopback ports in a temporary directory.

    python bench/auth_bench.py            # ~20 s on 2 cores
    python bench/auth_bench.py --json     # also print the figures as JSON
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent


class Daemon:
    def __init__(self, directory: Path, auth: dict):
        config = {"state_dir": str(directory / "state"), "logging": {"file": "daemond.log", "level": "info"},
                  "listeners": {"login": {"host": "127.0.0.1", "port": 0, "plugins": ["auth", "echo"],
                                          "max_unauthenticated_per_ip": None},
                                "echo": {"host": "127.0.0.1", "port": 0, "plugins": ["echo"]}},
                  "plugins": {"auth": {"max_attempts": 1_000_000, **auth}}}
        path = directory / "daemond.yaml"
        path.write_text(yaml.safe_dump(config))
        self.err = open(directory / "stderr.log", "w+b")
        self.proc = subprocess.Popen([str(BIN / "daemond"), "-c", str(path), "--no-console"],
                                     stdin=subprocess.DEVNULL, stdout=self.err, stderr=self.err)
        self.ports: dict[str, int] = {}
        deadline = time.monotonic() + 20
        while len(self.ports) < 2:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("daemond did not start: " + (directory / "stderr.log").read_text())
            time.sleep(0.05)
            text = (directory / "stderr.log").read_text(errors="replace")
            self.ports = {m.group(3): int(m.group(2)) for m in re.finditer(r"listening on (\S+):(\d+) \((\S+)\)", text)}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.err.close()


class Client:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buf = b""

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def command(self, text: str) -> bytes:
        self.sock.sendall(text.encode() + b"\n")
        return self.line()


def enumeration(d: Daemon, rounds: int) -> dict:
    c = Client(d.ports["login"])
    c.line()
    assert c.command("/register alice alice-password").startswith(b"+OK")
    c.sock.close()
    c = Client(d.ports["login"])
    c.line()
    times: dict[str, list[float]] = {"unknown": [], "wrong": []}
    replies = set()
    for n in range(rounds):
        for kind, name in (("wrong", "alice"), ("unknown", "nobody")) if n % 2 else (("unknown", "nobody"), ("wrong", "alice")):
            t = time.perf_counter()
            replies.add(c.command(f"/login {name} wrong-password-{n}"))
            times[kind].append(time.perf_counter() - t)
    c.sock.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"median_unknown_ms": med["unknown"] * 1e3, "median_wrong_ms": med["wrong"] * 1e3,
            "ratio": med["unknown"] / med["wrong"], "distinct_replies": len(replies)}


def echo_latencies(port: int, stop: threading.Event, out: list[float], count: int | None = None) -> None:
    c = Client(port)
    n = 0
    while not stop.is_set() and (count is None or n < count):
        t = time.perf_counter()
        c.sock.sendall(b"ping\n")
        c.line()
        out.append(time.perf_counter() - t)
        n += 1
        time.sleep(0.002)
    c.sock.close()


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def storm(d: Daemon, clients: int) -> dict:
    idle: list[float] = []
    echo_latencies(d.ports["echo"], threading.Event(), idle, count=1000)
    busy: list[float] = []
    stop = threading.Event()
    pinger = threading.Thread(target=echo_latencies, args=(d.ports["echo"], stop, busy), name="echo-pinger")
    pinger.start()

    def one(i: int, command: str, results: list) -> None:
        c = Client(d.ports["login"])
        c.line()
        results[i] = c.command(f"{command} storm{i} password-of-storm{i}")
        c.sock.close()

    started = time.perf_counter()
    for command in ("/register", "/login"):
        results: list = [None] * clients
        threads = [threading.Thread(target=one, args=(i, command, results), name=f"storm-{i}") for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert all(r and r.startswith(b"+OK") for r in results), results
    took = time.perf_counter() - started
    stop.set()
    pinger.join(10)
    return {"idle_p99_ms": p99(idle) * 1e3, "storm_p99_ms": p99(busy) * 1e3, "ratio": p99(busy) / p99(idle),
            "storm_seconds": took, "echoes_during_storm": len(busy)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="logins of each kind for the enumeration figure")
    parser.add_argument("--clients", type=int, default=50, help="clients in the login storm")
    parser.add_argument("--max-hashing", type=int, default=None, help="auth's max_hashing (default: the plugin's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="auth-bench-") as tmp:
        d = Daemon(Path(tmp), {} if args.max_hashing is None else {"max_hashing": args.max_hashing})
        try:
            figures = {"enumeration": enumeration(d, args.rounds), "storm": storm(d, args.clients)}
        finally:
            d.stop()
    figures["machine"] = f"{platform.node()} {platform.machine()} nproc={os.cpu_count()}"
    figures["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    e, s = figures["enumeration"], figures["storm"]
    print(f"enumeration: unknown {e['median_unknown_ms']:.1f} ms / wrong password {e['median_wrong_ms']:.1f} ms "
          f"= {e['ratio']:.3f} (target 0.90-1.10); distinct replies {e['distinct_replies']}")
    print(f"login storm: echo p99 {s['storm_p99_ms']:.2f} ms during / {s['idle_p99_ms']:.2f} ms idle = "
          f"{s['ratio']:.2f}x (target <= 2x); {args.clients} registrations + logins in {s['storm_seconds']:.1f} s")
    if args.json:
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
