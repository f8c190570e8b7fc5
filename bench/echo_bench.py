#!/usr/bin/env python3
"""Echo benchmark: daemond's echo plugin against Python baselines.

Starts each server as a subprocess on a free loopback port, drives it with
bench/loadgen.bin (a single-threaded C epoll load generator, compiled here
with ``cc -O2``), and prints round trips per second and p50/p99 round-trip
latency per server, daemond's ratio to each baseline, and for the idle
scenario the time until 10,000 held connections are all answered, the
answered count, and server RSS / threads while they are held. Every echo run
also records each connection's time from its connect to its first echo (the
connections start echoing as they connect, so late ones arrive under load)
and the p99.9 and longest round trip. The run ends with one table, the
issue-21 summary: every server side by side, daemond's ratio to asyncio's
Protocol and to uvloop.

The servers: ``threads`` (bare thread per connection), ``socketserver``,
``asyncio`` (streams), ``protocol`` (an asyncio.Protocol), ``uvloop`` (the same
Protocol on uvloop, from the ``bench`` extra) and ``daemond``.

Opt-in servers: ``protocol`` (an asyncio.Protocol), ``uvloop`` (the same Protocol
on uvloop, from the ``bench`` extra) and ``daemond-x2`` (two daemond nodes sharing
the port with ``listeners.echo.reuse_port``, each with its own ``tuning.cpu``;
``daemond-x2-free``: the same with ``tuning.pin_threads: false``).

Scenarios are interleaved (for each scenario: round 1 on every server, then
round 2, ...) and the median over the rounds is reported, so that slow drift
of the machine hits every server alike.

    python bench/echo_bench.py                 # full run, ~9 minutes
    python bench/echo_bench.py --issue21       # the issue-21 table: 5 servers, 4 s x 2 rounds, ~6 minutes
    python bench/echo_bench.py --quick         # smoke run, < 1 minute
    python bench/echo_bench.py --servers threads,daemond --scenarios 64x64,idle
    python bench/echo_bench.py --json          # also write bench/results/*.json
    python bench/echo_bench.py --tls           # TLS: threads, asyncio, daemond; 64x64, 64x16k, hs, hs-rsa
    python bench/echo_bench.py --tls --scenarios idle --servers asyncio,daemond
    python bench/echo_bench.py --servers daemond,daemond-x2,uvloop --scenarios 64x64   # issue 25

With --tls every server speaks TLS with the same ECDSA P-256 certificate (an
RSA-2048 one for hs-rsa), made for the run with the ``openssl`` command in the
temporary directory (never kept), and the load generator is
bench/loadgen_tls.bin (loadgen.c built with -DLOADGEN_TLS against OpenSSL).

Everything talks to 127.0.0.1 only and every run is bounded in time.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import find_daemond, make_certificate  # bench/common.py (the script's own directory is on sys.path)

BENCH = Path(__file__).resolve().parent
LOADGEN_SRC = BENCH / "loadgen.c"
LOADGEN_BIN = BENCH / "loadgen.bin"
LOADGEN_TLS_BIN = BENCH / "loadgen_tls.bin"
RESULTS = BENCH / "results"

HOST = "127.0.0.1"


# --------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    conns: int = 0
    size: int = 0
    idle: bool = False
    hs: bool = False          # TLS only: new connections (full handshakes) per second
    key: str = "ec"           # TLS: the certificate's key, "ec" (P-256) or "rsa" (2048 bits)


SCENARIOS = [
    Scenario("1x64", "1 conn x 64 B", 1, 64),
    Scenario("64x64", "64 conns x 64 B", 64, 64),
    Scenario("512x64", "512 conns x 64 B", 512, 64),
    Scenario("64x16k", "64 conns x 16 KiB", 64, 16384),
    Scenario("idle", "10,000 idle conns, then 1 byte on each", idle=True),
    Scenario("hs", "new TLS connections/s: full handshake (ECDSA P-256) + 1-byte echo + "
             "close, 8 in flight (rtt/s = connections/s)", 8, 1, hs=True),
    Scenario("hs-rsa", "new TLS connections/s: full handshake (RSA-2048) + 1-byte echo + "
             "close, 8 in flight (rtt/s = connections/s)", 8, 1, hs=True, key="rsa"),
]
SCEN_BY_NAME = {s.name: s for s in SCENARIOS}

# Targets from the project issue (daemond echo).
TARGET_VS_THREADS = 0.9          # >= 0.9x bare threads, every scenario
TARGET_VS_ASYNCIO_64x64 = 1.0    # >= 1.0x asyncio streams at 64 x 64 B
# Issue 21: against the best event loops, newcomers, memory.
TARGET_VS_PROTOCOL = 0.9         # >= 0.9x asyncio Protocol at 64 and 512 conns, 64 B and 16 KiB
TARGET_VS_UVLOOP_1 = 1.0         # >= 1.0x uvloop with one connection
TARGET_TTFE_S = 1.5              # 512 x 64 B: every connection's first echo within 1.5 s of its connect
TARGET_P999_VS_PROTOCOL = 2.0    # 512 x 64 B: p99.9 round trip <= 2x asyncio Protocol's
TARGET_IDLE_RSS_MIB = 250
TARGET_IDLE_ALL_S = 2.0
# Targets from issue 22 (TLS).
TLS_SCENARIOS = ["64x64", "64x16k", "hs", "hs-rsa", "idle"]
TLS_DEFAULT_SCENARIOS = ["64x64", "64x16k", "hs", "hs-rsa"]  # idle: ask for it (~3 min a round)
TLS_TARGET_IDLE_RSS_MIB = 600
TLS_TARGET_IDLE_ALL_S = 5.0  # issue 22: 10,000 idle TLS connections all answered within 5 s
TLS_SERVERS = ["threads", "asyncio", "daemond"]
TLS_TARGET_VS_ASYNCIO = 1.0      # TLS echo, 64 x 64 B and 64 x 16 KiB
TLS_TARGET_VS_THREADS = 0.9      # TLS echo, 64 x 64 B and 64 x 16 KiB
TLS_TARGET_HS_VS_ASYNCIO = 0.9   # full handshakes per second


def targets(sc: "Scenario", tls: bool) -> dict[str, float]:
    """daemond's target ratio to each baseline in this scenario."""
    if tls:
        if sc.hs:
            return {"asyncio": TLS_TARGET_HS_VS_ASYNCIO}
        return {"threads": TLS_TARGET_VS_THREADS, "asyncio": TLS_TARGET_VS_ASYNCIO}
    t = {"threads": TARGET_VS_THREADS}
    if sc.name == "64x64":
        t["asyncio"] = TARGET_VS_ASYNCIO_64x64
    if sc.conns == 1:
        t["uvloop"] = TARGET_VS_UVLOOP_1
    else:
        t["protocol"] = TARGET_VS_PROTOCOL
    return t

