"""daemond as a service under a real systemd (252, Debian 12) running as PID 1 in a container.

Marked ``pid1`` (not in the default run; ``.ci/run`` runs it as a step of its own):
``python -m pytest -m pid1 tests/system/test_pid1.py``. The container is a Debian 12 minbase
root (cached under /var/cache/daemond-ci/) booted with ``systemd-nspawn --boot
--private-network``; daemond is installed in it with ``systemd/install.sh`` as an operator
would, its Python dependencies fetched here and handed in (the container has no network).
The tests run in file order, on one machine, each starting from a running service.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.support import container

pytestmark = pytest.mark.pid1

REPO = Path(__file__).resolve().parents[2]
SRC = "/usr/local/src/daemond"
CONFIG = "/etc/daemond/daemond.yaml"
DROPINS = "/etc/systemd/system/daemond.service.d"
MAX_EXPOSURE = 2.0
#: Test-only: a short watchdog, so that a hung daemon is restarted (and STATUS= refreshed) within seconds.
CI_DROPIN = "[Service]\nWatchdogSec=6s\n"
PASSWORD = "correct horse battery"
#: The online exposure measured with each drop-in ("" for the shipped unit alone), for the docs' claims.
EXPOSURES: dict[str, float] = {}


def _log(text: str) -> None:
    print(f"[pid1] {text}", file=sys.stderr)


def _wheels(into: Path, src: Path) -> None:
    """daemond's dependencies, and what building it needs, as wheels for the offline container."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--wheel-dir", str(into), str(src)], check=True, timeout=600)
    subprocess.run([*pip, "download", "--dest", str(into), "setuptools>=68", "wheel"], check=True, timeout=600)


def _checkout(into: Path) -> None:
    """The checkout's files as git sees them (committed or not; no venv, no caches)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)


@pytest.fixture(scope="module")
def machine():
    reason = container.why_not()
    if reason:
        pytest.skip(reason)
    pristine = container.cached_root(_log)
    work = Path(tempfile.mkdtemp(prefix="daemond-pid1-", dir="/var/tmp"))
    m = None
    try:
        (work / "wheels").mkdir()
        (work / "src").mkdir()
        _checkout(work / "src")
        _wheels(work / "wheels", work / "src")
        shutil.rmtree(work / "src" / "build", ignore_errors=True)
        m = container.Machine(pristine, work, {"/wheels": work / "wheels"}, _log)
        shutil.copytree(work / "src", m.root / SRC.lstrip("/"))  # where an operator's clone would be
        m.boot()
        # no network to wait for in a --private-network container (the unit wants network-online)
        m.run("systemctl", "mask", "--quiet", "systemd-networkd-wait-online.service")
        m.run("systemd-analyze", "log-level", "debug")  # PID 1 logs each notification it gets
        m.run("install", "-d", DROPINS)
        m.run("sh", "-c", f"cat > {DROPINS}/zz-ci.conf", input=CI_DROPIN)
        yield m
    finally:
        if m is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            m.stop()
            assert m.leftovers() == [], m.leftovers()


# -- helpers ---------------------------------------------------------------------------------


def show(m, *props: str) -> dict[str, str]:
    out = m.run("systemctl", "show", "daemond", *(f"--property={p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def entries(m, after: str) -> list[dict]:
    """The journal's entries since ``after`` (a cursor), in order."""
    out = m.run("journalctl", "--no-pager", "-o", "json", f"--after-cursor={after}").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def said(m, after: str, priority: int = 7, pid1: bool = False) -> str:
    """What daemond's service (or PID 1) logged since ``after`` at ``priority`` or more urgent, one per line."""
    return "\n".join(e["MESSAGE"] for e in entries(m, after) if isinstance(e.get("MESSAGE"), str)
                     and int(e.get("PRIORITY", 6)) <= priority
                     and (e.get("_PID") == "1" if pid1 else e.get("_SYSTEMD_UNIT") == "daemond.service"))


