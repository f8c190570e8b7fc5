"""Password hashing: argon2id through argon2-cffi, in a helper process.

Each argon2 hash holds ``memory_cost`` KiB and a CPU for its whole run, so a
login storm could otherwise take the daemon's memory and CPUs with it. And
although argon2-cffi releases the GIL while it hashes, a hashing *thread* in
the daemon still takes the GIL for its own few lines of Python, from a CPU
that is busy hashing: when the kernel preempts it there, it keeps the GIL and
every connection waits (measured in bench/README-reliability.md, item 9).

So hashes run in a helper process (``hashworker.py``, run by the daemon's own
Python): ``max_concurrent`` threads there, each serving one *channel*, a pair
of pipes. A login takes a free channel (waiting its turn, with a deadline),
writes its request and blocks on the reply with the GIL released: nothing of
the daemon runs on the hashing CPUs. The helper moves to the CPUs the daemon
leaves for native work (``daemon.native_cpus()``: every CPU but the one its
Python threads are kept on) and lowers its priority (``nice``, and a long
time slice: ``scheduling.py``), so that the kernel runs every thread that
serves an ordinary connection first, and anything else that wakes on its CPU. Its memory
is its own: a storm leaves the daemon no larger.

The auth plugin starts the helper when the daemon starts (and when a reload
changes the hashing settings); a thread of the daemon waits for it, so that if
it dies another is started at once (and a request it died under is sent to the
new one). If it cannot run here at all (no
interpreter, or helpers that exit on their own before answering, three in a
row), an error is logged and hashes run on the calling threads, still at most
``max_concurrent`` at once. A helper that cannot be started for the moment (a
process or file limit) refuses the hashes asked for meanwhile and is tried
again a second later.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import argon2
from argon2.exceptions import InvalidHashError

from plugins.auth import hashworker, scheduling

#: OWASP's minimum for argon2id (Password Storage Cheat Sheet): m=19 MiB, t=2, p=1.
OWASP_MINIMUM = {"time_cost": 2, "memory_cost": 19456, "parallelism": 1}


#: how much the helper lowers its priority (nice 0 → 10: the kernel gives a CPU-bound
#: nice-10 thread about a tenth of what an equal nice-0 one gets while both want the CPU)
HASHING_NICE = 10


def _daemon_nice() -> int:
    """The daemon's own nice value: its main thread's (Linux: nice is per thread, and a
    connection's thread may run lower until it logs in; see tuning.login_nice)."""
    return os.getpriority(os.PRIO_PROCESS, os.getpid())


#: seconds without an answer after which a hash is given up and the helper killed as stuck
#: (one hash at the largest settings allowed takes seconds, not this)
HASH_STALL = 120.0

#: the helper's program; it runs as a plain script (it imports nothing of daemond)
HELPER = Path(hashworker.__file__)

#: the interpreter that runs it; None: the daemon's own (sys.executable)
PYTHON: str | None = None

#: helpers in a row that exit on their own before answering anything, after which hashes run in
#: the daemon (a helper killed by a signal, e.g. by the OOM killer, does not count)
STILLBORN_LIMIT = 3

#: seconds before starting a helper is tried again after it failed for a passing reason
RESPAWN_DELAY = 1.0

#: how many stored hashes needs_rehash remembers its answer for (~150 bytes each)
REHASH_VERDICTS = 4096

#: errors of os.pipe()/fork that pass: a process, file or memory limit reached for the moment
_PASSING = {errno.EAGAIN, errno.EMFILE, errno.ENFILE, errno.ENOMEM}

log = logging.getLogger("daemond.plugin.auth")


class HasherBusy(Exception):
    """No hashing slot freed up before the caller's deadline."""


class HashingFailed(Exception):
    """The helper died or stopped answering (``broken``: it is replaced; ``retry``: it died,
    so the request may go to the next one), or failed this one request; the message is one
    line for the log."""

    def __init__(self, why: str, broken: bool = True, retry: bool = False):
        super().__init__(why)
        self.broken = broken
        self.retry = retry


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int
    memory_cost: int  # KiB
    parallelism: int

    def weaker_than_owasp(self) -> bool:
        return (self.time_cost < OWASP_MINIMUM["time_cost"] or self.memory_cost < OWASP_MINIMUM["memory_cost"]
                or self.parallelism < OWASP_MINIMUM["parallelism"])

    def __str__(self) -> str:
        return f"m={self.memory_cost},t={self.time_cost},p={self.parallelism}"


class Hasher:
    """Hashes and verifies passwords with one set of argon2id parameters, at most
    ``max_concurrent`` at once, in the helper process. Any thread may call it.
    ``on_request`` is called with ``"hashes"`` or ``"verifications"`` for each request."""

    def __init__(self, params: Argon2Params, max_concurrent: int, cpus: set[int] | None = None,
                 on_request: Callable[[str], None] | None = None):
        self.params = params
        self.max_concurrent = max_concurrent
        self.cpus = cpus  # where the helper runs; None: where the kernel likes
        self._on_request = on_request or (lambda kind: None)
        # used here only for the dummy hash, and for hashes when no helper can run
        self._ph = argon2.PasswordHasher(time_cost=params.time_cost, memory_cost=params.memory_cost,
                                         parallelism=params.parallelism, type=argon2.Type.ID)
        # one slot per hash at once (each holds memory_cost KiB): a free channel of the helper,
        # or, without a helper, a hash on the caller's thread
        self._slots = threading.BoundedSemaphore(max_concurrent)
        # _lock guards _helper, _free, _closed, _no_helper, _stillborn and _respawn_at
        self._lock = threading.Lock()
        self._helper: _Helper | None = None
        self._free: list[_Channel] = []  # the current helper's channels no thread is using
        self._closed = False
        self._no_helper: str | None = None  # why hashes run here instead: helpers cannot run here
        self._stillborn = 0  # helpers in a row that exited on their own before answering anything
        self._respawn_at = 0.0  # (monotonic) no helper is started before then, after a passing failure
        # Verified in place of a user's hash when the name is unknown, so that
        # "no such user" costs exactly what "wrong password" costs.
        self.dummy_hash = self._ph.hash(secrets.token_urlsafe(24))
        # needs_rehash's answers by stored hash (a dict's get and set are atomic: no lock)
        self._rehash_verdicts: dict[str, bool] = {}

    def start(self) -> None:
        """Start the helper now rather than at the first hash (logged if it cannot start)."""
        with self._lock:
            try:
                self._ensure_helper()
            except HashingFailed:
                pass  # logged; the first hash tries again

    def where(self) -> str:
        """Where hashes run, for status."""
        with self._lock:
            if self._no_helper:
                return f"the daemon itself (no helper: {self._no_helper})"
            if self._helper is None:
                return "helper process (not running)"
            return f"helper process {self._helper.pid}"

    def close(self, wait: bool = True) -> None:
        """End the helper once hashes under way are done (if ``wait``, waited for here, up to
        a few seconds; then it is killed). A hash asked for later (a straggler still holding
        this hasher after a reload replaced it) runs on the caller's thread."""
        with self._lock:
            helper, free, self._helper, self._free, self._closed = self._helper, self._free, None, [], True
        for channel in free:
            channel.close()  # its thread in the helper sees the end of its requests and ends
        if helper is not None and wait:
            helper.end(5.0)  # else it ends by itself, and its watcher reaps it

    def hash(self, password: str, timeout: float | None = None) -> str:
        return self._run(timeout, "hash", password)

    def verify(self, stored_hash: str | None, password: str, timeout: float | None = None) -> bool:
        """True if ``password`` matches ``stored_hash``.

        ``None`` (no such user) verifies against the dummy hash — the same
        work — and is always False.
        """
        ok = self._run(timeout, "verify", stored_hash or self.dummy_hash, password)
        return ok is True and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when ``stored_hash`` was made with other parameters than ours.

        Remembered per stored hash: parsing one took ~50 µs of the GIL at each login during a
        login storm (its code cold in the CPU's caches), and the answer for a given hash never
        changes (new parameters come with a new Hasher)."""
        verdict = self._rehash_verdicts.get(stored_hash)
        if verdict is None:
            try:
                verdict = self._ph.check_needs_rehash(stored_hash)
            except (InvalidHashError, ValueError):
                verdict = True
            if len(self._rehash_verdicts) >= REHASH_VERDICTS:
                self._rehash_verdicts.clear()  # a bound, not a cache policy: users log in again
            self._rehash_verdicts[stored_hash] = verdict
        return verdict

    # -- running one hash ---------------------------------------------------------------

    def _run(self, timeout: float | None, op: str, *args: str):
        """Run one request; HasherBusy if no slot freed up within ``timeout``, HashingFailed
        if the helper failed it. A helper that dies under a request (killed, out of memory)
        is replaced and the request sent once more, to the new one."""
        if not self._slots.acquire(timeout=None if timeout is None else max(timeout, 0.0)):
            raise HasherBusy()
        try:
            self._on_request("hashes" if op == "hash" else "verifications")
            failure = None
            for _ in range(2):
                with self._lock:
                    closed = self._closed
                    channel = None if closed else self._take()
                if channel is None:
                    if failure is not None and closed:
                        raise failure  # closed meanwhile: the daemon is stopping, not a reason to hash here
                    return self._here(op, *args)
                try:
                    result = channel.call([op, *args])
                except HashingFailed as exc:
                    self._put_back(channel, exc)
                    if not exc.retry or failure is not None:
                        raise
                    failure = exc
                    continue
                except BaseException:  # interrupted (Ctrl-C at the console): its answer may still come
                    self._put_back(channel, HashingFailed("a request was interrupted"))
                    raise
                self._put_back(channel)
                return result
        finally:
            self._slots.release()

    def _here(self, op: str, *args: str):
        """A hash on the calling thread (no helper): the request the helper would have answered."""
        return hashworker.handle(self._ph, [op, *args])

    def _take(self) -> _Channel | None:
        """Under _lock: a free channel of a running helper, started if need be; None: hash
        here. A slot is held, so a running helper has a free channel. (One that died is
        retired by its watcher, or by the request that finds its pipe closed.)"""
        if not self._ensure_helper():
            return None
        return self._free.pop()

    def _ensure_helper(self) -> bool:
        """Under _lock: a helper is running (started now if there was none); False if none can
        run here. HashingFailed if it cannot be started just now."""
        if self._helper is not None:
            return True
        if self._no_helper or self._closed:
            return False
        if time.monotonic() < self._respawn_at:
            raise HashingFailed("the hashing helper cannot be started just now")
        try:
            self._helper = _Helper(self.params, self.max_concurrent, self.cpus, self._helper_ended)
        except OSError as exc:
            if exc.errno in _PASSING:
                self._respawn_at = time.monotonic() + RESPAWN_DELAY
                log.error("auth: cannot start the password hashing helper (%s); trying again in %gs",
                          exc.strerror or exc, RESPAWN_DELAY)
                raise HashingFailed(f"the hashing helper cannot be started ({exc.strerror or exc})") from None
            self._give_up(str(exc))
            return False
        except (subprocess.SubprocessError, ValueError) as exc:
            self._give_up(str(exc) or type(exc).__name__)
            return False
        self._free = list(self._helper.channels)
        log.debug("auth: password hashing helper started (pid %d)", self._helper.pid)
        return True

    def _give_up(self, why: str) -> None:
        """Under _lock: hash in the daemon from now on."""
        self._no_helper = why
        log.error("auth: cannot run the password hashing helper (%s); hashing in the daemon instead, "
                  "at most %d at once", why, self.max_concurrent)

    def _helper_ended(self, helper: _Helper) -> None:
        """From its watcher thread, once ``helper`` has ended: if it was the current one (not
        ended by close(), nor retired already by a request that saw it die), say so now and
        start another, so that the next login does not wait for one."""
        with self._lock:
            if helper is not self._helper:
                return
            self._retire(helper, f"the hashing helper {helper.how_it_ended()}")
            try:
                self._ensure_helper()
            except HashingFailed:
                pass  # logged; the next hash tries again

    def _retire(self, helper: _Helper, why: str) -> None:
        """Under _lock: the current helper died or failed; another is started at once,
        unless helpers keep exiting on their own before they answer (they cannot run here).
        The caller kills it (outside the lock) if it still runs."""
        self._helper, free, self._free = None, self._free, []
        for channel in free:
            channel.close()
        if helper.answered or helper.killed_by_signal():
            self._stillborn = 0
        else:
            self._stillborn += 1
        given_up = self._stillborn >= STILLBORN_LIMIT
        log.error("auth: %s (pid %d)%s", why, helper.pid, "" if given_up else "; starting another")
        if given_up:
            self._give_up(f"{STILLBORN_LIMIT} in a row exited before answering; see the daemon's stderr")

    def _put_back(self, channel: _Channel, failure: HashingFailed | None = None) -> None:
        """Return a channel after use. A broken one (its helper died, got stuck or was
        interrupted mid-request) takes its helper down with it."""
        broken = failure is not None and failure.broken
        if broken:
            channel.helper.kill()  # first (outside the lock): _retire looks at how it ended
        with self._lock:
            current = channel.helper is self._helper
            if current and not self._closed and not broken:
                self._free.append(channel)
                return
            if current and broken:
                self._retire(channel.helper, str(failure))
        channel.close()


class _Helper:
    """The helper process and the daemon's ends of its channels."""

    def __init__(self, params: Argon2Params, channels: int, cpus: set[int] | None,
                 on_end: Callable[[_Helper], None]):
        python = PYTHON or sys.executable
        if not python:
            raise ValueError("no Python interpreter to run it (sys.executable is empty)")
        theirs: list[int] = []
        ours: list[int] = []
        try:
            for _ in range(channels):
                request_r, request_w = os.pipe()
                ours.append(request_w)
                theirs.append(request_r)
                reply_r, reply_w = os.pipe()
                ours.append(reply_r)
                theirs.append(reply_w)
            config = {"params": {"time_cost": params.time_cost, "memory_cost": params.memory_cost,
                                 "parallelism": params.parallelism},
                      "channels": [theirs[i:i + 2] for i in range(0, len(theirs), 2)]}
            # a pinned mmap threshold: argon2's big blocks go back to the system after each hash
            # instead of staying in glibc's arenas (as tuning.malloc_mmap_threshold does for the daemon)
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
            # -P: nothing next to the script (plugins/auth/) can shadow a module it imports
            self.proc = subprocess.Popen([python, "-P", str(HELPER), json.dumps(config)], pass_fds=theirs,
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        self.pid = self.proc.pid
        self.channels = [_Channel(self, ours[i], ours[i + 1]) for i in range(0, len(ours), 2)]
        self.answered = False  # set once it answered a request: it can run here
        try:
            self._place(cpus)
        finally:
            self.proc.stdin.close()  # placed: it may start its threads now (they inherit it all)
        # its watcher: waits for it to end (reaping it: no zombie), then tells the hasher
        threading.Thread(target=self._watch, args=(on_end,), name=f"auth-helper-{self.pid}", daemon=True).start()

    def _watch(self, on_end: Callable[[_Helper], None]) -> None:
        # Started by whichever thread started the helper: if that was a connection not logged
        # in yet (tuning.login_nice), this thread would start the next helper, under the
        # hasher's lock, at that low priority.
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _daemon_nice())
        except OSError:
            pass
        self.proc.wait()
        on_end(self)

    def how_it_ended(self) -> str:
        code = self.proc.returncode
        if code is not None and code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with status {code}"

    def _place(self, cpus: set[int] | None) -> None:
        """Move it to ``cpus`` and lower its priority (plugins/auth/scheduling.py), from here.
        CPUs, nice and slice are per thread on Linux: it waits for its stdin to close before
        it starts its threads, which then inherit them from its main thread."""
        try:
            if cpus:
                os.sched_setaffinity(self.pid, cpus)
        except OSError as exc:
            log.warning("auth: cannot move the hashing helper to CPU %s (%s); it hashes where the kernel puts it",
                        ",".join(map(str, sorted(cpus))), exc.strerror or exc)
        try:
            # below the daemon's own priority, not the starting thread's: one started by a
            # connection not logged in yet has inherited tuning.login_nice; and with a long
            # time slice, so that whatever wakes on its CPU preempts it at once
            if not scheduling.lower(self.pid, min(19, _daemon_nice() + HASHING_NICE)):
                log.debug("auth: the hashing helper runs with the kernel's default time slice")
        except OSError as exc:
            log.warning("auth: cannot lower the hashing helper's priority (%s)", exc.strerror or exc)

    def killed_by_signal(self) -> bool:
        return self.proc.returncode is not None and self.proc.returncode < 0

    def kill(self) -> None:
        """End it (SIGKILL unless it is ending on its own) and reap it."""
        try:
            self.proc.wait(0.1)  # one whose pipes just closed may not be reapable yet: let it exit itself
            return
        except subprocess.TimeoutExpired:
            pass
        try:
            self.proc.kill()
            self.proc.wait(5)
        except OSError:
            pass
        except subprocess.TimeoutExpired:
            log.error("auth: the hashing helper (pid %d) did not end after SIGKILL", self.pid)

    def end(self, timeout: float) -> None:
        """It ends once every channel is closed (hashes under way finish first). Wait for that
        up to ``timeout`` seconds, then kill it."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


class _Channel:
    """One pipe pair to a thread of the helper; used by one thread at a time."""

    def __init__(self, helper: _Helper, request_fd: int, reply_fd: int):
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
                    raise HashingFailed(f"the hashing helper is stuck (no answer within {HASH_STALL:g}s)")
                chunk = os.read(self.reply_fd, 4096)
                if not chunk:
                    raise HashingFailed("the hashing helper exited", retry=True)
                reply += chunk
        except OSError as exc:
            raise HashingFailed(f"the hashing helper exited ({exc.strerror or exc})", retry=True) from None
        self.helper.answered = True
        answer = json.loads(reply)
        if "error" in answer:
            raise HashingFailed(f"the hashing helper failed it ({answer['error']})", broken=False)
        return answer["ok"]

    def close(self) -> None:
        """Close both ends (once: a closed descriptor's number may already be another file's)."""
        fds, self.request_fd, self.reply_fd = (self.request_fd, self.reply_fd), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)
