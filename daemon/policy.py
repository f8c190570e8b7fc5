"""The runtime policy: which thread a connection runs on, on which CPU, at which priority.

Everything the daemon does for speed rather than for correctness sits behind
this one object, which the :class:`~daemon.core.Daemon` owns and calls at a few
named moments: it starts and is reconfigured with the ``tuning:`` section, a
thread that runs Python begins (:meth:`~PlainThreads.thread_started`), a
listener's accepting thread begins or its plugins change
(:meth:`~PlainThreads.listener_started`), a connection is served
(:meth:`~PlainThreads.serve`) and logs in (:meth:`~PlainThreads.logged_in`),
and a plugin asks where native work should run
(:meth:`~PlainThreads.native_cpus`). Listeners and sessions call these
without knowing what they do.

:class:`PlainThreads` is the null policy: a new thread for every connection,
nothing pinned, nothing reniced, no process-wide setting touched.
:class:`TunedPolicy`, the default, applies the ``tuning:`` section:

* a longer GIL switch interval, so that thousands of waiting threads do not
  wake every 5 ms to ask for the GIL;
* spare threads (:mod:`daemon.threads`): a thread whose connection ended
  waits for the next one, saving a thread start and end on the Python CPU;
* pinning: the threads that run Python stay on one CPU, where a GIL hand-off
  is a plain context switch instead of a cross-CPU wake-up; the other CPUs are
  left for native work such as password hashing (:meth:`native_cpus`);
* ``login_nice``: a connection that has not logged in yet (on a login-gated
  listener) runs at a low priority until it logs in, so that a login storm
  yields the Python CPU to connections already served. It applies only with
  pinning, and only if a thread may be raised back at login;
* a fixed glibc mmap threshold, so that big short-lived buffers are returned
  to the system instead of kept in per-thread arenas.

Why each exists, and what it was measured to buy, is in ``bench/README.md``
and ``bench/README-auth.md``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import resource
import sys
import threading
from collections.abc import Callable
from typing import Any

from daemon.threads import ConnectionThreads

log = logging.getLogger("daemond.tuning")

_M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter number


class PlainThreads:
    """The null policy: one new thread per connection and nothing else."""

    def __init__(self) -> None:
        self.threads = ConnectionThreads(spares=0)

    def start(self, tuning: Any) -> None:
        """The daemon starts (before any of its threads): apply what must be in place first."""

    def configure(self, tuning: Any, changed: set[str]) -> None:
        """A reload changed the ``changed`` keys of the ``tuning:`` section."""

    def stop(self, deadline: float) -> list[threading.Thread]:
        """No more connections; wait for their threads until ``deadline`` (monotonic)."""
        return self.threads.stop(deadline)

    def thread_started(self) -> None:
        """Called at the top of each daemon thread that runs Python (flusher, listeners)."""

    def listener_started(self, thread: threading.Thread | None, login_gated: bool) -> None:
        """A listener's accepting thread began, or a reload changed its plugins or the policy."""

    def serve(self, job: Callable[[], None], name: str, login_gated: bool) -> None:
        """Run one connection's ``job`` on a thread named ``name``; raises RuntimeError if no
        thread can be had (out of memory, a limit on threads)."""
        self.threads.run(job, name)

    def logged_in(self, thread: threading.Thread | None) -> None:
        """The connection served by ``thread`` has logged in."""

    def native_cpus(self) -> set[int] | None:
        """The CPUs for native work without the GIL; None: no split, run anywhere."""
        return None

    def status(self) -> dict[str, int]:
        return self.threads.status()


