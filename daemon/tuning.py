"""Process-wide thread settings (the config's ``tuning:`` section).

A longer GIL switch interval is what lets thousands of connection threads wake
at once. Every thread waiting for the GIL wakes up once per interval to ask
for it: with 10,000 waiters, CPython's default of 5 ms means some two million
futile wake-ups a second, all contending for the GIL's own mutex. Measured on
2 cores (bench/README.md): 10,000 idle sessions each sent one byte were all
answered in about 1 s at 50 ms, against a third of them in 20 s at 5 ms. Our
threads give the GIL up on every socket call anyway, so a longer interval
costs nothing until a plugin computes for long stretches without I/O.

Pinning keeps the threads that run Python on one CPU. The GIL lets one of
them run at a time anyway; spread over CPUs, every GIL hand-off is a wake-up
of a thread on another CPU (an inter-processor interrupt, on a VM an exit to
the hypervisor) while the waker spins up to take the GIL back. On one CPU a
thread that blocks in ``recv`` simply lets the next runnable one take the
free GIL. Measured at 64 connections × 64 B (bench/README.md, "Where the
time goes"): 5.6 context switches per round trip spread out, 1.0 pinned, and
two to three times the round trips per second. Work that runs without the GIL
(password hashing) is what the other CPUs are for: :func:`native_cpus`.

A fixed malloc mmap threshold keeps big short-lived buffers out of glibc's
per-thread arenas. glibc raises its threshold to the size of the largest block
freed (up to 32 MiB), after which each arena keeps such blocks for reuse: with
argon2id's 19 MiB per password hash, 50 logins from 50 threads left the daemon
some 450 MiB larger though only ``max_hashing`` hashes ran at once (found by
tests/robustness, item 9; auth now hashes in a helper process, which pins its
own threshold the same way). Setting the threshold pins it: those blocks are
mmap'd and unmapped when freed.

Connections that have not logged in yet run at a low priority (``login_nice``,
nice +19): the accepting thread of a login-gated listener is lowered, a
connection's thread is lowered as the connection starts (a new thread
inherits it from the accepting thread; a spare one, daemon/threads.py, sets it:
:func:`settle_priority`), and it goes back to the daemon's own priority when
the session logs in (:func:`restore_priority`) or ends. So the CPU a
login storm costs on the Python CPU (accepting, a thread, the dialogue, the
store: ~1.8 ms a login, nearly all of it the kernel's) yields to everyone
already served. Measured with bench/auth_bench.py (docs/reliability.md, item
9): echo p99 during a storm 3.6-4.4x idle at nice 0, 1.7-2.1x at +19, 2.3-2.6x
at +5 or +10. Going back up needs CAP_SYS_NICE or an RLIMIT_NICE that allows
it (the unit's ``LimitNICE=+0``); without that nothing is lowered, since a
logged-in session left at +19 would be starved behind any busy process. It
also needs the pinning: a lowered thread that holds the GIL must not share a
CPU with hashing at +10, or it waits there with every connection behind it
(34-38x idle with pin_threads off).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import resource
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from daemon.config import Config


log = logging.getLogger("daemond.tuning")

_M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter number

#: The CPUs the daemon's Python threads are kept on (None: wherever the kernel likes). Written
#: by apply_tuning() when a daemon starts, before its threads exist; read by them. One value per
#: process: two daemons started in one process (tests do) share the last one's.
_python_cpus: set[int] | None = None


#: The daemon's own nice value (its main thread's when it started), whether a thread may go back
#: to it once lowered (None: not probed since it started), and the nice value of threads serving
#: connections that have not logged in (None: not lowered). Written by apply_tuning(); read by
#: listeners and sessions.
_base_nice = 0
_may_return: bool | None = None
_login_nice: int | None = None


def apply_tuning(config: Config, starting: bool = False) -> None:
    """Apply the ``tuning:`` section; pinning only when ``starting`` (it needs a restart)."""
    global _python_cpus, _base_nice, _may_return, _login_nice
    sys.setswitchinterval(config.switch_interval)
    threading.stack_size(config.thread_stack_size)
    if config.malloc_mmap_threshold is not None:
        set_mmap_threshold(config.malloc_mmap_threshold)
    if starting:
        _python_cpus = choose_cpus(config.pin_threads, config.cpu)
        if _python_cpus:
            native = native_cpus()
            log.info("threads running Python kept on CPU %s; native work (password hashing) on %s",
                     _cpu_list(_python_cpus), f"CPU {_cpu_list(native)}" if native else "the same CPU")
        _base_nice = os.getpriority(os.PRIO_PROCESS, 0)  # 0: the calling thread, on Linux
        _may_return = None
    _login_nice = _choose_login_nice(config.login_nice)


def _choose_login_nice(wanted: int | None) -> int | None:
    global _may_return
    if wanted is None or wanted <= _base_nice:
        return None
    if not (_python_cpus and native_cpus()):
        # Spread over the CPUs, a lowered thread holding the GIL is preempted by whatever runs
        # there at a better priority -- password hashing at +10 -- and every connection waits
        # for it: echo p99 34-38x idle in a login storm, against 3.4-3.8x at nice 0.
        log.info("tuning.login_nice: connections not logged in run at the daemon's own priority: the threads "
                 "that run Python do not have a CPU of their own (tuning.pin_threads off, or one CPU), and a "
                 "lowered one holding the GIL would wait behind password hashing, and every connection with it")
        return None
    if _may_return is None:  # once per start, and only if it is wanted
        _may_return = _may_return_to(_base_nice)
    if not _may_return:
        log.info("tuning.login_nice: connections not logged in run at the daemon's own priority: a thread "
                 "lowered to nice %d could not go back to nice %d at login (that needs CAP_SYS_NICE or "
                 "RLIMIT_NICE %d, e.g. LimitNICE=%+d in the unit)", wanted, _base_nice, 20 - _base_nice, _base_nice)
        return None
    log.info("connections not logged in run at nice %d until they log in (tuning.login_nice)", wanted)
    return wanted


def _may_return_to(nice: int) -> bool:
    """Whether a thread of this process, once lowered, may be raised back to ``nice``: tried on
    a thread of its own, after raising the soft RLIMIT_NICE to the hard one (as systemd's
    LimitNICE= or a login's limits.conf set it)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NICE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NICE, (hard, hard))
    except (ValueError, OSError):
        pass
    if nice >= 19:
        return False
    outcome: list[bool] = []

    def attempt() -> None:
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice + 1)
            os.setpriority(os.PRIO_PROCESS, tid, nice)
            outcome.append(True)
        except OSError:
            outcome.append(False)

    probe = threading.Thread(target=attempt, name="nice-probe", daemon=True)
    probe.start()
    probe.join()
    return outcome == [True]


