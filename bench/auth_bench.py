#!/usr/bin/env python3
"""Auth benchmark: password logins per second, and echo latency during a login storm.

Starts the installed ``daemond`` as a subprocess with two loopback listeners,
``login: [auth]`` and ``echo: [echo]``, and argon2id at the defaults under
test (OWASP's minimum unless ``--argon2`` says otherwise). Then:

1. **logins/s** — ``--clients`` client threads, in a separate process, each
   repeat connect → greeting → ``/login bench PASSWORD`` → ``+OK`` → close
   for ``--duration`` seconds. They stand for clients on other machines, so
   they run at nice +19 (``--storm-nice``): on a small machine their own CPU
   would otherwise compete with the daemon and with the echo client below.
2. **echo latency** — one client sends 64 bytes on the echo listener, waits
   for them to come back, pauses ``--gap`` ms, and so on for ``--duration``
   seconds; once with the daemon otherwise idle, once during the login storm
   of step 1. p50/p99/max round trips and the p99 ratio are reported. If
   argon2 held the GIL, every echo would wait out a hash (tens of ms).

Runs are interleaved over ``--rounds`` and the median is reported.

    python bench/auth_bench.py                      # ~1 minute
    python bench/auth_bench.py --max-hashing 1,2,4  # compare the hashing cap
    python bench/auth_bench.py --quick              # smoke run, ~10 s

Everything is on 127.0.0.1 and bounded in time; the daemon is stopped with
SIGTERM (then SIGKILL) and its temporary directory removed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from common import find_daemond  # bench/common.py (the script's own directory is on sys.path)

HOST = "127.0.0.1"
BENCH = Path(__file__).resolve().parent
PASSWORD = "bench-password-1"
OWASP = {"time_cost": 2, "memory_cost": 19456, "parallelism": 1}


# -- the daemon ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Daemon:
    def __init__(self, daemond: str, argon2: dict, max_hashing: int | None, tuning: dict):
        self.dir = Path(tempfile.mkdtemp(prefix="daemond-authbench-"))
        self.ports = {"login": free_port(), "echo": free_port(), "hog": free_port()}
        config = {
            "state_dir": str(self.dir / "state"),
            "logging": {"file": None, "level": "warning"},
            "listeners": {
                "login": {"host": HOST, "port": self.ports["login"], "plugins": ["auth"], "backlog": 4096},
                "echo": {"host": HOST, "port": self.ports["echo"], "plugins": ["echo"]},
                "hog": {"host": HOST, "port": self.ports["hog"], "plugins": ["bench.gil_hog"], "backlog": 4096},
            },
            "plugins": {"auth": {"argon2": argon2, "max_hashing": max_hashing, "max_attempts": 1_000_000}},
        }
        if tuning:
            config["tuning"] = tuning
        path = self.dir / "daemond.yaml"
        path.write_text(yaml.safe_dump(config))
        self.stderr = open(self.dir / "stderr.log", "wb")
        env = {**os.environ, "PYTHONPATH": str(BENCH.parent)}  # bench.gil_hog by its dotted path, not from the cwd
        self.proc = subprocess.Popen([daemond, "-c", str(path), "--no-console"], stdin=subprocess.DEVNULL,
                                     stdout=self.stderr, stderr=self.stderr, cwd=BENCH.parent, env=env)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()  # and its temporary directory goes too
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"daemond exited {self.proc.returncode}: {(self.dir / 'stderr.log').read_text()}")
            try:  # ready when our login listener greets (a free port may be taken meanwhile: then daemond exits)
                with socket.create_connection((HOST, self.ports["login"]), timeout=5) as sock:
                    if read_line(sock, bytearray()).startswith("+OK") and self.proc.poll() is None:
                        break
            except (OSError, EOFError):
                if time.monotonic() > deadline:
                    raise SystemExit("daemond did not start within 30 s") from None
                time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """User + system CPU time the daemon and its running children (auth's hashing helper)
        have used (from /proc)."""
        pid = self.proc.pid
        pids = [pid]
        for task in Path(f"/proc/{pid}/task").iterdir():  # children are listed by the thread that started them
            try:
                pids += [int(c) for c in (task / "children").read_text().split()]
            except FileNotFoundError:  # a thread gone meanwhile
                pass
        total = 0
        for p in pids:
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:  # a child gone meanwhile
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- clients -------------------------------------------------------------------------------


def read_line(sock: socket.socket, buf: bytearray) -> str:
    while b"\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError("closed")
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line.decode()


def login_once(port: int, line: bytes) -> bool:
    with socket.create_connection((HOST, port), timeout=30) as sock:
        buf = bytearray()
        read_line(sock, buf)  # greeting
        sock.sendall(line)
        return read_line(sock, buf).startswith("+OK")


def register(port: int) -> None:
    with socket.create_connection((HOST, port), timeout=30) as sock:
        buf = bytearray()
        read_line(sock, buf)
        sock.sendall(f"/register bench {PASSWORD}\n".encode())
        reply = read_line(sock, buf)
        if not reply.startswith("+OK"):
            raise SystemExit(f"cannot register the bench user: {reply}")


def storm(port: int, line: bytes, clients: int, duration: float, started, result, cpus=None, nice=0) -> None:
    """Process body: ``clients`` threads each repeating connect, greeting, ``line``, +OK, close for
    ``duration`` seconds, on ``cpus`` if given, ``nice`` lower; puts (successes, failures, seconds)."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    if nice:
        os.nice(nice)
    counts = [0] * clients
    failures = [0] * clients
    stop_at = time.monotonic() + duration

    def loop(i: int) -> None:
        while time.monotonic() < stop_at:
            try:
                if login_once(port, line):
                    counts[i] += 1
                else:
                    failures[i] += 1
            except OSError:
                failures[i] += 1

    threads = [threading.Thread(target=loop, args=(i,), name=f"storm-{i}") for i in range(clients)]
    begun = time.monotonic()
    started.set()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.put((sum(counts), sum(failures), time.monotonic() - begun))


def ping(port: int, duration: float, gap: float) -> list[float]:
    """Round trips (seconds) of 64-byte echoes, one at a time, ``gap`` seconds apart."""
    payload = b"x" * 63 + b"\n"
    samples = []
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stop_at = time.monotonic() + duration
        while time.monotonic() < stop_at:
            begun = time.perf_counter()
            sock.sendall(payload)
            got = 0
            while got < len(payload):
                chunk = sock.recv(4096)
                if not chunk:
                    raise EOFError("echo closed")
                got += len(chunk)
            samples.append(time.perf_counter() - begun)
            if gap:
                time.sleep(gap)
    return samples


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# -- one configuration ---------------------------------------------------------------------


def measure(daemon: Daemon, port: int, line: bytes, args) -> dict:
    """One round: echo alone, then echo during a storm of ``line`` requests on ``port``."""
    ctx = multiprocessing.get_context("fork")
    idle = ping(daemon.ports["echo"], args.duration, args.gap / 1000)
    started, result = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=storm, args=(port, line, args.clients, args.duration, started, result,
                                                args.storm_cpus, args.storm_nice))
    proc.start()
    started.wait(30)
    cpu_before, wall_before = daemon.cpu_seconds(), time.monotonic()
    busy = ping(daemon.ports["echo"], args.duration, args.gap / 1000)
    cpu_pct = (daemon.cpu_seconds() - cpu_before) / (time.monotonic() - wall_before) * 100
    done, failures, seconds = result.get(timeout=args.duration + 120)
    proc.join(30)
    return {
        "per_s": done / seconds, "failures": failures, "daemon_cpu_pct": cpu_pct,
        "idle_p50_ms": percentile(idle, 50) * 1e3, "idle_p99_ms": percentile(idle, 99) * 1e3,
        "idle_max_ms": max(idle) * 1e3, "storm_p50_ms": percentile(busy, 50) * 1e3,
        "storm_p99_ms": percentile(busy, 99) * 1e3, "storm_max_ms": max(busy) * 1e3,
        "echo_samples": [len(idle), len(busy)],
    }