class TunedPolicy(PlainThreads):
    """The ``tuning:`` section applied (the module docstring says what each part does)."""

    def __init__(self) -> None:
        super().__init__()
        self._python_cpus: set[int] | None = None  # where threads that run Python are kept
        self._base_nice = 0  # the daemon's own nice value, as it started
        self._may_return: bool | None = None  # whether a lowered thread may go back (None: not probed)
        self._login_nice: int | None = None  # for connections not logged in yet (None: not lowered)

    def start(self, tuning: Any) -> None:
        self._python_cpus = choose_cpus(tuning.pin_threads, tuning.cpu)
        if self._python_cpus:
            native = self.native_cpus()
            log.info("threads running Python kept on CPU %s; native work (password hashing) on %s",
                     _cpu_list(self._python_cpus), f"CPU {_cpu_list(native)}" if native else "the same CPU")
        self._base_nice = os.getpriority(os.PRIO_PROCESS, 0)  # 0: the calling thread, on Linux
        self.configure(tuning, {"switch_interval", "thread_stack_size", "malloc_mmap_threshold", "spare_threads",
                                "spare_thread_timeout", "login_nice"}, starting=True)

    def configure(self, tuning: Any, changed: set[str], starting: bool = False) -> None:
        sys.setswitchinterval(tuning.switch_interval)
        threading.stack_size(tuning.thread_stack_size)
        if tuning.malloc_mmap_threshold is not None and "malloc_mmap_threshold" in changed:
            set_mmap_threshold(tuning.malloc_mmap_threshold)
        if changed & {"spare_threads", "spare_thread_timeout"}:
            self.threads.configure(tuning.spare_threads, tuning.spare_thread_timeout)
        if "thread_stack_size" in changed and not starting:
            self.threads.retire_spares()  # threads made from now on get the new size
        if "login_nice" in changed:
            self._login_nice = self._choose_login_nice(tuning.login_nice)

    def thread_started(self) -> None:
        if self._python_cpus:
            try:
                os.sched_setaffinity(0, self._python_cpus)  # 0: the calling thread; threads it starts inherit it
            except OSError as exc:
                log.debug("cannot pin thread %s: %s", threading.current_thread().name, exc)

    def listener_started(self, thread: threading.Thread | None, login_gated: bool) -> None:
        # The connections it starts inherit its priority; each still checks it (_settle).
        set_thread_nice(thread, self._nice_for(login_gated))

    def serve(self, job: Callable[[], None], name: str, login_gated: bool) -> None:
        if self._login_nice is None:
            self.threads.run(job, name)
            return
        nice = self._nice_for(login_gated)

        def connection() -> None:
            # A new thread inherited the accepting thread's priority (a reload may have changed
            # it since), a spare one has its last connection's: ask the kernel, set if it differs.
            if os.getpriority(os.PRIO_PROCESS, 0) != nice:
                set_thread_nice(threading.current_thread(), nice)
            try:
                job()
            finally:  # ended without logging in: wait for the next connection at the daemon's priority
                if os.getpriority(os.PRIO_PROCESS, 0) != self._base_nice:
                    self._restore(threading.current_thread())

        self.threads.run(connection, name)

    def logged_in(self, thread: threading.Thread | None) -> None:
        if self._login_nice is not None:
            self._restore(thread)

    def native_cpus(self) -> set[int] | None:
        if not self._python_cpus:
            return None
        return (allowed_cpus() - self._python_cpus) or None

    # -- priorities ------------------------------------------------------------

    def _nice_for(self, login_gated: bool) -> int:
        return self._login_nice if login_gated and self._login_nice is not None else self._base_nice

    def _restore(self, thread: threading.Thread | None) -> None:
        if not set_thread_nice(thread, self._base_nice):
            log.warning("cannot give thread %s back the daemon's priority (nice %d)",
                        thread.name if thread else "?", self._base_nice)

    def _choose_login_nice(self, wanted: int | None) -> int | None:
        if wanted is None or wanted <= self._base_nice:
            return None
        if not (self._python_cpus and self.native_cpus()):
            # Spread over the CPUs, a lowered thread holding the GIL is preempted by whatever
            # runs there at a better priority, and every connection waits for it.
            log.info("tuning.login_nice: connections not logged in run at the daemon's own priority: the threads "
                     "that run Python do not have a CPU of their own (tuning.pin_threads off, or one CPU), and a "
                     "lowered one holding the GIL would wait behind password hashing, and every connection with it")
            return None
        if self._may_return is None:  # once per start, and only if it is wanted
            self._may_return = may_return_to(self._base_nice)
        if not self._may_return:
            log.info("tuning.login_nice: connections not logged in run at the daemon's own priority: a thread "
                     "lowered to nice %d could not go back to nice %d at login (that needs an RLIMIT_NICE of %d, "
                     "e.g. LimitNICE=%+d in the unit)", wanted, self._base_nice, 20 - self._base_nice, self._base_nice)
            return None
        log.info("connections not logged in run at nice %d until they log in (tuning.login_nice)", wanted)
        return wanted


def may_return_to(nice: int) -> bool:
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