def set_thread_nice(thread: threading.Thread | None, nice: int) -> bool:
    """Give one thread of this process the nice value ``nice`` (Linux: nice is per thread).
    False if it could not be done; a thread not started, or ended, is left alone (its id may
    already be another's)."""
    if thread is None or thread.native_id is None or not thread.is_alive():
        return True
    try:
        os.setpriority(os.PRIO_PROCESS, thread.native_id, nice)
    except OSError as exc:  # ESRCH: it has just ended; EPERM: not allowed to raise it
        log.debug("cannot set nice %d for thread %s: %s", nice, thread.name, exc)
        return False
    return True


def _listener_nice(login_gated: bool) -> tuple[int, bool]:
    """The nice value for a listener's threads, and whether it is the lowered one: login_nice
    if the listener asks for a login (and login_nice applies), else the daemon's own."""
    if login_gated and _login_nice is not None:
        return _login_nice, True
    return _base_nice, False


def prioritize_thread(thread: threading.Thread | None, login_gated: bool) -> None:
    """Set a listener's accepting thread to its priority (:func:`_listener_nice`)."""
    set_thread_nice(thread, _listener_nice(login_gated)[0])


def settle_priority(login_gated: bool) -> bool:
    """Give the calling thread, as a connection starts on it, the priority its listener asks for;
    True if that is the lowered one. The thread may be new (it inherited the accepting thread's,
    which a reload may have changed since) or a spare that served another connection: so it asks
    the kernel, and sets it only if it differs."""
    nice, lowered = _listener_nice(login_gated)
    if os.getpriority(os.PRIO_PROCESS, 0) != nice:  # 0: the calling thread, on Linux
        set_thread_nice(threading.current_thread(), nice)
    return lowered


def restore_priority(thread: threading.Thread | None) -> None:
    """Back to the daemon's own priority: a session that has logged in, or ended without."""
    if not set_thread_nice(thread, _base_nice):
        log.warning("cannot give thread %s back the daemon's priority (nice %d); it stays at %s",
                    thread.name if thread else "?", _base_nice, _login_nice)


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on (its main thread's affinity: systemd's CPUAffinity=, taskset)."""
    try:
        return os.sched_getaffinity(os.getpid())
    except (AttributeError, OSError):  # not Linux
        return set()


def choose_cpus(pin: bool, cpu: int | None) -> set[int] | None:
    """The CPU for Python threads: ``cpu``, or the last allowed one; None when there is no choice."""
    allowed = allowed_cpus()
    if not pin:
        return None
    if cpu is not None and allowed and cpu not in allowed:
        log.warning("tuning.cpu: CPU %d is not one this process may use (%s); threads are not pinned",
                    cpu, _cpu_list(allowed))
        return None
    if len(allowed) < 2:
        return None
    return {max(allowed) if cpu is None else cpu}


def pin_this_thread() -> None:
    """Keep the calling thread on the Python CPU (threads it starts inherit that)."""
    cpus = _python_cpus
    if cpus:
        try:
            os.sched_setaffinity(0, cpus)  # 0: the calling thread, on Linux
        except OSError as exc:
            log.debug("cannot pin thread %s: %s", threading.current_thread().name, exc)


def native_cpus() -> set[int] | None:
    """The CPUs for threads that run native code without the GIL (e.g. password hashing):
    every allowed CPU but the Python one. None: no pinning, run anywhere."""
    cpus = _python_cpus
    if not cpus:
        return None
    return (allowed_cpus() - cpus) or None


def _cpu_list(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def set_mmap_threshold(size: int) -> bool:
    """Pin glibc's mmap threshold to ``size`` bytes; False (and nothing done) on other C libraries."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    if mallopt(_M_MMAP_THRESHOLD, size) != 1:
        log.warning("mallopt(M_MMAP_THRESHOLD, %d) failed; keeping glibc's default", size)
        return False
    return True
