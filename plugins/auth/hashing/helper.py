"""The hashing helper process as the daemon sees it: started, placed, watched, and talked to.

The helper (``worker.py``) has one thread per *channel*, a pair of pipes; a
daemon thread that sends a request blocks on the reply with the GIL released,
so none of the daemon's Python runs on the CPUs argon2 keeps busy, and the
memory of a login storm is the helper's, not the daemon's.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from plugins.auth.hashing import Argon2Params

#: the helper's program; it runs as a plain script (it imports nothing of daemond)
WORKER = Path(__file__).with_name("worker.py")

#: how much the helper lowers its priority below the daemon's (nice 0 → 10: the kernel gives a
#: CPU-bound nice-10 thread about a tenth of what an equal nice-0 one gets while both want the CPU)
HASHING_NICE = 10

#: seconds without an answer after which the helper is killed as stuck (a hash takes seconds at most)
HASH_STALL = 120.0

log = logging.getLogger("daemond.plugin.auth")


class HashingUnavailable(Exception):
    """No hash can be had just now; the message is one line for the log. ``retry``: the helper
    died under the request, which may go to the next one."""

    def __init__(self, why: str, retry: bool = False):
        super().__init__(why)
        self.retry = retry


def daemon_nice() -> int:
    """The daemon's own nice: its main thread's (a connection's thread may run lower until login)."""
    return os.getpriority(os.PRIO_PROCESS, os.getpid())


class Helper:
    """One helper process and the daemon's ends of its channels; ``on_end`` is called from a
    thread of its own once the process has ended (and been reaped)."""

    def __init__(self, python: str, params: Argon2Params, channels: int, cpus: set[int] | None,
                 on_end: Callable[[Helper], None]):
        theirs: list[int] = []
        ours: list[int] = []
        try:
            for _ in range(channels):
                request_r, request_w = os.pipe()
                reply_r, reply_w = os.pipe()
                ours += [request_w, reply_r]
                theirs += [request_r, reply_w]
            config = {"params": vars(params), "channels": [theirs[i:i + 2] for i in range(0, len(theirs), 2)]}
            # argon2's big blocks go back to the system after each hash instead of staying in glibc's arenas
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
            # -P: nothing next to the script can shadow a module it imports
            self.proc = subprocess.Popen([python, "-P", str(WORKER), json.dumps(config)], pass_fds=theirs,
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        self.pid = self.proc.pid
        self.channels = [Channel(self, ours[i], ours[i + 1]) for i in range(0, len(ours), 2)]
        self.answered = False  # set once it answered a request: it can run here
        try:
            self._place(cpus)
        finally:
            self.proc.stdin.close()  # placed: it starts its threads now, and they inherit it all
        threading.Thread(target=self._watch, args=(on_end,), name=f"auth-helper-{self.pid}", daemon=True).start()

    def _place(self, cpus: set[int] | None) -> None:
        """Move its main thread to ``cpus`` and below the daemon's priority (not the starting
        thread's: a connection not logged in yet may run lower)."""
        try:
            os.setpriority(os.PRIO_PROCESS, self.pid, min(19, daemon_nice() + HASHING_NICE))
            if cpus:
                os.sched_setaffinity(self.pid, cpus)
        except OSError as exc:
            log.warning("auth: cannot place the hashing helper (%s); it hashes where and as the kernel likes",
                        exc.strerror or exc)

    def _watch(self, on_end: Callable[[Helper], None]) -> None:
        # at the daemon's priority, whichever thread started us: this one may start the next helper
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), daemon_nice())
        except OSError:
            pass
        self.proc.wait()
        on_end(self)

    def how_it_ended(self) -> str:
        code = self.proc.returncode
        if code >= 0:
            return f"exited with status {code}"
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:  # a real-time signal
            return f"was killed by signal {-code}"

    def kill(self, grace: float = 0.1) -> None:
        """Reap it, with SIGKILL unless it ends within ``grace`` seconds (closing every channel
        ends it once the hashes under way are done)."""
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Channel:
    """One pipe pair to a thread of the helper; used by one thread at a time."""

    def __init__(self, helper: Helper, request_fd: int, reply_fd: int):
        self.helper = helper
        self.request_fd = request_fd
        self.reply_fd = reply_fd
        self._poll = select.poll()
        self._poll.register(reply_fd, select.POLLIN)

    def call(self, request: list):
        """Send one request and wait for its answer (the GIL released while waiting)."""
        data = memoryview(json.dumps(request).encode() + b"\n")
        reply = b""
        try:
            while data:
                data = data[os.write(self.request_fd, data):]
            while not reply.endswith(b"\n"):
                if not self._poll.poll(HASH_STALL * 1000):
                    raise HashingUnavailable(f"the hashing helper is stuck (no answer within {HASH_STALL:g}s)")
                chunk = os.read(self.reply_fd, 4096)
                if not chunk:
                    raise HashingUnavailable("the hashing helper exited", retry=True)
                reply += chunk
        except OSError as exc:
            raise HashingUnavailable(f"the hashing helper exited ({exc.strerror or exc})", retry=True) from None
        self.helper.answered = True
        answer = json.loads(reply)
        if "error" in answer:
            raise HashingUnavailable(f"the hashing helper failed it ({answer['error']})")
        return answer["ok"]

    def close(self) -> None:
        """Close both ends (once: a closed descriptor's number may already be another file's)."""
        fds, self.request_fd, self.reply_fd = (self.request_fd, self.reply_fd), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)
