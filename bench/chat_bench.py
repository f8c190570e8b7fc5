"""Chat fan-out benchmark: daemond's chat plugin against a chat on asyncio streams.

Starts each server as a subprocess on a free loopback port and drives it with
``chat_loadgen`` (C, epoll; built from bench/chat_loadgen.c with ``cc -O2``),
interleaving the servers round by round so that drift on the machine hits both
alike. Prints one table per scenario with medians over the rounds and the
daemond/asyncio ratio. See bench/README-chat.md for what is measured and why.

    python bench/chat_bench.py                  # full run
    python bench/chat_bench.py --quick          # smoke run: small and short
    python bench/chat_bench.py --scenarios steady,idle --rounds 3 --json out.json
    python bench/chat_bench.py --pin --scenarios steady   # server on CPU 0, load on CPU 1
    python bench/chat_bench.py --scenarios rooms --rounds 5  # 100 rooms × 10 users
    python bench/chat_bench.py --servers daemond,daemond-irc --scenarios steady,blast   # half the users on IRC
    python bench/chat_bench.py --tls --scenarios steady    # every user over TLS (issue 22)
    python bench/chat_bench.py --servers daemond,daemond-c1,daemond-c2,daemond-c3 --scenarios steady,blast
                                   # cluster mode: 1-3 nodes on one port, rooms in Redis (issue 25)

With ``--tls`` both servers speak TLS with one ECDSA P-256 certificate made for
the run, and the load generator is chat_loadgen.c built with -DLOADGEN_TLS
(``chat_loadgen_tls.bin``): every user does a full handshake, verifying it.

Scenarios:

* ``steady``: 1,000 users, 10 senders, 100 messages/s in total for
  ``--duration`` seconds: deliveries/s and latency p50/p99 (send → each
  receiver, and send → the last receiver of each message);
* ``blast``: 1,000 users, 10 senders write 2,000 messages at once: the
  deliveries/s a server sustains when it cannot keep up;
* ``idle``: 10,000 logged-in users (``--idle-users``), the server's RSS, then
  5 messages from one user 1 s apart: each goes to 9,999 receivers;
* ``rooms``: 100 rooms × 10 users (``--rooms``, ``--room-users``); each user
  joins its room with ``/join #rNNN``; every user sends in turn,
  ``--room-rate`` messages/s in total (open loop) for ``--duration``
  seconds, each to the 9 other members of its room (``MSG #rNNN name text``);
* ``newcomers``: the steady scenario, and half-way through it 100 more users
  (``--newcomers``) connect and log in while the room is busy: the time from
  each one's connect to its login's ``+OK`` and to the first message it
  receives (max and p99 over the newcomers), next to asyncio's;
* ``rooms-blast``: the same rooms, every user writes its share of
  ``--room-rate`` × ``--duration`` messages at once: the room deliveries/s a
  server sustains when it cannot keep up.

The server ``daemond-irc`` is daemond with half the users (every other one,
and half the senders) on its IRC listener (the ``irc`` plugin, guests
allowed) instead: compare it with ``daemond`` (both run the same config) for
what the IRC front end costs (steady and blast only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import find_daemond, make_certificate  # bench/common.py (the script's own directory is on sys.path)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOADGEN_SRC = HERE / "chat_loadgen.c"
LOADGEN_BIN = HERE / "chat_loadgen.bin"
LOADGEN_TLS_BIN = HERE / "chat_loadgen_tls.bin"
BASELINE = HERE / "baseline_chat_asyncio.py"
ANNOUNCE_LIMIT = 1000  # both servers: no JOIN storm while 10,000 users log in
ROOM_RATE = 1000.0  # messages/s of the rooms scenario (1 per user per second): 9,000 deliveries/s
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the load generator -------------------------------------------------------


def build_loadgen(tls: bool = False) -> Path:
    binary = LOADGEN_TLS_BIN if tls else LOADGEN_BIN
    if not binary.exists() or binary.stat().st_mtime < LOADGEN_SRC.stat().st_mtime:
        tls_flags = (["-DLOADGEN_TLS"], ["-lssl", "-lcrypto"]) if tls else ([], [])
        r = subprocess.run(["cc", "-O2", "-Wall", *tls_flags[0], "-o", str(binary), str(LOADGEN_SRC), *tls_flags[1]])
        if r.returncode:
            sys.exit("could not build the load generator" + (" (TLS needs libssl-dev)" if tls else ""))
    return binary


# -- the servers ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: ``--pin``: the server on CPU 0, the load generator on CPU 1 (``taskset``)
PIN: dict[str, list[str]] = {"server": [], "loadgen": []}
#: ``--tls``: (certificate, key) both servers use, and the load generator's binary
TLS: dict[str, object] = {"pair": None, "loadgen": LOADGEN_BIN}


class Server:
    name = "?"

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self) -> None:
        self.port = free_port()
        self.log = open(self.workdir / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(PIN["server"] + self.argv(), stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=self.env(), cwd=self.workdir,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}; see {self.log.name}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen within 30 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def threads(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        return 0

    def cpu_s(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the server process, all threads."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


class Daemond(Server):
    name = "daemond"
    #: ``--daemond-tuning``: the config's ``tuning:`` section (empty: daemond's defaults)
    tuning: dict = {}
    irc_port = 0

    def loadgen_args(self) -> list[str]:
        return []

    def argv(self) -> list[str]:
        state = self.workdir / "daemond-state"
        if state.exists():
            shutil.rmtree(state)  # a fresh history each run
        config = self.workdir / "daemond.yaml"
        self.irc_port = free_port()
        common = {"host": "127.0.0.1", "max_connections": 20000, "idle_timeout": 0, "backlog": 4096,
                  "max_logged_in_per_ip": None, "max_unauthenticated_per_ip": None}  # all from 127.0.0.1
        if TLS["pair"]:
            common["tls"] = {"cert": str(TLS["pair"][0]), "key": str(TLS["pair"][1])}
        config.write_text(json.dumps({  # JSON is YAML
            "state_dir": str(state),
            "logging": {"level": "warning", "file": "daemond.log"},
            "listeners": {"chat": {**common, "port": self.port, "plugins": ["tests.plugins.fakelogin", "chat"]},
                          # the same in every daemond run: only daemond-irc's load generator uses it
                          "irc": {**common, "port": self.irc_port, "plugins": ["irc"]}},
            "plugins": {"chat": {"rate": 0, "replay": 0, "announce_limit": ANNOUNCE_LIMIT},
                        "auth": {},  # irc needs it loaded (its users; guests here)
                        "irc": {"guests": True}},
            **({"tuning": self.tuning} if self.tuning else {}),
        }, indent=1))
        return [find_daemond() or sys.exit("daemond is not installed: pip install -e . first"),
                "-c", str(config), "--no-console"]

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT)}  # for the name-only login plugin


class DaemondIrc(Daemond):
    """The same daemond; half of the load generator's users come through IRC."""

    name = "daemond-irc"

    def loadgen_args(self) -> list[str]:
        return ["-I", str(self.irc_port)]


