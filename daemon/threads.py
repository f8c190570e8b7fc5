"""The threads connections run on: one each while they last, kept for the next when they end.

Every connection still has a thread of its own. What this adds is the reuse: a
thread whose connection has ended waits, as a *spare*, for the next connection
(of any listener) instead of ending, up to ``tuning.spare_threads`` of them and
for ``tuning.spare_thread_timeout`` seconds each (Apache's MaxSpareThreads,
Java's keep-alive time). Starting a thread and ending one both run Python with
the GIL held on the daemon's one Python CPU (what that costs is in
bench/README-reliability.md, item 9), while handing a connection to a spare
wakes that one thread and no other.

The spares form a stack: the most recently parked, whose stack and caches are
the warmest, serves first; those at the bottom time out when fewer are needed.
Each spare sleeps on a lock of its own (held while it waits), so a hand-off
releases exactly one thread.

What a reused thread carries over from its last connection, plugins must not
rely on (daemon/hookspecs.py says so): its ``threading.local`` data, and
anything a plugin changed on the thread itself. The daemon sets the thread's
name and priority for each connection, and runs each in a fresh
``contextvars`` context, as a new thread would.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("daemond.threads")


class _Worker:
    __slots__ = ("generation", "job", "name", "thread", "wake")

    def __init__(self, job: Callable[[], None], name: str):
        self.thread: threading.Thread | None = None
        self.job: Callable[[], None] | None = job
        self.name = name  # the job's; the thread names itself (Python 3.14 names OS threads only that way)
        self.generation = 0  # the pool's when it started: an older one is not kept as a spare
        self.wake = threading.Lock()  # held while the worker waits as a spare; released to hand it a job
        self.wake.acquire()


class ConnectionThreads:
    """Runs each job (a connection's whole life) on a spare thread, or on a new one."""

    def __init__(self, spares: int = 32, spare_timeout: float = 60.0):
        # _lock guards _idle, _workers, _closed, _generation and the two settings. _idle is the
        # stack of spares, each waiting on its own wake lock; _workers is every thread, busy or
        # spare; threads started before the last retire_spares() are not kept (_generation).
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._closed = False
        self._generation = 0
        self.spares = spares
        self.spare_timeout = spare_timeout
        self._names = itertools.count(1)
        self.started = 0  # threads started (a connection that found no spare), for status and tests
        self.reused = 0  # connections handed to a spare

    def configure(self, spares: int, spare_timeout: float) -> None:
        """New bounds (a reload): spares beyond the new number end now, and all of them if the
        timeout changed (each waits with the timeout it read when it began)."""
        with self._lock:
            if spare_timeout != self.spare_timeout:
                keep = 0
            else:
                keep = min(spares, len(self._idle))
            self.spares, self.spare_timeout = spares, spare_timeout
            surplus = self._idle[: len(self._idle) - keep]  # the coldest, at the bottom of the stack
            del self._idle[: len(surplus)]
        for worker in surplus:
            self._hand(worker, None, "")

    def retire_spares(self) -> None:
        """End every spare now, and every busy thread when its connection ends (a reload
        changed tuning.thread_stack_size: only threads started from now on get it)."""
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for worker in idle:
            self._hand(worker, None, "")

    def run(self, job: Callable[[], None], name: str) -> None:
        """Run ``job`` on a spare thread named ``name``, or on a new one.

        Raises RuntimeError if no spare waits and no thread can be started (out of
        memory, or a limit on threads), as ``Thread.start`` does.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the daemon is stopping")
            worker = self._idle.pop() if self._idle else None
            if worker is not None:
                self.reused += 1
        if worker is not None:
            self._hand(worker, job, name)
            return
        worker = _Worker(job, name)
        worker.thread = threading.Thread(target=self._serve, args=(worker,), name=name, daemon=True)
        with self._lock:
            if self._closed:  # stop() began meanwhile; it joins only the threads it finds
                raise RuntimeError("the daemon is stopping")
            worker.generation = self._generation
            self._workers.add(worker)
            self.started += 1
        try:
            worker.thread.start()
        except BaseException:
            with self._lock:
                self._workers.discard(worker)
                self.started -= 1
            raise

    def counts(self) -> tuple[int, int]:
        """(threads in all, spares among them)."""
        now = self.status()
        return now["all"], now["spare"]

    def status(self) -> dict[str, int]:
        """For ``daemonctl status``: threads now (all, spare) and since start (started, reused)."""
        with self._lock:
            return {"all": len(self._workers), "spare": len(self._idle), "started": self.started, "reused": self.reused}

    def stop(self, deadline: float) -> list[threading.Thread]:
        """No more jobs; end the spares and wait for every thread until ``deadline``
        (monotonic). Returns the threads still running then."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            workers = list(self._workers)
        for worker in idle:
            self._hand(worker, None, "")
        for worker in workers:
            if worker.thread.ident is not None:  # not one whose start() failed
                worker.thread.join(max(0.0, deadline - time.monotonic()))
        return [w.thread for w in workers if w.thread.is_alive()]

    # -- a worker's own thread ---------------------------------------------------

    @staticmethod
    def _hand(worker: _Worker, job: Callable[[], None] | None, name: str) -> None:
        worker.job, worker.name = job, name  # job None: end
        worker.wake.release()

    def _serve(self, worker: _Worker) -> None:
        thread = worker.thread
        try:
            job = worker.job
            while job is not None:
                worker.job = None  # the connection is not kept alive by its spare thread
                thread.name = worker.name
                try:
                    contextvars.Context().run(job)  # a fresh context, as a new thread has
                except Exception:  # a job catches what it expects; this thread goes on regardless
                    log.exception("connection thread %s: unexpected error", thread.name)
                del job
                job = self._wait_as_spare(worker)
        finally:
            with self._lock:
                self._workers.discard(worker)

    def _wait_as_spare(self, worker: _Worker) -> Callable[[], None] | None:
        worker.thread.name = f"spare-{next(self._names)}"  # before it can be taken and named again
        with self._lock:
            if self._closed or len(self._idle) >= self.spares or worker.generation != self._generation:
                return None
            timeout = self.spare_timeout
            self._idle.append(worker)
        if worker.wake.acquire(timeout=timeout):
            return worker.job
        with self._lock:
            try:
                self._idle.remove(worker)
                return None  # timed out: not needed
            except ValueError:
                pass  # taken (or told to end) just as it timed out: the hand-off is on its way
        worker.wake.acquire()
        return worker.job