BASELINES = ["threads", "socketserver", "asyncio", "protocol", "uvloop"]
#: daemond-x2: two daemond nodes sharing the port (listeners.echo.reuse_port, issue 25), one per CPU
#: daemond-x2-free: the same two nodes with tuning.pin_threads off (the kernel places every thread)
ALL_SERVERS = BASELINES + ["daemond", "daemond-x2", "daemond-x2-free"]
#: what runs without --servers (socketserver and daemond-x2 are asked for by name)
DEFAULT_SERVERS = ["threads", "asyncio", "protocol", "uvloop", "daemond"]
#: the baseline scripts and their arguments, per server name
BASELINE_ARGV = {"threads": ("baseline_threads.py",), "socketserver": ("baseline_socketserver.py",),
                 "asyncio": ("baseline_asyncio.py",), "protocol": ("baseline_asyncio.py", "--protocol"),
                 "uvloop": ("baseline_asyncio.py", "--uvloop")}
# Issue 25: two nodes sharing the port against uvloop at 64 x 64 B.
TARGET_X2_VS_UVLOOP_64x64 = 1.0


# ------------------------------------------------------------ proc helpers


def descendants(pid: int) -> list[int]:
    """pid and all its descendants (via /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                try:
                    with open(f"/proc/{p}/task/{task}/children") as f:
                        todo.extend(int(c) for c in f.read().split())
                except OSError:
                    pass
        except OSError:
            pass
    return out


def proc_tree_stats(pid: int) -> dict:
    """Summed VmRSS (KiB), VmHWM (KiB), Threads and open fds of a process tree."""
    rss = hwm = threads = fds = 0
    procs = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        hwm += int(line.split()[1])
                    elif line.startswith("Threads:"):
                        threads += int(line.split()[1])
            fds += len(os.listdir(f"/proc/{p}/fd"))
            procs += 1
        except OSError:
            pass
    return {"rss_kib": rss, "hwm_kib": hwm, "threads": threads, "fds": fds, "procs": procs}


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def listening_sockets(port: int) -> int:
    """How many sockets listen on this TCP port over IPv4 (each daemond-x2 node has one)."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return sum(1 for r in rows if r[3] == "0A" and int(r[1].split(":")[1], 16) == port)


def raise_nofile() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def machine_info() -> dict:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = f"{int(line.split()[1]) // 1024} MiB"
                    break
    except OSError:
        pass
    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True)
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_total": mem,
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "cc": cc.stdout.splitlines()[0] if cc.returncode == 0 and cc.stdout else "?",
        "rlimit_nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
    }


def build_loadgen(tls: bool = False) -> Path:
    binary = LOADGEN_TLS_BIN if tls else LOADGEN_BIN
    if not binary.exists() or binary.stat().st_mtime < LOADGEN_SRC.stat().st_mtime:
        cmd = ["cc", "-O2", "-Wall", "-o", str(binary), str(LOADGEN_SRC)]
        if tls:
            cmd[3:3] = ["-DLOADGEN_TLS"]
            cmd += ["-lssl", "-lcrypto"]
        print("building load generator:", " ".join(cmd), flush=True)
        r = subprocess.run(cmd)
        if r.returncode != 0:
            sys.exit("error: could not build the load generator"
                     + (" (TLS needs the OpenSSL headers: apt-get install libssl-dev)"
                        if tls else ""))
    return binary


# ------------------------------------------------------------------ servers


class ServerError(RuntimeError):
    pass


