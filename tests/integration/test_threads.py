"""daemon.threads: a thread per connection while it lasts, kept as a spare for the next one."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from daemon.testing import LineClient
from daemon.threads import ConnectionThreads
from tests.support.robustness import wait_until


class Job:
    """A job that records the thread it ran on and can be held until released."""

    def __init__(self, hold: bool = False):
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        self.name = ""

    def __call__(self) -> None:
        self.thread = threading.current_thread()
        self.name = self.thread.name
        self.started.set()
        self.release.wait(10)
        self.done.set()


@pytest.fixture
def pool():
    made: list[ConnectionThreads] = []

    def make(spares: int = 4, spare_timeout: float = 30.0) -> ConnectionThreads:
        made.append(ConnectionThreads(spares, spare_timeout))
        return made[-1]

    yield make
    for threads in made:
        assert threads.stop(time.monotonic() + 5) == []


def all_running(threads: ConnectionThreads, count: int) -> list[Job]:
    """``count`` held jobs, each running on its own thread."""
    jobs = [Job(hold=True) for _ in range(count)]
    for i, job in enumerate(jobs):
        threads.run(job, f"conn-{i}")
    assert all(job.started.wait(5) for job in jobs)
    return jobs


def spares_are(threads: ConnectionThreads, total: int, spares: int) -> bool:
    return wait_until(lambda: threads.counts() == (total, spares), 5)


def test_a_finished_thread_serves_the_next_job_under_its_name(pool):
    threads = pool()
    first = Job()
    threads.run(first, "conn-a-1")
    assert first.done.wait(5) and first.name == "conn-a-1"
    assert spares_are(threads, 1, 1)
    assert first.thread.name.startswith("spare-")  # not counted as anyone's connection while it waits
    second = Job()
    threads.run(second, "conn-b-2")
    assert second.done.wait(5)
    assert second.thread is first.thread and second.name == "conn-b-2"
    assert (threads.started, threads.reused) == (1, 1)


def test_jobs_at_once_each_get_a_thread_of_their_own(pool):
    threads = pool()
    jobs = all_running(threads, 6)
    assert len({job.thread for job in jobs}) == 6
    for job in jobs:
        job.release.set()


def test_at_most_spares_are_kept_and_the_warmest_serves_first(pool):
    threads = pool(spares=2)
    jobs = all_running(threads, 4)
    for finished, job in enumerate(jobs, 1):  # one after the other: the first two to finish are kept
        job.release.set()
        assert job.done.wait(5)
        assert spares_are(threads, 4 - max(0, finished - 2), min(2, finished))
    assert spares_are(threads, 2, 2)
    jobs[2].thread.join(5)
    jobs[3].thread.join(5)
    assert not jobs[2].thread.is_alive() and not jobs[3].thread.is_alive()
    nxt = Job()
    threads.run(nxt, "conn-next")
    assert nxt.done.wait(5) and nxt.thread is jobs[1].thread  # the last one parked


def test_a_spare_ends_after_the_timeout(pool):
    threads = pool(spare_timeout=0.2)
    job = Job()
    threads.run(job, "conn-1")
    assert job.done.wait(5)
    job.thread.join(5)
    assert not job.thread.is_alive() and threads.counts() == (0, 0)
    again = Job()
    threads.run(again, "conn-2")  # a new thread then
    assert again.done.wait(5) and again.thread is not job.thread
    assert threads.started == 2


def test_fewer_spares_or_a_new_stack_size_end_the_spares_at_once(pool):
    threads = pool(spares=4)
    jobs = all_running(threads, 3)
    for job in jobs:
        job.release.set()
    assert spares_are(threads, 3, 3)
    threads.configure(1, 30.0)
    assert spares_are(threads, 1, 1)
    threads.configure(1, 5.0)  # a spare waits with the timeout it read: a new one ends them all
    assert spares_are(threads, 0, 0)
    busy, spare = Job(hold=True), Job()
    threads.run(busy, "conn-busy")
    threads.run(spare, "conn-spare")
    assert busy.started.wait(5) and spare.done.wait(5)
    assert spares_are(threads, 2, 1)
    threads.retire_spares()  # a new stack size: the spare ends now, the busy one when done
    assert spares_are(threads, 1, 0)
    busy.release.set()
    busy.thread.join(5)
    assert not busy.thread.is_alive() and threads.counts() == (0, 0)
    after = Job()
    threads.run(after, "conn-after")  # threads started from now on are kept again
    assert after.done.wait(5) and spares_are(threads, 1, 1)


def test_each_job_starts_with_fresh_context_variables(pool):
    threads = pool()
    var = contextvars.ContextVar("var", default="unset")
    seen = []

    def job(value):
        seen.append((threading.current_thread(), var.get()))
        var.set(value)

    for value in ("first", "second"):
        ran = Job()
        threads.run(lambda v=value, r=ran: (job(v), r()), f"conn-{value}")
        assert ran.done.wait(5)
    assert seen[0][0] is seen[1][0]  # the same thread
    assert [v for _, v in seen] == ["unset", "unset"]  # yet nothing carried over


def test_a_job_that_raises_is_logged_and_the_thread_goes_on(pool, caplog):
    threads = pool()
    ran = threading.Event()

    def bad():
        ran.set()
        raise ValueError("boom")

    threads.run(bad, "conn-bad")
    assert ran.wait(5)
    assert spares_are(threads, 1, 1)
    assert "connection thread conn-bad: unexpected error" in caplog.text
    job = Job()
    threads.run(job, "conn-good")
    assert job.done.wait(5) and threads.started == 1


def test_stop_ends_the_spares_waits_for_the_busy_and_refuses_more():
    threads = ConnectionThreads(4, 30.0)
    first, spare = Job(hold=True), Job(hold=True)
    threads.run(first, "conn-1")
    threads.run(spare, "conn-2")
    assert first.started.wait(5) and spare.started.wait(5)
    spare.release.set()
    assert spare.done.wait(5)
    first.release.set()
    assert spares_are(threads, 2, 2)
    busy = Job(hold=True)
    threads.run(busy, "conn-3")  # on the last parked: first's thread
    assert busy.started.wait(5) and busy.thread is first.thread
    assert threads.stop(time.monotonic() + 0.2) == [busy.thread]  # still busy at the deadline
    assert not spare.thread.is_alive()
    with pytest.raises(RuntimeError):
        threads.run(Job(), "conn-4")
    busy.release.set()
    busy.thread.join(5)
    assert not busy.thread.is_alive()  # a thread finishing after stop() is not kept
    assert threads.counts() == (0, 0)


def test_sessions_run_on_spare_threads_one_at_a_time(daemond_factory):
    d = daemond_factory({"e": {"plugins": ["echo"]}})
    seen = []
    for i in range(3):
        with LineClient(*d.address("e")) as client:
            client.send(b"x")
            assert client.read_bytes(1) == b"x"
            (session,) = d.daemon.sessions("e")
            seen.append(session.thread)
            assert session.thread.name == f"conn-e-{session.peer_str}"
        assert wait_until(lambda: not d.daemon.sessions("e"), 5)
        assert wait_until(lambda: d.daemon.threads.counts()[1] == 1, 5)
    assert seen[0] is seen[1] is seen[2]
    assert d.daemon.threads.reused == 2
    with LineClient(*d.address("e")) as a, LineClient(*d.address("e")) as b:  # at once: one each
        for c in (a, b):
            c.send(b"y")
            assert c.read_bytes(1) == b"y"
        assert len({s.thread for s in d.daemon.sessions("e")}) == 2


def test_a_reload_changes_the_spares_and_stop_ends_them(daemond_factory):
    d = daemond_factory({"e": {"plugins": ["echo"]}})
    clients = [LineClient(*d.address("e")) for _ in range(3)]
    for c in clients:
        c.send(b"x")
        assert c.read_bytes(1) == b"x"
    assert len(d.daemon.sessions("e")) == 3  # each on a thread of its own
    for c in clients:
        c.close()
    assert wait_until(lambda: d.daemon.threads.counts() == (3, 3), 5)
    report = d.reconfigure(lambda doc: doc.setdefault("tuning", {}).update(spare_threads=1))
    assert any("tuning settings changed: spare_threads 1" in change for change in report["changes"]), report
    assert wait_until(lambda: d.daemon.threads.counts() == (1, 1), 5)
    report = d.reconfigure(lambda doc: doc["tuning"].update(spare_thread_timeout=3))
    assert any("spare_thread_timeout 3.0" in change for change in report["changes"]), report
    assert wait_until(lambda: d.daemon.threads.counts() == (0, 0), 5)  # ended, not left waiting 60 s
    with LineClient(*d.address("e")) as c:
        c.send(b"z")
        assert c.read_bytes(1) == b"z"
    assert wait_until(lambda: d.daemon.threads.counts() == (1, 1), 5)
    d.stop()
    assert d.daemon.threads.counts() == (0, 0)