def cursor(m) -> str:
    """The journal's position now: entries(m, c) are what came after."""
    out = m.run("journalctl", "--no-pager", "-n", "0", "--show-cursor").stdout
    return out.strip().rsplit("-- cursor: ", 1)[-1]


def wait_for(what: str, check, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"not seen in {timeout}s: {what}"
        time.sleep(0.25)


def talk(m, port: int, lines: list[str], expect: int, hold: float = 0) -> list[str]:
    """Connect inside the container, read ``expect`` lines while sending ``lines`` one by one."""
    script = f"""
import socket, sys, time
s = socket.create_connection(("127.0.0.1", {port}), timeout=20)
f = s.makefile("rwb")
sent = {lines!r}
out = []
if {expect} > len(sent):  # a greeting first
    out.append(f.readline().decode().rstrip())
for line in sent:
    f.write(line.encode() + b"\\r\\n"); f.flush()
    out.append(f.readline().decode().rstrip())
time.sleep({hold})
print("\\n".join(out))
"""
    return m.run("python3", "-c", script).stdout.splitlines()


def main_pid(m) -> int:
    return int(show(m, "MainPID")["MainPID"])


def write_config(m, text: str) -> None:
    m.run("sh", "-c", f"cat > {CONFIG}.new && mv {CONFIG}.new {CONFIG}", input=text)


def shipped_config() -> str:
    return (REPO / "etc" / "daemond.yaml").read_text()


def notifications(m, after: str) -> list[str]:
    """What PID 1 was told over $NOTIFY_SOCKET since ``after`` (a cursor), in order."""
    return re.findall(r"daemond\.service: Got notification message from PID \d+ \(([^)]*)\)", said(m, after, pid1=True))


# -- the tests, in order ---------------------------------------------------------------------


def test_install_starts_only_after_ready(machine):
    m = machine
    start = cursor(m)
    m.run("env", "PIP_NO_INDEX=1", "PIP_FIND_LINKS=/wheels", f"{SRC}/systemd/install.sh", timeout=600)
    assert show(m, "ActiveState")["ActiveState"] == "active"
    # systemctl start returned only once the listeners were bound: echo answers at once
    assert talk(m, 9090, ["hello"], 1) == ["hello"]
    lines = [e.get("MESSAGE") for e in entries(m, start)]
    ready = next(i for i, line in enumerate(lines) if str(line).startswith("daemond: ready: "))
    started = next(i for i, line in enumerate(lines) if str(line).startswith("Started daemond.service"))
    assert ready < started, lines[ready:started + 1]
    assert any(n.startswith("READY=1") for n in notifications(m, start))


def test_status_text_follows_the_connections(machine):
    m = machine
    assert show(m, "StatusText")["StatusText"] == "3 listeners, 0 connections"
    m.run("systemd-run", "--unit=holder", "--quiet", "python3", "-c",
          "import socket, time; s = socket.create_connection(('127.0.0.1', 9090)); time.sleep(300)")
    try:
        wait_for("STATUS= with the held connection",
                 lambda: show(m, "StatusText")["StatusText"] == "3 listeners, 1 connections", timeout=30)
    finally:
        m.run("systemctl", "stop", "holder")
    wait_for("STATUS= back at 0", lambda: show(m, "StatusText")["StatusText"] == "3 listeners, 0 connections",
             timeout=30)


def test_echo_and_a_chat_login(machine):
    m = machine
    assert talk(m, 9090, ["ping"], 1) == ["ping"]
    m.run("daemonctl", "users", "add", "alice", input=PASSWORD + "\n")
    greeting, answer = talk(m, 9091, [f"/login alice {PASSWORD}"], 2)
    assert greeting.startswith("+OK welcome"), greeting
    assert answer.startswith("+OK logged in as alice"), answer


def test_systemctl_reload_goes_through_reloading_to_ready(machine):
    m = machine
    start = cursor(m)
    pid = main_pid(m)
    m.run("systemctl", "reload", "daemond")
    told = notifications(m, start)
    reloading = next(i for i, n in enumerate(told) if n.startswith("RELOADING=1, MONOTONIC_USEC="))
    assert any(n.startswith("READY=1") for n in told[reloading + 1:]), told
    assert main_pid(m) == pid and show(m, "ActiveState")["ActiveState"] == "active"
    assert "daemond: reload (control) of /etc/daemond/daemond.yaml applied" in said(m, start)


def test_a_hot_edit_applies_by_itself(machine):
    m = machine
    start = cursor(m)
    extra = "  echo2:\n    host: 127.0.0.1\n    port: 9092\n    plugins: [echo]\n"
    write_config(m, shipped_config().replace("\nlisteners:\n", "\nlisteners:\n" + extra, 1))
    wait_for("the file reload", lambda: "daemond: reload (watch) of /etc/daemond/daemond.yaml applied"
             in said(m, start), timeout=30)
    assert talk(m, 9092, ["hot"], 1) == ["hot"]
    assert any(n.startswith("RELOADING=1") for n in notifications(m, start))


def test_a_refused_reload_fails_with_its_reason_as_a_warning(machine):
    m = machine
    pid = main_pid(m)
    start = cursor(m)
    write_config(m, shipped_config().replace("debounce: 0.25", "debounce: lots"))
    refused = m.run("systemctl", "reload", "daemond", check=False)
    assert refused.returncode != 0
    warnings = said(m, start, priority=4)
    line = shipped_config().splitlines().index("  debounce: 0.25") + 1
    assert f"{CONFIG}:{line}:13: reload.debounce: must be a number, not 'lots'" in warnings, warnings
    assert "still running on the last good config" in warnings, warnings
    assert main_pid(m) == pid and show(m, "ActiveState")["ActiveState"] == "active"
    write_config(m, shipped_config())
    m.run("systemctl", "reload", "daemond")


def install_dropin(m, name: str, text: str | None = None) -> None:
    """A drop-in from the checkout's systemd/ (as operations.md says), or ``text`` under ``name``."""
    if text is None:
        m.run("install", "-D", "-m", "0644", f"{SRC}/systemd/{name}", f"{DROPINS}/{name}")
    else:
        m.run("sh", "-c", f"cat > {DROPINS}/{name}", input=text)
    m.run("systemctl", "daemon-reload")


def remove_dropin(m, name: str) -> None:
    m.run("rm", "-f", f"{DROPINS}/{name}")
    m.run("systemctl", "daemon-reload")


def with_group(config: str, group: str | None) -> str:
    return config.replace("\n  group: null\n", f"\n  group: {group or 'null'}\n", 1)


def test_a_control_group_the_unit_cannot_honour_is_refused_and_not_restarted_in_a_loop(machine):
    m = machine
    m.run("groupadd", "--system", "daemondctl")
    pid = main_pid(m)
    reason = "control.group daemondctl: daemond (uid "
    start = cursor(m)
    write_config(m, with_group(shipped_config(), "daemondctl"))
    refused = m.run("systemctl", "reload", "daemond", check=False)
    assert refused.returncode != 0
    warnings = said(m, start, priority=4)
    assert reason in warnings and "Group=daemondctl" in warnings and "a restart with this config would fail" \
        in warnings, warnings
    assert main_pid(m) == pid
    start = cursor(m)
    restarted = m.run("systemctl", "restart", "daemond", check=False)
    assert restarted.returncode != 0
    time.sleep(4)  # twice RestartSec=: a restart loop would have begun
    props = show(m, "ActiveState", "NRestarts", "ExecMainStatus")
    assert props == {"ActiveState": "failed", "NRestarts": "0", "ExecMainStatus": "78"}, props
    assert f"daemond: {reason}" in said(m, start)


def test_control_group_with_the_dropin_root_a_member_and_a_stranger(machine):
    m = machine
    m.run("useradd", "--create-home", "--groups", "daemondctl", "member")
    m.run("useradd", "--create-home", "stranger")
    install_dropin(m, "control-group.conf")
    m.run("systemctl", "reset-failed", "daemond")
    m.run("systemctl", "start", "daemond")
    EXPOSURES["control-group.conf"] = exposure(m)
    assert "daemondctl" in m.run("stat", "-c", "%G", "/run/daemond", "/run/daemond/control.sock").stdout
    for user in (None, "member"):
        status = m.run("daemonctl", "status", user=user)
        assert "running, since" in status.stdout, (user, status)
    stranger = m.run("daemonctl", "status", user="stranger", check=False)
    assert stranger.returncode == 3
    assert ("the system daemon's control socket /run/daemond/control.sock is there, but you (uid "
            in stranger.stderr), stranger.stderr
    assert "Control for a group" in stranger.stderr and "Traceback" not in stranger.stderr
    as_json = m.run("daemonctl", "--json", "status", user="stranger", check=False)
    assert json.loads(as_json.stdout)["error"]["code"] == "no-daemon"
    # back to the shipped unit and config
    write_config(m, shipped_config())
    remove_dropin(m, "control-group.conf")
    m.run("systemctl", "restart", "daemond")


def test_a_port_below_1024_with_the_low_ports_dropin(machine):
    m = machine
    low = shipped_config().replace("\nlisteners:\n", "\nlisteners:\n  web:\n    host: 127.0.0.1\n    port: 80\n"
                                   "    plugins: [echo]\n", 1)
    install_dropin(m, "low-ports.conf")
    write_config(m, low)
    m.run("systemctl", "restart", "daemond")
    assert talk(m, 80, ["low"], 1) == ["low"]
    EXPOSURES["low-ports.conf"] = exposure(m)
    write_config(m, shipped_config())
    remove_dropin(m, "low-ports.conf")
    m.run("systemctl", "restart", "daemond")


def test_the_chat_log_is_locked_in_memory_and_a_filter_that_refuses_mlock_is_named(machine):
    m = machine
    start = cursor(m)
    m.run("systemctl", "restart", "daemond")
    logged = said(m, start)
    assert "daemond: ready: " in logged and "not all kept in memory" not in logged, logged
    install_dropin(m, "zz-no-mlock.conf", "[Service]\nSystemCallFilter=~@memlock\n")
    start = cursor(m)
    m.run("systemctl", "restart", "daemond")
    logged = said(m, start, priority=4)
    assert "Operation not permitted: refused by a system call filter (seccomp), not by RLIMIT_MEMLOCK" in logged, logged
    remove_dropin(m, "zz-no-mlock.conf")
    m.run("systemctl", "restart", "daemond")


def test_stop_sends_stopping_and_exits_0(machine):
    m = machine
    start = cursor(m)
    m.run("systemctl", "stop", "daemond")
    props = show(m, "ActiveState", "Result", "ExecMainStatus")
    assert props == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, props
    assert "STOPPING=1" in notifications(m, start)
    m.run("systemctl", "start", "daemond")


def test_kill_9_is_restarted(machine):
    m = machine
    pid = main_pid(m)
    restarts = int(show(m, "NRestarts")["NRestarts"])
    m.sh(f"kill -KILL {pid}")
    wait_for("a new main process", lambda: main_pid(m) not in (0, pid)
             and show(m, "ActiveState")["ActiveState"] == "active", timeout=30)
    assert int(show(m, "NRestarts")["NRestarts"]) == restarts + 1
    assert talk(m, 9090, ["again"], 1) == ["again"]


def test_a_stopped_daemon_is_restarted_by_the_watchdog(machine):
    m = machine
    start = cursor(m)
    pid = main_pid(m)
    m.sh(f"kill -STOP {pid}")
    wait_for("a new main process", lambda: main_pid(m) not in (0, pid)
             and show(m, "ActiveState")["ActiveState"] == "active", timeout=60)
    assert "daemond.service: Watchdog timeout" in said(m, start, pid1=True)


def test_file_modes(machine):
    m = machine
    m.run("daemonctl", "status")  # the state is there
    out = m.run("stat", "-L", "-c", "%n %a %u", "/run/daemond", "/run/daemond/control.sock",
                "/var/lib/private/daemond", "/var/lib/private/daemond/auth.db", "/var/lib/private/daemond/chat.db",
                "/var/log/private/daemond", "/var/log/private/daemond/daemond.log", CONFIG).stdout
    modes = {name: (mode, owner) for name, mode, owner in (line.split() for line in out.splitlines())}
    dynamic = modes["/run/daemond"][1]
    assert dynamic != "0"  # the dynamic user's uid
    assert modes == {
        "/run/daemond": ("750", dynamic),
        "/run/daemond/control.sock": ("660", dynamic),
        "/var/lib/private/daemond": ("750", dynamic),
        "/var/lib/private/daemond/auth.db": ("600", dynamic),
        "/var/lib/private/daemond/chat.db": ("600", dynamic),
        "/var/log/private/daemond": ("750", dynamic),
        "/var/log/private/daemond/daemond.log": ("600", dynamic),
        CONFIG: ("644", "0"),
    }, modes


def exposure(m) -> float:
    out = m.run("systemd-analyze", "security", "--no-pager", "daemond").stdout
    found = re.search(r"Overall exposure level for daemond\.service: (\d+\.\d+)", out)
    assert found, out
    return float(found.group(1))


def test_cap_sys_nice_lets_priorities_come_back_only_with_privateusers_off(machine):
    m = machine
    lowered = "connections not logged in run at nice 19 until they log in"
    kept = "tuning.login_nice: connections not logged in run at the daemon's own priority: a thread lowered"
    cap = "[Service]\nLimitNICE=0\nAmbientCapabilities=CAP_SYS_NICE\nCapabilityBoundingSet=CAP_SYS_NICE\n"
    for dropin, expected in ((cap, kept), (cap + "PrivateUsers=no\n", lowered)):
        install_dropin(m, "zz-cap-sys-nice.conf", dropin)
        start = cursor(m)
        m.run("systemctl", "restart", "daemond")
        assert expected in said(m, start), (dropin, said(m, start))
    remove_dropin(m, "zz-cap-sys-nice.conf")
    start = cursor(m)
    m.run("systemctl", "restart", "daemond")
    hard_nice = m.sh("grep 'Max nice priority' /proc/1/limits").stdout.split()[-1]
    if int(hard_nice) >= 20:  # else PID 1 may not raise RLIMIT_NICE (no CAP_SYS_RESOURCE here): LimitNICE= is moot
        assert lowered in said(m, start)  # the shipped unit's LimitNICE=+0


def test_the_notify_reload_dropin_on_252_leaves_no_reload_as_the_docs_say(machine):
    m = machine
    version = int(m.run("systemctl", "--version").stdout.split()[1])
    if version >= 253:
        pytest.skip(f"systemd {version} knows Type=notify-reload")
    install_dropin(m, "notify-reload.conf")
    refused = m.run("systemctl", "reload", "daemond", check=False)
    assert refused.returncode != 0
    message = "Job type reload is not applicable for unit daemond.service."
    assert message in refused.stderr
    assert f"`{message}`" in (REPO / "docs" / "operations.md").read_text()
    remove_dropin(m, "notify-reload.conf")
    m.run("systemctl", "reload", "daemond")


def test_online_exposure_and_what_the_docs_say_of_it(machine):
    EXPOSURES[""] = exposure(machine)
    assert max(EXPOSURES.values()) <= MAX_EXPOSURE, EXPOSURES
    docs = (REPO / "docs" / "operations.md").read_text()
    claimed = re.search(r"shipped unit scores (\d\.\d), (\d\.\d) with the control-group drop-in and (\d\.\d) with\s+the "
                        r"low-ports one", docs)
    assert claimed, "operations.md no longer says what the unit scores online"
    measured = (EXPOSURES[""], EXPOSURES["control-group.conf"], EXPOSURES["low-ports.conf"])
    assert tuple(float(x) for x in claimed.groups()) == measured
    assert f"overall exposure {EXPOSURES['']}" in docs
