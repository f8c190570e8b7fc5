"""A Debian 12 container booted with systemd as PID 1 (systemd-nspawn), for the pid1 tests.

The root is made once with ``debootstrap --variant=minbase`` and kept under
``/var/cache/daemond-ci/`` (named after the suite and its package list); each run
boots a copy of it with ``--private-network`` and runs commands with ``nsenter`` on
the container's PID 1. The container gets its own cgroup (made here, removed at
the end), so stopping it leaves no process and no cgroup behind; nothing of the
host's systemd is used or changed. ``why_not()`` says why this machine cannot.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

SUITE = "bookworm"
MIRROR = os.environ.get("DAEMOND_CI_MIRROR", "http://deb.debian.org/debian")
#: What the root needs beyond minbase: systemd as PID 1, Python for daemond, util-linux's
#: runuser and setpriv (minbase has them), passwd's useradd.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "passwd")
CACHE = Path(os.environ.get("DAEMOND_CI_CACHE", "/var/cache/daemond-ci"))
CGROUP_ROOT = Path("/sys/fs/cgroup")


def why_not() -> str | None:
    """None when this machine can boot the container, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, systemd-nspawn)"
    for program in ("systemd-nspawn", "debootstrap", "nsenter"):
        if shutil.which(program) is None:
            return f"{program} is not installed (apt-get install systemd-container debootstrap)"
    if not _cgroup_dirs(probe=True):
        return f"no writable cgroup hierarchy under {CGROUP_ROOT} to give the container one of its own"
    return None


def cached_root(log) -> Path:
    """The pristine root for PACKAGES, made on first use (a few minutes) and kept."""
    key = hashlib.sha256(" ".join((SUITE, *sorted(PACKAGES))).encode()).hexdigest()[:12]
    root = CACHE / f"{SUITE}-minbase-{key}"
    if (root / ".complete").exists():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    building = CACHE / f".building-{uuid.uuid4().hex[:8]}"
    try:
        log(f"debootstrap {SUITE} into {building} (cached for next time as {root})")
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
                        str(building), MIRROR], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=900)
        (building / "etc" / "machine-id").unlink(missing_ok=True)  # a fresh one at each boot
        (building / ".complete").touch()
        if root.exists():
            shutil.rmtree(root)
        building.rename(root)
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    return root


def _cgroup_dirs(name: str | None = None, probe: bool = False) -> list[Path]:
    """The hierarchies whose cgroup systemd-nspawn and the container's systemd read: the unified
    one (cgroup2) and, on a hybrid host, the named ``systemd`` one. With ``name``: that child."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        tops = [CGROUP_ROOT]  # cgroup2 only
    else:
        tops = [p for p in (CGROUP_ROOT / "unified", CGROUP_ROOT / "systemd") if (p / "cgroup.procs").exists()]
    if probe:
        return [t for t in tops if os.access(t, os.W_OK)] if len(tops) else []
    return [t / name for t in tops] if name else tops


class Machine:
    """A booted container. ``run()`` a command in it; ``stop()`` powers it off and cleans up."""

    def __init__(self, pristine: Path, workdir: Path, binds: dict[str, Path], log):
        self.log = log
        self.name = f"daemond-ci-{uuid.uuid4().hex[:8]}"
        self.workdir = workdir
        self.root = workdir / "root"
        self.console_log = workdir / "console.log"
        self.cgroups = _cgroup_dirs(self.name)
        self._nspawn_dir_existed = Path("/run/systemd/nspawn").exists()
        self.proc: subprocess.Popen | None = None
        self.leader: int | None = None
        subprocess.run(["cp", "-a", "--reflink=auto", str(pristine), str(self.root)], check=True)
        self._binds = binds

    def boot(self, timeout: float = 120) -> None:
        for cg in self.cgroups:
            cg.mkdir()
        binds = [f"--bind-ro={host}:{inside}" for inside, host in self._binds.items()]
        # As on a host, where PID 1 has every capability: CAP_IPC_LOCK (without it nspawn's own
        # seccomp filter refuses mlock to everything inside, whatever the unit allows) and
        # CAP_SYS_RESOURCE (without it the unit's LimitNICE= and LimitMEMLOCK= cannot go above
        # the limits the container started with).
        argv = ["systemd-nspawn", "--quiet", "--boot", "--private-network", "--register=no", "--keep-unit",
                "--capability=CAP_IPC_LOCK,CAP_SYS_RESOURCE", f"--machine={self.name}", f"--directory={self.root}",
                *binds]
        cgroups = self.cgroups

        def into_own_cgroup() -> None:
            # nspawn (--keep-unit) puts the container below the cgroup it starts in: ours. And at
            # the default priority, whatever the test runner's niceness (services inherit it).
            for cg in cgroups:
                (cg / "cgroup.procs").write_text(str(os.getpid()))
            os.setpriority(os.PRIO_PROCESS, 0, 0)

        with open(self.console_log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=into_own_cgroup)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}:\n{self.console_log.read_text()}")
            self.leader = self.leader or self._find_leader()
            if self.leader is not None:
                state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the container did not boot in {timeout}s:\n{self.console_log.read_text()}")
            time.sleep(0.5)

    def _find_leader(self) -> int | None:
        """The container's PID 1, as the host sees it: the child of nspawn that is systemd."""
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return None
        for pid in children:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
            except OSError:
                continue
        return None

    def run(self, *argv: str, check: bool = True, input: str | None = None, timeout: float = 120,
            user: str | None = None) -> subprocess.CompletedProcess:
        """Run ``argv`` inside the container (as root, or as ``user`` with their groups)."""
        if user is not None:
            argv = ("runuser", "-u", user, "--", *argv)
        full = ["nsenter", f"--target={self.leader}", "--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup",
                "--root", "--wd", "env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8", *argv]
        proc = subprocess.run(full, capture_output=True, text=True, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        return proc

    def sh(self, script: str, **kw) -> subprocess.CompletedProcess:
        return self.run("sh", "-c", script, **kw)

    def stop(self) -> None:
        """Power the container off (kill whatever is left), remove its cgroups and its copy of the root."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to power off
                try:
                    self.proc.wait(60)
                except subprocess.TimeoutExpired:
                    self.log("the container did not power off in 60s: killing it")
                    self.proc.kill()
                    self.proc.wait(10)
        finally:
            self._kill_leftovers()
            self._remove_cgroups()
            if not self._nspawn_dir_existed:
                shutil.rmtree("/run/systemd/nspawn", ignore_errors=True)
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _kill_leftovers(self) -> None:
        for _ in range(50):
            pids = {int(p) for cg in self.cgroups if cg.exists()
                    for procs in cg.rglob("cgroup.procs") for p in procs.read_text().split()}
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    def _remove_cgroups(self) -> None:
        for cg in self.cgroups:
            if not cg.exists():
                continue
            for directory in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                directory.rmdir()
            cg.rmdir()

    def leftovers(self) -> list[str]:
        """What of this machine is still there (for the test that it cleaned up)."""
        found = [str(cg) for cg in self.cgroups if cg.exists()]
        if self.proc is not None and self.proc.poll() is None:
            found.append(f"systemd-nspawn pid {self.proc.pid}")
        if self.root.exists():
            found.append(str(self.root))
        if not self._nspawn_dir_existed and Path("/run/systemd/nspawn").exists():
            found.append("/run/systemd/nspawn")
        return found