def summarize(label: str, rounds: list[dict]) -> dict:
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0] if key != "echo_samples"}
    median["p99_ratio"] = median["storm_p99_ms"] / median["idle_p99_ms"]
    median["p50_ratio"] = median["storm_p50_ms"] / median["idle_p50_ms"]
    return {"label": label, "median": median, "rounds": rounds}


def run_config(daemond: str, argon2: dict, max_hashing: int | None, tuning: dict, args,
               control: bool) -> list[dict]:
    """Rounds of the login storm (and of the GIL-holding control, with --control) on one daemon."""
    daemon = Daemon(daemond, argon2, max_hashing, tuning)
    login = f"/login bench {PASSWORD}\n".encode()
    logins, hogs = [], []
    try:
        register(daemon.ports["login"])
        for _ in range(5):  # warm up: page in argon2's memory, fill thread stacks
            login_once(daemon.ports["login"], login)
        for _ in range(args.rounds):  # interleaved, so drift of the machine hits both alike
            logins.append(measure(daemon, daemon.ports["login"], login, args))
            if control:
                hogs.append(measure(daemon, daemon.ports["hog"], b"work\n", args))
    finally:
        daemon.stop()
    # the plugin's default: one per CPU the daemon leaves for hashing (all but its Python CPU)
    cpus = len(os.sched_getaffinity(0))
    native = cpus - 1 if cpus > 1 else cpus
    shown = f"auto ({max(1, native // argon2.get('parallelism', 1))})" if max_hashing is None else max_hashing
    tuned = "" if "switch_interval" not in tuning else f", switch interval {tuning['switch_interval'] * 1000:g} ms"
    tuned += "" if "login_nice" not in tuning else f", login_nice {tuning['login_nice']}"
    tuned += "" if "spare_threads" not in tuning else f", spare_threads {tuning['spare_threads']}"
    rows = [summarize(f"argon2 logins, max_hashing {shown}{tuned}", logins)]
    if hogs:
        rows.append(summarize(f"control: 25 ms of GIL-holding Python per request{tuned}", hogs))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per configuration; the median is shown (default 3)")
    parser.add_argument("--clients", type=int, default=16, help="login storm client threads (default 16)")
    parser.add_argument("--max-hashing", default="auto",
                        help="comma-separated max_hashing values to compare; auto: the plugin's default, "
                             "one per CPU left for hashing")
    parser.add_argument("--argon2", default=None, help='JSON argon2 params (default OWASP: {"time_cost": 2, "memory_cost": 19456, "parallelism": 1})')
    parser.add_argument("--switch-interval", default="default",
                        help="comma-separated GIL switch intervals in ms for the daemon (tuning.switch_interval); "
                             "default: the daemon's own")
    parser.add_argument("--login-nice", default="default",
                        help="comma-separated tuning.login_nice values to compare (null: off); default: the daemon's own")
    parser.add_argument("--spare-threads", default="default",
                        help="comma-separated tuning.spare_threads values to compare (0: a new thread for every "
                             "connection); default: the daemon's own")
    parser.add_argument("--storm-cpus", type=lambda v: {int(c) for c in v.split(",")}, default=None,
                        help="CPUs for the storm clients only, e.g. 0 (the echo pinger stays where this "
                             "script runs: put it elsewhere with taskset)")
    parser.add_argument("--storm-nice", type=int, default=19, choices=range(20), metavar="0-19",
                        help="how much lower the storm clients run (default 19): they stand for clients on other "
                             "machines, so they should not take CPU the daemon or the echo pinger wants; "
                             "0 to run them like any process")
    parser.add_argument("--gap", type=float, default=1.0, help="ms between echo pings (default 1)")
    parser.add_argument("--quick", action="store_true", help="1 round of 1.5 s: checks it works, figures not worth quoting")
    parser.add_argument("--daemond", help="the daemond command (default: next to this python, then PATH)")
    parser.add_argument("--control", action=argparse.BooleanOptionalAction, default=True,
                        help="also storm bench/gil_hog.py, which holds the GIL as long as a hash takes (default on)")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds = 1.5, 1
    daemond = find_daemond(args.daemond) or sys.exit(
        "auth_bench: daemond not found; install daemond in this environment or pass --daemond PATH")
    if args.storm_cpus and not args.storm_cpus <= set(range(os.cpu_count() or 1)):
        parser.error(f"--storm-cpus: this machine has CPUs 0-{(os.cpu_count() or 1) - 1}")
    argon2 = json.loads(args.argon2) if args.argon2 else dict(OWASP)
    load_before = os.getloadavg()[0]
    configs = [(None if n == "auto" else int(n),
                {**({} if w == "default" else {"switch_interval": float(w) / 1000}),
                 **({} if v == "default" else {"login_nice": None if v == "null" else int(v)}),
                 **({} if k == "default" else {"spare_threads": int(k)})})
               for w in args.switch_interval.split(",") for v in args.login_nice.split(",")
               for k in args.spare_threads.split(",")
               for n in args.max_hashing.split(",")]
    results = [row for i, (n, tuning) in enumerate(configs)
               for row in run_config(daemond, argon2, n, tuning, args, control=args.control and (i == 0 or n is None))]
    load_after = os.getloadavg()[0]

    print(f"# auth bench: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"# argon2id m={argon2['memory_cost']} KiB t={argon2['time_cost']} p={argon2['parallelism']}; "
          f"{args.clients} storm clients at nice +{args.storm_nice}; {args.rounds} rounds x {args.duration:g} s; median shown")
    print(f"# 1-minute load average before/after: {load_before:.1f} / {load_after:.1f} (other work on the machine skews figures)")
    print()
    print("| storm | requests/s | daemon CPU | echo p50 idle / storm | echo p99 idle / storm | p99 storm/idle | echo max storm |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        m = r["median"]
        print(f"| {r['label']} | {m['per_s']:.1f} | {m['daemon_cpu_pct']:.0f}% | {m['idle_p50_ms']:.3f} / {m['storm_p50_ms']:.3f} ms | "
              f"{m['idle_p99_ms']:.3f} / {m['storm_p99_ms']:.3f} ms | {m['p99_ratio']:.1f}x | {m['storm_max_ms']:.1f} ms |")
    print("\n(daemon CPU: the daemon and its hashing helper together)")
    failures = sum(r2["failures"] for r in results for r2 in r["rounds"])
    if failures:
        print(f"\nwarning: {failures} requests failed")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