class Server:
    """One server under test, run as its own process group."""

    def __init__(self, name: str, tmp: Path, daemond: str | None = None,
                 tls: tuple[Path, Path] | None = None):
        self.name = name
        self.tls = tls  # (cert, key): speak TLS
        self.tmp = tmp
        self.daemond = daemond
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.base: dict = {}
        self.starts = 0
        self.log_path = tmp / f"{name}.log"

    def daemond_config(self, port: int, node: str = "", extra: str = "") -> Path:
        d = self.tmp / f"{self.name}{node}-{self.starts}"  # each server's nodes a state directory of their own
        (d / "state").mkdir(parents=True, exist_ok=True)
        cfg = d / "daemond.yaml"
        cfg.write_text(
            f"state_dir: {d / 'state'}\n"
            "logging:\n"
            "  level: warning\n"
            + extra +
            "listeners:\n"
            "  echo:\n"
            f"    host: {HOST}\n"
            f"    port: {port}\n"
            "    plugins: [echo]\n"
            "    max_connections: 20000\n"
            + ("    reuse_port: true\n" if node else "")
            + (f"    tls:\n      cert: {self.tls[0]}\n      key: {self.tls[1]}\n"
               if self.tls else "")
        )
        return cfg

    def argv(self, port: int) -> list[str]:
        if self.name == "daemond":
            return [self.daemond, "-c", str(self.daemond_config(port)), "--no-console"]
        if self.name in ("daemond-x2", "daemond-x2-free"):
            # two nodes on one port, each keeping its Python threads on a CPU of its own (-free:
            # not pinned at all); the shell is the process group's leader, so stop() and the CPU
            # figures take both
            cpus = sorted(os.sched_getaffinity(0))
            tuning = (lambda i: "tuning:\n  pin_threads: false\n") if self.name == "daemond-x2-free" else \
                (lambda i: f"tuning:\n  cpu: {cpus[i % len(cpus)]}\n")
            nodes = [self.daemond_config(port, f"-{n}", tuning(i)) for i, n in enumerate("ab")]
            run = " & ".join(f"{shlex.quote(self.daemond)} -c {shlex.quote(str(c))} --no-console" for c in nodes)
            return ["/bin/sh", "-c", f"{run} & wait"]
        script, *extra = BASELINE_ARGV[self.name]
        tls = ["--cert", str(self.tls[0]), "--key", str(self.tls[1])] if self.tls else []
        return [sys.executable, str(BENCH / script), HOST, str(port), *extra] + tls

    def start(self, timeout: float = 30.0) -> None:
        self.stop()
        self.starts += 1
        self.port = free_port()
        log = open(self.log_path, "ab")
        log.write(f"\n--- start #{self.starts} port {self.port}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self.argv(self.port), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, cwd=self.tmp)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited with status {self.proc.returncode}"
                                  f" during startup\n{self.log_tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"{self.name} did not accept on {HOST}:{self.port} "
                                  f"within {timeout:.0f} s\n{self.log_tail()}")
            time.sleep(0.05)
        while self.name.startswith("daemond-x2") and listening_sockets(self.port) < 2:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise ServerError(f"{self.name}: not both nodes ready within {timeout:.0f} s\n{self.log_tail()}")
            time.sleep(0.05)
        time.sleep(0.2)
        self.settle(timeout=2)
        self.base = proc_tree_stats(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        return descendants(self.proc.pid) if self.alive() else []

    def stats(self) -> dict:
        return proc_tree_stats(self.proc.pid) if self.alive() else {}

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until connections from the last run are gone (fds, threads
        back to the idle level), so runs do not overlap."""
        if not self.base:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            st = self.stats()
            if (st.get("fds", 0) <= self.base["fds"] + 1
                    and st.get("threads", 0) <= self.base["threads"] + 1):
                return
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> dict:
        """SIGTERM, then SIGKILL after `timeout` s.  Returns how long it took."""
        info = {"stop_s": 0.0, "killed": False}
        if self.proc is None:
            return info
        t0 = time.monotonic()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                info["killed"] = True
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        else:
            info["exit_status_before_stop"] = self.proc.returncode
        # stray children left in the group (none expected)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        info["stop_s"] = round(time.monotonic() - t0, 2)
        self.proc = None
        return info

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    | " + l for l in lines[-n:])


# ---------------------------------------------------------------- running


def last_json(text: str) -> dict:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON result in loadgen output: {text[-500:]!r}")


def run_echo(lg: Path, srv: Server, sc: Scenario, args) -> dict:
    spin = args.spin_us if sc.conns == 1 else 0
    if sc.hs:
        cmd = [str(lg), "hs", HOST, str(srv.port), str(sc.conns),
               str(args.duration), str(args.warmup)]
    else:
        cmd = [str(lg), "echo", HOST, str(srv.port), str(sc.conns), str(sc.size),
               str(args.duration), str(args.warmup), "-s", str(spin)]
    if srv.tls:
        cmd += ["-t", str(srv.tls[0])]
    for p in srv.pids():
        cmd += ["-p", str(p)]
    r = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=args.duration + args.warmup + 120)
    if r.returncode != 0 and not r.stdout.strip():
        raise ServerError(f"loadgen failed ({r.returncode}): {r.stderr.strip()}")
    return last_json(r.stdout)


def run_idle(lg: Path, srv: Server, args) -> dict:
    n = args.idle_conns
    cmd = [str(lg), "idle", HOST, str(srv.port), str(n), str(args.idle_timeout)]
    if srv.tls:
        cmd += ["-t", str(srv.tls[0])]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        if not line.startswith("HELD"):
            raise ServerError(f"loadgen idle: unexpected output {line!r} "
                              f"{p.stderr.read()[-500:]}")
        connected = int(line.split()[1])
        # The client side is connected; wait until the server has taken them
        # all (open fds reach the count) or stops changing, then sample.
        t0 = time.monotonic()
        target = srv.base.get("fds", 0) + connected
        last, last_change = None, time.monotonic()
        st = srv.stats()
        while time.monotonic() - t0 < args.hold_wait:
            st = srv.stats()
            if not st or st["fds"] >= target:
                break
            key = (st["fds"], st["threads"])
            if key != last:
                last, last_change = key, time.monotonic()
            elif time.monotonic() - last_change > 1.5:
                break
            time.sleep(0.1)
        time.sleep(0.3)
        held = srv.stats() or st
        settle_s = time.monotonic() - t0
        p.stdin.write("go\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=args.idle_timeout + 60)
    except BaseException:
        p.kill()
        p.wait()
        raise
    res = last_json(out)
    after = srv.stats()
    res["server_held"] = held
    res["server_after"] = after
    res["server_alive_after"] = srv.alive()
    res["hold_settle_s"] = round(settle_s, 2)
    return res


# ------------------------------------------------------------ formatting


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt_ns(ns):
    if ns is None:
        return "-"
    if ns < 1e6:
        return f"{ns / 1e3:.0f} us"
    if ns < 1e9:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def fmt_ttfe(s: dict) -> str:
    """The longest time from connect to first echo; '>' when some connection had none."""
    v = s.get("ttfe_max_ns")
    if v is None:
        return "-"
    return (">" if s.get("ttfe_missing") else "") + fmt_ns(v)


def fmt_int(v):
    return "-" if v is None else f"{v:,.0f}"


def fmt_pct(v):
    return "-" if v is None else f"{100 * v:.0f}%"


def other_cores(r: dict) -> float | None:
    """CPU (in cores) used during an echo run by neither the server nor the
    load generator nor interrupt handling: other processes on the machine."""
    try:
        busy = 1 - r["machine_idle_frac"] - r["machine_steal_frac"] - r["machine_irq_frac"]
        return max(0.0, busy * r["nproc"] - r["server_cpu_frac"] - r["loadgen_cpu_frac"])
    except (KeyError, TypeError):
        return None


def machine_busy(seconds: float = 1.0) -> float:
    """Cores busy on the machine over `seconds` (from /proc/stat)."""
    def ticks():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return sum(v), v[3] + v[4] + v[7]
    t0, i0 = ticks()
    time.sleep(seconds)
    t1, i1 = ticks()
    return (1 - (i1 - i0) / max(1, t1 - t0)) * (os.cpu_count() or 1)


class QuietWaiter:
    """Before each measurement, wait (bounded) until the machine is quiet:
    on a shared box another process's burst would land in one server's
    figures only.  At most `per_run` s per run and `total` s per benchmark."""

    QUIET_CORES = 0.15

    def __init__(self, per_run: float, total: float):
        self.per_run, self.left = per_run, total
        self.waited = 0.0
        self.not_quiet = 0

    def __call__(self) -> float:
        if self.per_run <= 0:
            return 0.0
        t0 = time.monotonic()
        budget = min(self.per_run, self.left)
        busy = machine_busy(0.2)
        while busy > self.QUIET_CORES and time.monotonic() - t0 < budget:
            time.sleep(0.3)
            busy = machine_busy(0.2)
        if busy > self.QUIET_CORES:
            self.not_quiet += 1
        spent = time.monotonic() - t0
        self.left = max(0.0, self.left - max(0.0, spent - 0.2))
        self.waited += spent
        return busy


DISTURBED_CORES = 0.25


def disturbed(r: dict) -> bool:
    return (other_cores(r) or 0.0) > DISTURBED_CORES


def summarize_echo(rounds: list[dict]) -> dict:
    measured = [r for r in rounds if "rtt_per_s" in r]
    # Rounds during which other processes used > 0.25 cores are left out of
    # the median, unless every round was disturbed.
    clean = [r for r in measured if not disturbed(r)]
    good = clean or measured
    return {
        "rounds": len(rounds),
        "rounds_used": len(good),
        "all_disturbed": bool(measured) and not clean,
        "failed_rounds": sum(1 for r in rounds if not r.get("ok")),
        "rtt_per_s": med([r.get("rtt_per_s") for r in good]),
        "rtt_per_s_all": [r.get("rtt_per_s") for r in measured],
        "disturbed_all": [disturbed(r) for r in measured],
        "p50_ns": med([r.get("lat_p50_ns") for r in good]),
        "p99_ns": med([r.get("lat_p99_ns") for r in good]),
        "p999_ns": med([r.get("lat_p999_ns") for r in good]),
        "max_ns": med([r.get("lat_max_ns") for r in good]),
        # time to first echo: the worst round counts (a newcomer starved once is starved)
        "ttfe_max_ns": max((r.get("ttfe_max_ns") or 0 for r in measured), default=None),
        "ttfe_p99_ns": med([r.get("ttfe_p99_ns") for r in good]),
        "ttfe_missing": max((r.get("ttfe_missing") or 0 for r in measured), default=0),
        "loadgen_cpu_frac": med([r.get("loadgen_cpu_frac") for r in good]),
        "server_cpu_frac": med([r.get("server_cpu_frac") for r in good]),
        "machine_idle_frac": med([r.get("machine_idle_frac") for r in good]),
        "machine_steal_frac": med([r.get("machine_steal_frac") for r in good]),
        "other_cores": med([other_cores(r) for r in good]),
        "other_cores_max": max((v for v in (other_cores(r) for r in measured) if v is not None),
                               default=None),
        "first_error": next((r.get("first_error") or r.get("error")
                             for r in rounds if r.get("first_error") or r.get("error")), ""),
    }


def summarize_idle(rounds: list[dict]) -> dict:
    good = [r for r in rounds if "answered" in r]
    all_s = [r.get("all_answered_s") for r in good]
    return {
        "rounds": len(rounds),
        "failed_rounds": sum(1 for r in rounds if not r.get("ok")),
        "connected": med([r.get("connected") for r in good]),
        "answered": med([r.get("answered") for r in good]),
        "answered_all": [r.get("answered") for r in good],
        "answered_within_5s": med([r.get("answered_within_5s") for r in good]),
        # median time, counting "not all answered" as infinitely slow
        "all_answered_s": (None if not good or sum(v is None for v in all_s) * 2 >= len(all_s)
                           else statistics.median([v if v is not None else float("inf")
                                                   for v in all_s])),
        "last_answer_s": med([r.get("last_answer_s") for r in good]),
        "p50_ns": med([r.get("lat_p50_ns") for r in good]),
        "p99_ns": med([r.get("lat_p99_ns") for r in good]),
        "connect_s": med([r.get("connect_s") for r in good]),
        "stop_killed": sum(1 for r in rounds if r.get("server_stop", {}).get("killed")),
        "rss_kib": med([r["server_held"].get("rss_kib") for r in good if r.get("server_held")]),
        "hwm_kib": med([r["server_after"].get("hwm_kib") for r in good if r.get("server_after")]),
        "threads": med([r["server_held"].get("threads") for r in good if r.get("server_held")]),
        "fds": med([r["server_held"].get("fds") for r in good if r.get("server_held")]),
        "loadgen_cpu_s": med([r.get("loadgen_cpu_s") for r in good]),
        "first_error": next((r.get("first_error") or r.get("error")
                             for r in rounds if r.get("first_error") or r.get("error")), ""),
    }


def print_echo_table(sc: Scenario, summ: dict, servers: list[str], nrounds: int,
                     tls: bool = False) -> list[str]:
    out = [f"\n## {'TLS, ' if tls and not sc.hs else ''}{sc.title}  (median of {nrounds} round{'s' * (nrounds > 1)}; "
           "* = round disturbed by other load, left out)", ""]
    out.append(f"{'server':<13} {'rtt/s':>9} {'p50':>9} {'p99':>9} {'p99.9':>9} {'max':>9} "
               f"{'1st echo':>9} {'srv CPU':>8} {'lg CPU':>7} {'other':>6}  {'rtt/s per round':<48} notes")
    for name in servers:
        s = summ.get(name)
        if s is None:
            continue
        rounds_s = " / ".join(fmt_int(v) + ("*" if d else "")
                              for v, d in zip(s["rtt_per_s_all"], s["disturbed_all"]))
        note = ""
        if s["failed_rounds"]:
            note = f"{s['failed_rounds']} round(s) with errors: {s['first_error']}; "
        if s["all_disturbed"]:
            note += (f"ALL rounds disturbed by other load (up to "
                     f"{s['other_cores_max']:.1f} cores): figures unreliable")
        elif s["rounds_used"] < s["rounds"]:
            note += f"median of {s['rounds_used']} undisturbed"
        out.append(f"{name:<13} {fmt_int(s['rtt_per_s']):>9} {fmt_ns(s['p50_ns']):>9} "
                   f"{fmt_ns(s['p99_ns']):>9} {fmt_ns(s.get('p999_ns')):>9} {fmt_ns(s.get('max_ns')):>9} "
                   f"{fmt_ttfe(s):>9} {fmt_pct(s['server_cpu_frac']):>8} "
                   f"{fmt_pct(s['loadgen_cpu_frac']):>7} {fmt_pct(s['other_cores']):>6}"
                   f"  {rounds_s:<48} {note}")
    d = summ.get("daemond")
    if d and d["rtt_per_s"]:
        parts = []
        for b in BASELINES:
            if summ.get(b) and summ[b]["rtt_per_s"]:
                ratio = d["rtt_per_s"] / summ[b]["rtt_per_s"]
                tgt = ""
                want = targets(sc, tls).get(b)
                if want is not None:
                    tgt = f" (target >= {want}: {'PASS' if ratio >= want else 'FAIL'})"
                parts.append(f"{ratio:.2f}x {b}{tgt}")
        out.append("daemond ratio: " + ", ".join(parts))
        if sc.name == "512x64" and not tls:
            first = d.get("ttfe_max_ns")
            line = (f"daemond newcomers: longest connect to first echo {fmt_ttfe(d)} (target <= "
                    f"{TARGET_TTFE_S:g} s: {'PASS' if first is not None and not d.get('ttfe_missing') and first <= TARGET_TTFE_S * 1e9 else 'FAIL'})")
            p = summ.get("protocol")
            if p and p.get("p999_ns") and d.get("p999_ns"):
                ratio = d["p999_ns"] / p["p999_ns"]
                line += (f"; p99.9 round trip {ratio:.2f}x asyncio Protocol's (target <= {TARGET_P999_VS_PROTOCOL:g}: "
                         f"{'PASS' if ratio <= TARGET_P999_VS_PROTOCOL else 'FAIL'})")
            out.append(line)
    for x2_name in ("daemond-x2", "daemond-x2-free"):
        x2 = summ.get(x2_name)
        if not x2 or not x2["rtt_per_s"]:
            continue
        parts = []
        for b in ["daemond"] + BASELINES:
            if summ.get(b) and summ[b]["rtt_per_s"]:
                ratio = x2["rtt_per_s"] / summ[b]["rtt_per_s"]
                tgt = ""
                if b == "uvloop" and sc.name == "64x64" and not tls:
                    tgt = (f" (target >= {TARGET_X2_VS_UVLOOP_64x64}: "
                           f"{'PASS' if ratio >= TARGET_X2_VS_UVLOOP_64x64 else 'FAIL'})")
                parts.append(f"{ratio:.2f}x {'one node' if b == 'daemond' else b}{tgt}")
        out.append(f"{x2_name} (two nodes, reuse_port) ratio: " + ", ".join(parts))
    return out


ISSUE21_NAMES = {"daemond": "daemond", "threads": "bare threads", "socketserver": "socketserver",
                 "asyncio": "asyncio streams", "protocol": "asyncio Protocol", "uvloop": "uvloop"}


def print_issue21_table(echo: dict, idle: dict, servers: list[str], args) -> list[str]:
    """The issue-21 table: every server side by side, and daemond's ratio to asyncio's
    Protocol and to uvloop (for rtt/s higher is better, for times lower is better)."""
    order = ["daemond"] + [n for n in servers if n != "daemond"]
    refs = [n for n in ("protocol", "uvloop") if n in servers and "daemond" in servers]
    head = ["scenario"] + [ISSUE21_NAMES[n] for n in order] + [f"daemond / {ISSUE21_NAMES[r]}" for r in refs]
    rows: list[list[str]] = []

    def row(label: str, values: dict, fmt, lower_better: bool = False) -> None:
        cells = [label] + [fmt(values.get(n)) for n in order]
        for ref in refs:
            d, b = values.get("daemond"), values.get(ref)
            cells.append(f"{d / b:.2f}x" if d and b else "-")
        rows.append(cells)

    def sec(ns):
        return "-" if ns is None else f"{ns / 1e9:.2f} s" if ns >= 1e8 else fmt_ns(ns)

    for name, e in echo.items():
        summ = e["summary"]
        sc = SCEN_BY_NAME[name]
        label = sc.title.replace(" conns x ", " x ").replace(" conn x ", " conn x ")
        row(f"{label} rtt/s", {n: s["rtt_per_s"] for n, s in summ.items()}, fmt_int)
    for name, e in echo.items():
        summ = e["summary"]
        sc = SCEN_BY_NAME[name]
        if sc.conns < 64:
            continue
        label = sc.title.replace(" conns x ", " x ")
        firsts = {}
        for n, s in summ.items():
            if s.get("ttfe_max_ns") is not None:
                firsts[n] = s["ttfe_max_ns"]
        cells = [f"{label}: longest connect to first echo"] + [
            fmt_ttfe(summ[n]) if n in summ else "-" for n in order]
        for ref in refs:
            d, b = firsts.get("daemond"), firsts.get(ref)
            cells.append(f"{d / b:.2f}x" if d and b else "-")
        rows.append(cells)
        row(f"{label}: p99.9 round trip", {n: s.get("p999_ns") for n, s in summ.items()}, sec, True)
        row(f"{label}: longest round trip", {n: s.get("max_ns") for n, s in summ.items()}, sec, True)
    if idle.get("summary"):
        summ = idle["summary"]
        row(f"{args.idle_conns:,} idle held, peak RSS MiB",
            {n: (s.get("hwm_kib") or s.get("rss_kib") or 0) / 1024 or None for n, s in summ.items()},
            lambda v: "-" if v is None else f"{v:.0f}", True)
        row(f"{args.idle_conns:,} idle: all echoes in",
            {n: s.get("all_answered_s") for n, s in summ.items()},
            lambda v: "-" if v is None else f"{v:.2f} s", True)
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    out = ["\n## Issue 21: side by side (rtt/s: higher is better; times and MiB: lower is better)", "",
           "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    return out


def print_idle_table(summ: dict, servers: list[str], args) -> list[str]:
    n = args.idle_conns
    out = [f"\n## {n:,} idle {'TLS ' if getattr(args, 'tls', False) else ''}connections held, then 1 byte sent on each at once "
           f"(timeout {args.idle_timeout:g} s; median of {args.idle_rounds} round"
           f"{'s' * (args.idle_rounds > 1)})", ""]
    out.append(f"{'server':<13} {'connect':>8} {'answered':>9} {'<=5s':>7} {'all in':>8} "
               f"{'p50':>8} {'p99':>8} {'RSS MiB':>8} {'threads':>8} {'fds':>7}  notes")
    for name in servers:
        s = summ.get(name)
        if s is None:
            continue
        all_in = ("-" if s["all_answered_s"] is None else f"{s['all_answered_s']:.2f} s")
        rss = "-" if s["rss_kib"] is None else f"{s['rss_kib'] / 1024:.0f}"
        note = ""
        if len(set(s["answered_all"])) > 1:
            note = ("answered per round: " + " / ".join(fmt_int(v) for v in s["answered_all"])
                    + "; ")
        if s["failed_rounds"] and s["first_error"]:
            note += f" error: {s['first_error']}"
        conn = "-" if s["connect_s"] is None else f"{s['connect_s']:.1f} s"
        if s["connected"] is not None and s["connected"] < n:
            note += f"only {s['connected']:,.0f} connected; "
        if s["stop_killed"]:
            note += (f"needed SIGKILL in {s['stop_killed']} round(s) "
                     "(still running 5 s after SIGTERM); ")
        out.append(f"{name:<13} {conn:>8} {fmt_int(s['answered']):>9} "
                   f"{fmt_int(s['answered_within_5s']):>7} {all_in:>8} {fmt_ns(s['p50_ns']):>8} "
                   f"{fmt_ns(s['p99_ns']):>8} {rss:>8} {fmt_int(s['threads']):>8} "
                   f"{fmt_int(s['fds']):>7}  {note}")
    d = summ.get("daemond")
    if d and d["answered"] is not None:
        rss_target = TLS_TARGET_IDLE_RSS_MIB if getattr(args, "tls", False) else TARGET_IDLE_RSS_MIB
        rss_ok = d["rss_kib"] is not None and d["rss_kib"] / 1024 <= rss_target
        all_target = TLS_TARGET_IDLE_ALL_S if getattr(args, "tls", False) else TARGET_IDLE_ALL_S
        all_ok = d["all_answered_s"] is not None and d["all_answered_s"] <= all_target
        out.append(f"daemond targets: RSS <= {rss_target} MiB: "
                   f"{'PASS' if rss_ok else 'FAIL'}; all {n:,} answered within "
                   f"{all_target:g} s: {'PASS' if all_ok else 'FAIL'}"
                   + ("" if n == 10000 else
                      f"  (NB: the targets are for 10,000 connections, this run held {n:,})"))
    return out


# ------------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Echo benchmark: daemond vs bare threads, socketserver, asyncio.")
    ap.add_argument("--duration", type=float, default=None,
                    help="measured seconds per echo run (default 2, --quick 1)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="unmeasured seconds before each echo run (default 0.5, --quick 0.3)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="rounds per scenario and server, median taken (default 5, --quick 1)")
    ap.add_argument("--idle-rounds", type=int, default=None,
                    help="rounds of the idle scenario (default: --rounds, at most 3)")
    ap.add_argument("--quick", action="store_true", help="fast smoke run (< 1 minute)")
    ap.add_argument("--tls", action="store_true",
                    help="every server speaks TLS (certificate made for the run); "
                         f"servers {','.join(TLS_SERVERS)}, scenarios {','.join(TLS_SCENARIOS)}")
    ap.add_argument("--servers", default=None,
                    help=f"comma-separated subset of {','.join(ALL_SERVERS)}")
    ap.add_argument("--scenarios", default=None,
                    help=f"comma-separated subset of {','.join(s.name for s in SCENARIOS)}")
    ap.add_argument("--idle-conns", type=int, default=None,
                    help="connections held in the idle scenario (default 10000, --quick 2000)")
    ap.add_argument("--idle-timeout", type=float, default=None,
                    help="seconds to wait for the idle echoes (default 20, --quick 5)")
    ap.add_argument("--hold-wait", type=float, default=20.0,
                    help="max seconds to wait for the server to accept all idle "
                         "connections before sampling RSS (default 20)")
    ap.add_argument("--spin-us", type=float, default=1000.0,
                    help="in the 1-connection scenario the load generator busy-polls "
                         "this long before sleeping, so that its own wake-up latency "
                         "is not measured (default 1000; 0 disables)")
    ap.add_argument("--wait-quiet", type=float, default=None, metavar="S",
                    help="before each run wait up to S s for the machine to be idle "
                         "(other processes < 0.15 cores), at most 60 s in all "
                         "(default 10, --quick 0 = off)")
    ap.add_argument("--daemond", default=None,
                    help="daemond executable (default: next to sys.executable, then PATH)")
    ap.add_argument("--report", metavar="FILE",
                    help="run nothing; print the tables again from a --json file")
    ap.add_argument("--json", nargs="?", const="", default=None, metavar="FILE",
                    help="also write all results as JSON (default file: "
                         "bench/results/echo-<timestamp>.json; relative names go there too)")
    ap.add_argument("--issue21", action="store_true",
                    help="the issue-21 measurement: 4 s runs after 0.5 s warm-up, 2 rounds, "
                         "every scenario (options given explicitly still win)")
    a = ap.parse_args(argv)
    if a.issue21:
        a.duration = 4.0 if a.duration is None else a.duration
        a.warmup = 0.5 if a.warmup is None else a.warmup
        a.rounds = 2 if a.rounds is None else a.rounds
    q = a.quick
    a.duration = a.duration if a.duration is not None else (1.0 if q else 2.0)
    a.warmup = a.warmup if a.warmup is not None else (0.3 if q else 0.5)
    a.rounds = a.rounds if a.rounds is not None else (1 if q else 5)
    a.idle_rounds = a.idle_rounds if a.idle_rounds is not None else min(a.rounds, 3)
    a.idle_timeout = a.idle_timeout if a.idle_timeout is not None else (5.0 if q else 20.0)
    a.idle_conns = a.idle_conns if a.idle_conns is not None else (2000 if q else 10000)
    a.wait_quiet = a.wait_quiet if a.wait_quiet is not None else (0.0 if q else 10.0)
    servers_ok = TLS_SERVERS if a.tls else ALL_SERVERS
    scen_ok = TLS_SCENARIOS if a.tls else [s.name for s in SCENARIOS if not s.hs]
    default_servers = TLS_SERVERS if a.tls else DEFAULT_SERVERS
    a.servers = [s.strip() for s in (a.servers or ",".join(default_servers)).split(",") if s.strip()]
    scen_default = TLS_DEFAULT_SCENARIOS if a.tls else scen_ok
    a.scenarios = [s.strip() for s in (a.scenarios or ",".join(scen_default)).split(",") if s.strip()]
    for s in a.servers:
        if s not in servers_ok:
            ap.error(f"unknown server {s!r}{' with --tls' if a.tls else ''}; "
                     f"choose from {','.join(servers_ok)}")
    for s in a.scenarios:
        if s not in scen_ok:
            ap.error(f"unknown scenario {s!r}{' with --tls' if a.tls else ''}; "
                     f"choose from {','.join(scen_ok)}")
    if (a.duration <= 0 or a.warmup < 0 or a.rounds < 1 or a.idle_rounds < 1
            or a.idle_conns < 1 or a.idle_timeout <= 0):
        ap.error("duration, rounds, idle-conns and idle-timeout must be positive")
    return a


def report_from_json(path: str) -> int:
    """Print the tables again from a --json file (e.g. after changing the
    summary rules, or to paste into the README)."""
    p = Path(path)
    if not p.exists() and (RESULTS / path).exists():
        p = RESULTS / path
    res = json.loads(p.read_text())
    a = argparse.Namespace(**res["args"])
    m = res["machine"]
    print(f"date: {m['date']}")
    print(f"machine: {m['nproc']} CPUs, {m['cpu_model']}, {m.get('mem_total', '?')}, "
          f"Linux {m.get('kernel', '?')}; {m['python']}; load generator built with {m['cc']}")
    print(f"echo runs: {a.duration:g} s measured after {a.warmup:g} s warm-up, {a.rounds} "
          f"round(s), interleaved; idle: {a.idle_conns:,} conns, timeout "
          f"{a.idle_timeout:g} s, {a.idle_rounds} round(s); total time {res.get('elapsed_s')} s")
    seen = set()
    for e in res["echo"].values():
        seen.update(n for n, v in e["rounds"].items() if v)
    seen.update(n for n, v in res.get("idle", {}).get("rounds", {}).items() if v)
    servers = [n for n in ALL_SERVERS if n in seen]
    lines: list[str] = []
    for name, e in res["echo"].items():
        summ = {n: summarize_echo(v) for n, v in e["rounds"].items() if v}
        lines += print_echo_table(SCEN_BY_NAME[name], summ, servers, a.rounds,
                                  getattr(a, "tls", False))
    if res.get("idle", {}).get("rounds"):
        summ = {n: summarize_idle(v) for n, v in res["idle"]["rounds"].items() if v}
        lines += print_idle_table(summ, servers, a)
    if not getattr(a, "tls", False):
        echo = {name: {"summary": {n: summarize_echo(v) for n, v in e["rounds"].items() if v}}
                for name, e in res["echo"].items()}
        idle = {"summary": {n: summarize_idle(v) for n, v in res.get("idle", {}).get("rounds", {}).items() if v}}
        lines += print_issue21_table(echo, idle, servers, a)
    for line in lines:
        print(line)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report:
        return report_from_json(args.report)
    t_start = time.monotonic()
    nofile = raise_nofile()
    if args.idle_conns + 100 > nofile[0] and "idle" in args.scenarios:
        print(f"warning: RLIMIT_NOFILE is {nofile[0]}, below --idle-conns "
              f"{args.idle_conns}; the idle scenario will fail to connect them all",
              file=sys.stderr)
    lg = build_loadgen(args.tls)
    info = machine_info()
    info["busy_cores_before"] = round(machine_busy(1.0), 2)

    servers = sorted(set(args.servers), key=ALL_SERVERS.index)
    daemond = None
    skipped = {}
    if any(name.startswith("daemond") for name in servers):
        daemond = find_daemond(args.daemond)
        if daemond is None:
            msg = ("daemond executable not found (looked next to "
                   f"{sys.executable} and on PATH); skipping daemond, "
                   "running the baselines only")
            print("NOTE:", msg, flush=True)
            for name in ("daemond", "daemond-x2", "daemond-x2-free"):
                if name in servers:
                    skipped[name] = msg
                    servers.remove(name)
    if not servers:
        print("nothing to run: no server left", file=sys.stderr)
        return 2
    scenarios = [SCEN_BY_NAME[n] for n in args.scenarios]
    # keep the canonical order
    scenarios.sort(key=SCENARIOS.index)
    echo_scen = [s for s in scenarios if not s.idle]

    header = [
        "# daemond " + ("TLS " if args.tls else "") + "echo benchmark",
        "",
        f"date: {info['date']}",
        f"machine: {info['nproc']} CPUs, {info['cpu_model']}, {info['mem_total']}, "
        f"Linux {info['kernel']}",
        f"python: {info['python']} ({info['python_executable']})",
        f"load generator: {lg.name} ({info['cc']}), single-threaded epoll"
        + (", OpenSSL client verifying the run's ECDSA P-256 (hs-rsa: RSA-2048) certificate"
           if args.tls else "")
        + ", "
        f"RLIMIT_NOFILE {nofile[0]}",
        f"servers: {', '.join(servers)}"
        + (f" (daemond: {daemond})" if daemond else ""),
        f"echo runs: {args.duration:g} s measured after {args.warmup:g} s warm-up, "
        f"{args.rounds} round(s), interleaved; idle: {args.idle_conns:,} conns, "
        f"timeout {args.idle_timeout:g} s, {args.idle_rounds} round(s)",
    ]
    if info["busy_cores_before"] > 0.2:
        header.append(f"WARNING: before starting, {info['busy_cores_before']:.1f} of "
                      f"{info['nproc']} cores were busy with other work; the figures "
                      "will be disturbed (see the 'other' column)")
    for line in header:
        print(line)
    for msg in skipped.values():
        print("NOTE:", msg)
    sys.stdout.flush()

    results: dict = {"machine": info, "args": {k: v for k, v in vars(args).items()},
                     "daemond": daemond, "skipped": skipped, "echo": {}, "idle": {}}
    report: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="daemond-bench-"))
    certs = {kind: make_certificate(tmp, kind) for kind in ("ec", "rsa")} if args.tls else {}
    srv_objs = {name: Server(name, tmp, daemond, certs.get("ec")) for name in servers}

    def use_key(kind: str) -> None:
        """Serve the `kind` certificate from now on (restarting servers that had the other)."""
        for s in srv_objs.values():
            if args.tls and s.tls != certs[kind]:
                s.stop()
                s.tls = certs[kind]
    quiet = QuietWaiter(args.wait_quiet, 60.0)
    broken: dict[str, str] = {}

    def ensure_running(s: Server) -> bool:
        if s.name in broken:
            return False
        if s.alive():
            return True
        if s.proc is not None:
            print(f"  ! {s.name} died (status {s.proc.returncode}), restarting\n"
                  f"{s.log_tail()}", flush=True)
        try:
            s.start()
            return True
        except ServerError as e:
            broken[s.name] = str(e).splitlines()[0]
            print(f"  ! {e}\n  ! giving up on {s.name}", flush=True)
            return False

    try:
        # ---------------- echo scenarios, servers kept running
        if echo_scen:
            for s in srv_objs.values():
                ensure_running(s)
        for sc in echo_scen:
            use_key(sc.key)
            print(f"\n[{sc.title}]", flush=True)
            rounds: dict[str, list] = {n: [] for n in servers}
            for r in range(args.rounds):
                for name in servers:
                    s = srv_objs[name]
                    if not ensure_running(s):
                        continue
                    s.settle()
                    busy_before = quiet()
                    try:
                        res = run_echo(lg, s, sc, args)
                    except (ServerError, subprocess.TimeoutExpired, ValueError) as e:
                        res = {"ok": False, "error": str(e)}
                    res["busy_cores_before"] = round(busy_before, 2)
                    if not s.alive():
                        res["ok"] = False
                        res.setdefault("error", "server died during the run")
                    rounds[name].append(res)
                    print(f"  round {r + 1} {name:<13} "
                          + (f"{res['rtt_per_s']:>10,.0f} rtt/s  p50 {fmt_ns(res['lat_p50_ns'])}"
                             f"  p99 {fmt_ns(res['lat_p99_ns'])}"
                             f"  lg CPU {fmt_pct(res.get('loadgen_cpu_frac'))}"
                             f"  srv CPU {fmt_pct(res.get('server_cpu_frac'))}"
                             f"  other {fmt_pct(other_cores(res))}"
                             if "rtt_per_s" in res else "")
                          + (f"  {res['tls']}" if res.get("tls") else "")
                          + ("" if res.get("ok") else
                             f"  ERROR {res.get('first_error') or res.get('error')}"),
                          flush=True)
            summ = {n: summarize_echo(v) for n, v in rounds.items() if v}
            results["echo"][sc.name] = {"title": sc.title, "conns": sc.conns,
                                        "size": sc.size, "summary": summ, "rounds": rounds}
            report += print_echo_table(sc, summ, servers, args.rounds, args.tls)
        for s in srv_objs.values():
            s.stop()

        # ---------------- idle scenario, fresh server process per run
        if any(sc.idle for sc in scenarios):
            sc = SCEN_BY_NAME["idle"]
            use_key(sc.key)
            print(f"\n[{args.idle_conns:,} idle connections]", flush=True)
            rounds = {n: [] for n in servers}
            for r in range(args.idle_rounds):
                for name in servers:
                    s = srv_objs[name]
                    s.proc = None  # a fresh process; a death earlier is not this run's
                    if not ensure_running(s):
                        continue
                    busy_before = quiet()
                    try:
                        res = run_idle(lg, s, args)
                    except (ServerError, subprocess.TimeoutExpired, ValueError) as e:
                        res = {"ok": False, "error": str(e)}
                    finally:
                        stop = s.stop(timeout=5)
                    res["server_stop"] = stop
                    res["busy_cores_before"] = round(busy_before, 2)
                    rounds[name].append(res)
                    if "answered" in res:
                        held = res.get("server_held", {})
                        all_s = res.get("all_answered_s")
                        print(f"  round {r + 1} {name:<13} connected {res['connected']:,} "
                              f"answered {res['answered']:,} "
                              f"(<=5s {res['answered_within_5s']:,}) "
                              + (f"all in {all_s:.2f} s" if all_s is not None else
                                 f"NOT all within {args.idle_timeout:g} s")
                              + f"  RSS {held.get('rss_kib', 0) / 1024:.0f} MiB"
                              f"  threads {held.get('threads', 0):,}"
                              f"  fds {held.get('fds', 0):,}"
                              + f"  connect {res.get('connect_s', 0):.1f} s"
                              + ("" if res.get("server_alive_after", True)
                                 else "  SERVER DIED")
                              + ("  (needed SIGKILL: still running 5 s after SIGTERM)"
                                 if stop.get("killed") else ""),
                              flush=True)
                    else:
                        print(f"  round {r + 1} {name:<13} ERROR {res.get('error')}", flush=True)
            summ = {n: summarize_idle(v) for n, v in rounds.items() if v}
            results["idle"] = {"conns": args.idle_conns, "timeout_s": args.idle_timeout,
                               "summary": summ, "rounds": rounds}
            report += print_idle_table(summ, servers, args)
        if not args.tls:
            report += print_issue21_table(results["echo"], results["idle"], servers, args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        for s in srv_objs.values():
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    elapsed = time.monotonic() - t_start
    print()
    for line in header:
        print(line)
    print("\nrtt/s = completed request/response round trips per second over all "
          "connections; p50/p99 = per-round-trip latency; srv CPU / lg CPU = CPU time "
          "of the server / load generator per wall second (100% = one core; softirq "
          "time is not included); other = CPU used by other processes on the machine "
          "during the run (median; should be ~0%); rounds where it exceeded "
          f"{DISTURBED_CORES:g} cores are marked * and left out of the medians.")
    if args.spin_us and any(s.conns == 1 for s in echo_scen):
        print(f"(1-connection runs: the load generator busy-polls for {args.spin_us:g} us, "
              "so its lg CPU is ~100% there by design.)")
    for line in report:
        print(line)
    for name, why in {**skipped, **broken}.items():
        print(f"\nNOTE: {name}: {why}")
    if quiet.per_run > 0:
        print(f"\nwaited {quiet.waited:.0f} s in all for a quiet machine"
              + (f"; {quiet.not_quiet} run(s) started while other processes were busy"
                 if quiet.not_quiet else ""))
    print(f"total time {elapsed:.0f} s")
    results["elapsed_s"] = round(elapsed, 1)
    results["broken"] = broken
    results["quiet_wait"] = {"waited_s": round(quiet.waited, 1), "not_quiet_runs": quiet.not_quiet}

    if args.json is not None:
        path = Path(args.json) if args.json else Path(
            f"echo{'-tls' if args.tls else ''}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
        if not path.is_absolute() and path.parent == Path("."):
            path = RESULTS / path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"results written to {path}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