class DaemondCluster(Daemond):
    """``daemond-cN``: N daemond nodes sharing the chat port (``reuse_port``: the kernel spreads
    the users over them) and their rooms through a redis-server of the run's own
    (``appendonly yes``, ``appendfsync always``, as docs/cluster.md recommends); each node's
    Python on CPU ``i % cpus``. Its RSS, threads and CPU are the nodes' and Redis's summed."""

    nodes = 1

    def start(self) -> None:
        self.port = free_port()
        redis_port = free_port()
        redis_dir = self.workdir / "redis"
        if redis_dir.exists():
            shutil.rmtree(redis_dir)
        redis_dir.mkdir(parents=True)
        self.log = open(self.workdir / f"{self.name}.log", "ab")
        self.procs = [subprocess.Popen(
            [shutil.which("redis-server") or sys.exit("redis-server is not installed"), "--port", str(redis_port),
             "--bind", "127.0.0.1", "--dir", str(redis_dir), "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--unixsocket", ""],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)]
        time.sleep(0.3)
        base = super().argv()  # writes daemond.yaml for one node; each node gets its own copy
        config = json.loads((self.workdir / "daemond.yaml").read_text())
        for i in range(self.nodes):
            node = dict(config, state_dir=f"{config['state_dir']}-{i}")
            node["cluster"] = {"redis": f"redis://127.0.0.1:{redis_port}/0", "node": f"n{i}"}
            node["tuning"] = {**node.get("tuning", {}), "cpu": i % (os.cpu_count() or 1)}
            for listener in node["listeners"].values():
                listener["reuse_port"] = True
            path = self.workdir / f"node{i}.yaml"
            path.write_text(json.dumps(node, indent=1))
            self.procs.append(subprocess.Popen(PIN["server"] + [base[0], "-c", str(path), "--no-console"],
                                               stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                               env=self.env(), cwd=self.workdir, start_new_session=True))
            self._wait_listening(self.procs[-1], i + 1)
        self.proc = self.procs[1]

    def _wait_listening(self, proc, count: int) -> None:
        """Until ``count`` sockets listen on the chat port (each node has its own: reuse_port)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {proc.returncode}; see {self.log.name}")
            listening = sum(1 for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                            if line.split()[1].endswith(f":{self.port:04X}") and line.split()[3] == "0A")
            if listening >= count:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start within 30 s")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        self.log.close()

    def _status(self, field: str) -> float:
        total = 0.0
        for proc in self.procs:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1])
        return total

    def rss_mib(self) -> float:
        return self._status("VmRSS:") / 1024

    def threads(self) -> int:
        return int(self._status("Threads:"))

    def cpu_s(self) -> tuple[float, float]:
        user = system = 0.0
        for proc in self.procs:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            user, system = user + int(fields[11]) / CLK_TCK, system + int(fields[12]) / CLK_TCK
        return user, system


def cluster_of(count: int) -> type[DaemondCluster]:
    return type(f"DaemondC{count}", (DaemondCluster,), {"name": f"daemond-c{count}", "nodes": count})


class Asyncio(Server):
    name = "asyncio"

    def argv(self) -> list[str]:
        db = self.workdir / "asyncio-chat.db"
        for path in self.workdir.glob("asyncio-chat.db*"):
            path.unlink()
        return [sys.executable, str(BASELINE), "127.0.0.1", str(self.port),
                "--announce-limit", str(ANNOUNCE_LIMIT), "--db", str(db)] + (
                    ["--cert", str(TLS["pair"][0]), "--key", str(TLS["pair"][1])] if TLS["pair"] else [])


# -- one run -------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    mode: str
    clients: int
    senders: int
    messages: int
    rate: float = 100.0
    interval: float = 1.0
    timeout: float = 60.0
    rooms: int = 0  # > 0: client i joins #r<i % rooms> and speaks there
    newcomers: int = 0  # > 0: this many more users connect and log in half-way through


def run(server: Server, scenario: Scenario) -> dict:
    server.start()
    try:
        argv = PIN["loadgen"] + [
            str(TLS["loadgen"]), "127.0.0.1", str(server.port), scenario.mode, "-n", str(scenario.clients),
            "-s", str(scenario.senders), "-m", str(scenario.messages), "-r", str(scenario.rate),
            "-i", str(scenario.interval), "-t", str(scenario.timeout), "-w"]
        if scenario.rooms:
            argv += ["-R", str(scenario.rooms)]
        argv += server.loadgen_args() if isinstance(server, Daemond) else []
        if TLS["pair"]:
            argv += ["-T", str(TLS["pair"][0])]
        if scenario.newcomers:
            argv += ["-N", str(scenario.newcomers)]
        gen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            ready = gen.stdout.readline().split()
            if not ready or ready[0] != "READY":
                raise RuntimeError(f"load generator failed: {ready} {gen.stderr.read()[-2000:]}")
            time.sleep(1.0)  # let the server settle before its memory is read
            held = {"rss_mib": round(server.rss_mib(), 1), "threads": server.threads(),
                    "load_average": os.getloadavg()[0]}
            user0, sys0 = server.cpu_s()
            gen.stdin.write("GO\n")
            gen.stdin.flush()
            out, err = gen.communicate(timeout=scenario.timeout + 600)
        finally:
            if gen.poll() is None:
                gen.kill()
                gen.wait()
        result = json.loads(out.strip().splitlines()[-1])
        user1, sys1 = server.cpu_s()
        result["server_cpu_s"] = round(user1 - user0 + sys1 - sys0, 3)
        if result["deliveries"]:
            result["server_user_us"] = round((user1 - user0) / result["deliveries"] * 1e6, 2)
            result["server_cpu_us"] = round((user1 - user0 + sys1 - sys0) / result["deliveries"] * 1e6, 2)
        result.update(held)
        if err.strip():
            result["loadgen_stderr"] = err.strip()[-500:]
        return result
    finally:
        server.stop()


# -- reporting -------------------------------------------------------------------


METRICS = {
    "rooms": [("deliveries/s", "deliveries_per_s", "{:,.0f}"), ("latency p50 ms", "latency_ms.p50", "{:.2f}"),
              ("latency p99 ms", "latency_ms.p99", "{:.2f}"), ("all-received p99 ms", "fanout_ms.p99", "{:.2f}"),
              ("lost", "lost", "{:.0f}"), ("wrong-room lines", "bad_lines", "{:.0f}"),
              ("server CPU µs/delivery", "server_cpu_us", "{:.2f}"),
              ("of which user µs", "server_user_us", "{:.2f}"), ("loadgen CPU s", "loadgen_cpu_s", "{:.2f}"),
              ("load average at start", "load_average", "{:.1f}")],
    "rooms-blast": [("deliveries/s", "deliveries_per_s", "{:,.0f}"), ("latency p50 ms", "latency_ms.p50", "{:.1f}"),
                    ("latency p99 ms", "latency_ms.p99", "{:.1f}"), ("lost", "lost", "{:.0f}"),
                    ("wrong-room lines", "bad_lines", "{:.0f}"), ("server CPU µs/delivery", "server_cpu_us", "{:.2f}"),
                    ("of which user µs", "server_user_us", "{:.2f}"), ("loadgen CPU s", "loadgen_cpu_s", "{:.2f}"),
                    ("load average at start", "load_average", "{:.1f}")],
    "steady": [("deliveries/s", "deliveries_per_s", "{:,.0f}"), ("latency p50 ms", "latency_ms.p50", "{:.2f}"),
               ("latency p99 ms", "latency_ms.p99", "{:.2f}"), ("all-received p99 ms", "fanout_ms.p99", "{:.2f}"),
               ("lost", "lost", "{:.0f}"), ("server CPU µs/delivery", "server_cpu_us", "{:.2f}"),
               ("of which user µs", "server_user_us", "{:.2f}"), ("loadgen CPU s", "loadgen_cpu_s", "{:.2f}"),
               ("load average at start", "load_average", "{:.1f}")],
    "newcomers": [("deliveries/s", "deliveries_per_s", "{:,.0f}"), ("latency p99 ms", "latency_ms.p99", "{:.2f}"),
                  ("newcomers logged in", "newcomers_logged_in", "{:.0f}"),
                  ("newcomers with a message", "newcomers_got_msg", "{:.0f}"),
                  ("connect to login p50 ms", "newcomer_login_ms.p50", "{:.1f}"),
                  ("connect to login p99 ms", "newcomer_login_ms.p99", "{:.1f}"),
                  ("connect to login max ms", "newcomer_login_ms.max", "{:.1f}"),
                  ("connect to first message p50 ms", "newcomer_first_msg_ms.p50", "{:.1f}"),
                  ("connect to first message p99 ms", "newcomer_first_msg_ms.p99", "{:.1f}"),
                  ("connect to first message max ms", "newcomer_first_msg_ms.max", "{:.1f}"),
                  ("server CPU µs/delivery", "server_cpu_us", "{:.2f}"),
                  ("load average at start", "load_average", "{:.1f}")],
    "blast": [("deliveries/s", "deliveries_per_s", "{:,.0f}"), ("latency p50 ms", "latency_ms.p50", "{:.1f}"),
              ("latency p99 ms", "latency_ms.p99", "{:.1f}"), ("lost", "lost", "{:.0f}"),
              ("server CPU µs/delivery", "server_cpu_us", "{:.2f}"), ("of which user µs", "server_user_us", "{:.2f}"),
              ("loadgen CPU s", "loadgen_cpu_s", "{:.2f}"), ("load average at start", "load_average", "{:.1f}")],
    "idle": [("users held", "ready", "{:.0f}"), ("login s", "login_s", "{:.1f}"), ("RSS MiB", "rss_mib", "{:.0f}"),
             ("threads", "threads", "{:.0f}"), ("broadcast p50 ms", "latency_ms.p50", "{:.1f}"),
             ("broadcast p99 ms", "latency_ms.p99", "{:.1f}"), ("broadcast max ms", "latency_ms.max", "{:.1f}"),
             ("lost", "lost", "{:.0f}"), ("load average at start", "load_average", "{:.1f}")],
}


def get(result: dict, path: str) -> float:
    value = result
    for part in path.split("."):
        value = value[part]
    return float(value)


def table(name: str, results: dict[str, list[dict]]) -> str:
    servers = list(results)
    base = "asyncio" if "asyncio" in servers else servers[0]
    other = "daemond" if base == "asyncio" else servers[-1]
    lines = [f"| {name} | " + " | ".join(servers) + f" | {other} / {base} |", "|---|" + "---|" * (len(servers) + 1)]
    for label, path, fmt in METRICS[name]:
        medians = {}
        for server in servers:
            values = [get(r, path) for r in results[server]]
            if path.startswith("newcomer_"):  # -1: no newcomer had it (the column above says how many did)
                values = [v for v in values if v >= 0]
            medians[server] = statistics.median(values) if values else float("nan")
        ratio = ""
        comparable = path not in ("ready", "threads", "lost", "bad_lines", "load_average", "newcomers_logged_in",
                                  "newcomers_got_msg")
        if comparable and other in medians and base in medians and medians[base] and other != base:
            ratio = f"{medians[other] / medians[base]:.2f}×"
        lines.append(f"| {label} | " + " | ".join(fmt.format(medians[s]) for s in servers) + f" | {ratio} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="steady,blast,idle,rooms")
    parser.add_argument("--servers", default="daemond,asyncio")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--idle-users", type=int, default=10_000)
    parser.add_argument("--newcomers", type=int, default=100,
                        help="users who log in half-way through the newcomers scenario")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the steady and rooms scenarios")
    parser.add_argument("--rooms", type=int, default=100, help="rooms of the rooms scenarios")
    parser.add_argument("--room-users", type=int, default=10, help="users per room")
    parser.add_argument("--room-rate", type=float, default=ROOM_RATE,
                        help="messages/s in total of the rooms scenario, from every user in turn")
    parser.add_argument("--quick", action="store_true", help="200 users, 2,000 idle, 20 rooms, 1 round, 3 s")
    parser.add_argument("--pin", action="store_true",
                        help="run the server on CPU 0 and the load generator on CPU 1 (taskset)")
    parser.add_argument("--daemond-tuning", metavar="JSON", type=json.loads, default={},
                        help='daemond\'s tuning section, e.g. \'{"pin_threads": false}\'')
    parser.add_argument("--tls", action="store_true",
                        help="both servers speak TLS (ECDSA P-256, made for the run); so does every user")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    Daemond.tuning = args.daemond_tuning
    if args.pin:
        PIN.update(server=["taskset", "-c", "0"], loadgen=["taskset", "-c", "1"])
    if args.quick:
        args.rounds, args.users, args.idle_users, args.duration, args.rooms = 1, 200, 2000, 3.0, 20
    room_users = args.rooms * args.room_users
    room_messages = int(args.room_rate * args.duration)
    TLS["loadgen"] = build_loadgen(args.tls)
    scenarios = {
        "steady": Scenario("steady", "steady", args.users, 10, int(100 * args.duration), rate=100.0),
        "newcomers": Scenario("newcomers", "steady", args.users, 10, int(100 * args.duration), rate=100.0,
                              newcomers=args.newcomers),
        "blast": Scenario("blast", "blast", args.users, 10, 2000),
        "idle": Scenario("idle", "broadcast", args.idle_users, 1, 5, interval=1.0),
        "rooms": Scenario("rooms", "steady", room_users, room_users, room_messages, rate=args.room_rate,
                          rooms=args.rooms),
        "rooms-blast": Scenario("rooms-blast", "blast", room_users, room_users, room_messages, rooms=args.rooms),
    }
    chosen = [scenarios[s] for s in args.scenarios.split(",")]
    classes = {"daemond": Daemond, "asyncio": Asyncio, "daemond-irc": DaemondIrc,
               **{f"daemond-c{n}": cluster_of(n) for n in range(1, 5)}}
    server_names = args.servers.split(",")
    all_results: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="chat-bench-") as tmp:
        if args.tls:
            TLS["pair"] = make_certificate(Path(tmp), "ec")
        for scenario in chosen:
            per_server: dict[str, list[dict]] = {name: [] for name in server_names}
            for round_no in range(args.rounds):
                for name in server_names:
                    workdir = Path(tmp) / name
                    workdir.mkdir(exist_ok=True)
                    result = run(classes[name](workdir), scenario)
                    per_server[name].append(result)
                    print(f"# {scenario.name} round {round_no + 1} {name}: {json.dumps(result)}",
                          file=sys.stderr, flush=True)
            all_results[scenario.name] = per_server
            print(table(scenario.name, per_server))
            print()
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}; medians of {args.rounds} rounds"
          + ("; server pinned to CPU 0, load generator to CPU 1" if args.pin else "")
          + ("; TLS (ECDSA P-256) on both servers and every user" if args.tls else "")
          + (f"; daemond tuning {json.dumps(args.daemond_tuning)}" if args.daemond_tuning else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
