"""Process-wide thread settings (the config's ``tuning:`` section).

A longer GIL switch interval is what lets thousands of connection threads wake
at once. Every thread waiting for the GIL wakes up once per interval to ask
for it: with 10,000 waiters, CPython's default of 5 ms means some two million
futile wake-ups a second, all contending for the GIL's own mutex. Measured on
2 cores (bench/README.md): 10,000 idle sessions each sent one byte were all
answered in about 1 s at 50 ms, against a third of them in 20 s at 5 ms. Our
threads give the GIL up on every socket call anyway, so a longer interval
costs nothing until a plugin computes for long stretches without I/O.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from daemon.config import Config


def apply_tuning(config: Config) -> None:
    sys.setswitchinterval(config.switch_interval)
    threading.stack_size(config.thread_stack_size)
