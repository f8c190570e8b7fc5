"""How the hashing helper gives way on its CPU: a lower nice, and the longest time slice.

On Linux 6.12 and later (the EEVDF scheduler, with slices a task may ask for), a task that
wakes on a busy CPU preempts the running one only once that one has run out its time slice,
whatever their nice values, unless the woken task's slice is the *shorter* one. With the
default slice for both, a client or any other program woken on the CPU where argon2 runs
waited up to a scheduler tick behind the helper (4 ms at HZ=250: the worst echo of
bench/auth_bench.py during a login storm was 5.2–5.5 ms, 1.8–2.3 ms with this;
docs/reliability.md, item 9). A helper that asks for the longest slice the kernel allows
gives that up against every task with the default one: they preempt it as they wake. Its
share of the CPU when both keep busy is still its nice value's.

``sched_setattr(2)`` has no wrapper in Python's ``os`` module; it is called through libc's
``syscall()``. Kernels before 6.12 take the call and ignore the slice (the nice applies);
where the call is not available (an architecture not listed here, a seccomp filter that
refuses it), ``setpriority()`` sets the nice alone.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
import sys

#: the longest slice Linux lets a task ask for (it clamps requests to 0.1–100 ms)
LONGEST_SLICE_NS = 100_000_000

#: sched_setattr's system call number, by ``platform.machine()``
_SCHED_SETATTR = {
    "x86_64": 314, "i386": 351, "i686": 351,
    "aarch64": 274, "arm64": 274, "riscv64": 274, "loongarch64": 274,  # the generic table
    "armv7l": 380, "armv6l": 380, "ppc64le": 355, "ppc64": 355, "s390x": 345,
}

#: the policies whose tasks have a nice value and a slice (SCHED_OTHER, SCHED_BATCH)
_FAIR = {os.SCHED_OTHER, getattr(os, "SCHED_BATCH", 3)}


def lower(pid: int, nice: int) -> bool:
    """Give process ``pid`` (its main thread: threads started after inherit both) the nice
    value ``nice`` and the longest time slice. True if the slice was asked for too, False if
    only the nice was set; OSError if not even that could be done."""
    number = _SCHED_SETATTR.get(platform.machine()) if sys.platform == "linux" else None
    if number is not None:
        try:
            policy = os.sched_getscheduler(pid)
        except OSError:
            policy = None
        if policy in _FAIR:  # left alone under SCHED_IDLE or a real-time policy someone chose
            # struct sched_attr, its first version (48 bytes): size, policy, flags, nice,
            # priority, runtime (for these policies: the slice asked for), deadline, period
            attr = ctypes.create_string_buffer(struct.pack("=IIQiIQQQ", 48, policy, 0, nice, 0,
                                                           LONGEST_SLICE_NS, 0, 0))
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.syscall(ctypes.c_long(number), ctypes.c_int(pid), attr, ctypes.c_uint(0)) == 0:
                return True
    os.setpriority(os.PRIO_PROCESS, pid, nice)
    return False
