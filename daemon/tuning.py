"""Process-wide thread settings (the config's ``tuning:`` section).

A longer GIL switch interval is what lets thousands of connection threads wake
at once. Every thread waiting for the GIL wakes up once per interval to ask
for it: with 10,000 waiters, CPython's default of 5 ms means some two million
futile wake-ups a second, all contending for the GIL's own mutex. Measured on
2 cores (bench/README.md): 10,000 idle sessions each sent one byte were all
answered in about 1 s at 50 ms, against a third of them in 20 s at 5 ms. Our
threads give the GIL up on every socket call anyway, so a longer interval
costs nothing until a plugin computes for long stretches without I/O.

A fixed malloc mmap threshold keeps big short-lived buffers out of glibc's
per-thread arenas. glibc raises its threshold to the size of the largest block
freed (up to 32 MiB), after which each arena keeps such blocks for reuse: with
argon2id's 19 MiB per password hash, 50 logins from 50 threads left the daemon
some 450 MiB larger though only ``max_hashing`` hashes ran at once (found by
tests/robustness, item 9). Setting the threshold pins it: those blocks are
mmap'd and unmapped when freed.
"""

from __future__ import annotations

import ctypes
import logging
import platform
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from daemon.config import Config


log = logging.getLogger("daemond.tuning")

_M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter number


def apply_tuning(config: Config) -> None:
    sys.setswitchinterval(config.switch_interval)
    threading.stack_size(config.thread_stack_size)
    if config.malloc_mmap_threshold is not None:
        set_mmap_threshold(config.malloc_mmap_threshold)


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
