"""How the hashing helper gives way on its CPU: a lower nice, and a long time slice.

Linux's EEVDF scheduler (6.6 and later) lets a task that wakes on a busy CPU preempt the
running one only once that one has run out its time slice, whatever their nice values; a
spent slice is noticed at the next tick (4 ms at HZ=250). Since 6.12 a task may ask for its
own slice, and one that wakes with a *shorter* slice than the running task's (and is owed
CPU time) preempts it at once. With the default slice for both, a client or any other
program woken on the CPU where argon2 runs waited up to a tick behind the helper (the worst
echo of bench/auth_bench.py during a login storm was 5.2–5.5 ms, about 2 ms with this;
bench/README-reliability.md, item 9). So the helper asks for a slice longer than any default
(0.75 ms times 1 + log2 of the CPUs, at most 3 ms). Its share of a CPU that others keep busy
is still its nice value's, taken in turns of up to that slice.

``sched_setattr(2)`` has no wrapper in Python's ``os`` module; it is called through libc's
``syscall()``, by the number of the ABI this Python runs under. Kernels before 6.12 take the
call and ignore the slice (the nice applies); where the call is not available (an ABI not
listed here, a seccomp filter that refuses it), ``setpriority()`` sets the nice alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import struct
import sys

log = logging.getLogger("daemond.plugin.auth")

#: the slice the helper asks for: longer than any default one, short enough that a busy
#: program sharing its CPU waits at most this long for its turn
HASHING_SLICE_NS = 10_000_000

#: sched_setattr's system call number, by (``platform.machine()``, pointer bits of this Python):
#: a 32-bit userland on a 64-bit kernel makes the 32-bit ABI's calls
_SCHED_SETATTR = {
    ("x86_64", 64): 314, ("i386", 32): 351, ("i686", 32): 351,  # ("x86_64", 32) is i386 or x32: not guessed
    ("aarch64", 64): 274, ("arm64", 64): 274, ("riscv64", 64): 274, ("loongarch64", 64): 274,  # the generic table
    ("aarch64", 32): 380, ("armv7l", 32): 380, ("armv6l", 32): 380, ("armv8l", 32): 380,
    ("ppc64le", 64): 355, ("ppc64", 64): 355, ("s390x", 64): 345,
}

#: the policies whose tasks have a nice value and a slice
_FAIR = {os.SCHED_OTHER, getattr(os, "SCHED_BATCH", 3)}
_RESET_ON_FORK = getattr(os, "SCHED_RESET_ON_FORK", 0x40000000)  # or'ed into a policy; a flag to sched_setattr
_SCHED_FLAG_RESET_ON_FORK = 0x01


def _syscall_number() -> int | None:
    if sys.platform != "linux":
        return None
    return _SCHED_SETATTR.get((platform.machine(), struct.calcsize("P") * 8))


def lower(pid: int, nice: int) -> bool:
    """Give process ``pid`` (its main thread: threads started after inherit both) the nice
    value ``nice`` and a long time slice. True if the slice was asked for too, False if
    only the nice was set; OSError if not even that could be done."""
    number = _syscall_number()
    try:
        policy = os.sched_getscheduler(pid) if number is not None else None
    except OSError:
        policy = None
    if policy is not None and policy & ~_RESET_ON_FORK in _FAIR:  # a real-time or idle policy someone chose is left alone
        flags = _SCHED_FLAG_RESET_ON_FORK if policy & _RESET_ON_FORK else 0  # kept: dropping it needs privilege
        policy &= ~_RESET_ON_FORK
        # struct sched_attr, its first version (48 bytes): size, policy, flags, nice, priority,
        # runtime (for these policies: the slice asked for), deadline, period
        attr = ctypes.create_string_buffer(struct.pack("=IIQiIQQQ", 48, policy, flags, nice, 0,
                                                       HASHING_SLICE_NS, 0, 0))
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(ctypes.c_long(number), ctypes.c_int(pid), attr, ctypes.c_uint(0)) == 0:
            if os.getpriority(os.PRIO_PROCESS, pid) == nice:  # it was this call, not another one's number
                return True
        else:
            log.debug("auth: sched_setattr for the hashing helper failed: %s", os.strerror(ctypes.get_errno()))
    os.setpriority(os.PRIO_PROCESS, pid, nice)
    return False
