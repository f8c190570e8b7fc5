"""How fast ``daemonctl status`` answers, against ``python3 -c pass``.

The issue's target: a ``daemonctl status`` round trip (start the interpreter,
find the socket, connect, ask, print, exit) takes at most twice as long as
``python3 -c pass``. Runs are interleaved (one of each kind per round) so that
load on the machine hits every kind alike; medians are compared as ratios.

    python bench/ctl_bench.py [--rounds 40]

Starts the installed ``daemond`` (next to this interpreter) on a free port with a
throw-away config and state directory, and stops it at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def run_once(argv: list[str], env: dict) -> float:
    begun = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - begun
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()}")
    return elapsed


def start_daemon(directory: Path) -> tuple[subprocess.Popen, Path, Path]:
    config = directory / "daemond.yaml"
    config.write_text(f"state_dir: {directory / 'state'}\nlisteners:\n  echo:\n    port: 0\n    plugins: [echo]\n")
    # the same with an anchor: daemonctl's line reader leaves it to PyYAML
    (directory / "fancy.yaml").write_text(f"state_dir: &s {directory / 'state'}\n" + config.read_text().split("\n", 1)[1])
    sock = directory / "state" / "control.sock"
    daemon = subprocess.Popen([str(BIN / "daemond"), "-c", str(config), "--no-console"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while subprocess.run([str(BIN / "daemonctl"), "--socket", str(sock), "status"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        if daemon.poll() is not None or time.monotonic() > deadline:
            daemon.kill()
            daemon.wait()
            raise SystemExit("daemond did not start")
        time.sleep(0.1)
    return daemon, config, sock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="ctl-bench-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DAEMOND_SOCKET", "DAEMOND_CONFIG", "RUNTIME_DIRECTORY")}
    try:
        daemon, config, sock = start_daemon(directory)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    ctl = str(BIN / "daemonctl")
    kinds = {
        "python3 -c pass (this venv's python)": [sys.executable, "-c", "pass"],
        "python3 -I -S -c pass (bare interpreter)": [sys.executable, "-I", "-S", "-c", "pass"],
        "python3 -c 'import re' (what pip's console-script wrapper imports)": [sys.executable, "-c", "import re"],
        "daemonctl --socket S status": [ctl, "--socket", str(sock), "status"],
        "daemonctl -c CONFIG status (reads the config)": [ctl, "-c", str(config), "status"],
        "daemonctl -c FANCY status (config in fancier YAML: PyYAML)": [ctl, "-c", str(directory / "fancy.yaml"), "status"],
        "daemonctl --json --socket S status": [ctl, "--json", "--socket", str(sock), "status"],
    }
    times: dict[str, list[float]] = {name: [] for name in kinds}
    try:
        for argv in kinds.values():  # warm the page cache and the .pyc files
            run_once(argv, env)
        for _ in range(args.rounds):
            for name, argv in kinds.items():
                times[name].append(run_once(argv, env))
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        shutil.rmtree(directory, ignore_errors=True)

    base = statistics.median(times["python3 -c pass (this venv's python)"])
    print(f"{args.rounds} interleaved rounds, load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}\n")
    print("| command | median ms | p10 ms | p90 ms | median / `python3 -c pass` |")
    print("|---|---:|---:|---:|---:|")
    for name, samples in times.items():
        samples.sort()
        p10 = samples[len(samples) // 10]
        p90 = samples[len(samples) * 9 // 10]
        median = statistics.median(samples)
        print(f"| `{name}` | {median * 1000:.1f} | {p10 * 1000:.1f} | {p90 * 1000:.1f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
