#!/usr/bin/env python3
"""How the GIL switch interval decides whether thousands of threads can wake at once.

Starts daemond (echo) once per interval in tuning.switch_interval, and a bare
thread-per-connection baseline, holds N idle connections to each, then sends
one byte on every connection at once and counts the echoes answered within a
deadline. Loopback only, bounded in count and time.

    python bench/switch_interval.py                    # 10,000 connections; 0.005 0.05 0.5
    python bench/switch_interval.py -n 3000 --intervals 0.005,0.02,0.05
"""

import argparse
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int, field: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def start(kind: str, interval: float | None, tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    if kind == "threads":
        proc = subprocess.Popen([sys.executable, str(HERE / "baseline_threads.py"), "127.0.0.1", str(port)])
    else:
        config = tmp / f"daemond-{interval}.yaml"
        config.write_text(
            f"state_dir: {tmp / 'state'}\nlogging: {{level: warning, file: null}}\nreload: {{watch: false}}\n"
            f"tuning: {{switch_interval: {interval}}}\n"
            f"listeners:\n  e: {{port: {port}, plugins: [echo], max_connections: 20000}}\n")
        daemond = shutil.which("daemond", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
        proc = subprocess.Popen([daemond, "-c", str(config), "--no-console"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{kind} did not start")


def run(kind: str, interval: float | None, n: int, timeout: float, tmp: Path) -> str:
    proc, port = start(kind, interval, tmp)
    socks = []
    try:
        begun = time.monotonic()
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        base = 1 if kind == "threads" else 5  # the server's own threads
        while proc_status(proc.pid, "Threads") < n + base - 4 and time.monotonic() - begun < 60:
            time.sleep(0.02)
        accepted = time.monotonic() - begun
        rss = proc_status(proc.pid, "VmRSS") // 1024
        sel = selectors.DefaultSelector()
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        begun = time.monotonic()
        for s in socks:
            s.send(b"x")
        left = n
        while left and time.monotonic() - begun < timeout:
            for key, _ in sel.select(0.2):
                key.fileobj.recv(1)
                sel.unregister(key.fileobj)
                left -= 1
        took = time.monotonic() - begun
        label = "bare threads" if kind == "threads" else f"daemond {interval * 1000:g} ms"
        return (f"{label:<18} accepted in {accepted:5.2f} s  RSS {rss:4d} MiB  "
                f"answered {n - left:>6,}/{n:,} in {took:5.2f} s")
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            print(f"   ({kind} {interval or ''} did not exit within 30 s of SIGTERM: killed)", flush=True)
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10_000, help="idle connections (default 10,000)")
    ap.add_argument("--intervals", default="0.005,0.05,0.5", help="switch intervals to try, seconds")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the echoes")
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{args.n:,} connections", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        kinds = ([] if args.no_baseline else [("threads", None)]) + \
                [("daemond", float(i)) for i in args.intervals.split(",")]
        for kind, interval in kinds:
            print(run(kind, interval, args.n, args.timeout, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
