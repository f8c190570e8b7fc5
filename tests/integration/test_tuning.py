"""tuning.pin_threads / tuning.cpu: the threads that run Python stay on one CPU; native work gets the rest."""

from __future__ import annotations

import os
import threading

import pytest
import yaml

from daemon.testing import LineClient
from tests.support.robustness import wait_until

ALLOWED = os.sched_getaffinity(0)
needs_two_cpus = pytest.mark.skipif(len(ALLOWED) < 2, reason="pinning only happens with two CPUs or more")


def affinity(thread: threading.Thread) -> set[int]:
    return os.sched_getaffinity(thread.native_id)


def daemon_threads(prefixes=("listener-", "conn-", "flusher")) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefixes)]


@needs_two_cpus
def test_python_threads_are_kept_on_the_last_cpu_and_native_work_gets_the_others(daemond_factory):
    d = daemond_factory({"e": {"plugins": ["echo"]}})
    with LineClient(*d.address("e")) as client:
        client.send(b"x")
        assert client.read_bytes(1) == b"x"
        threads = daemon_threads()
        assert {t.name.split("-")[0] for t in threads} == {"listener", "conn", "flusher"}
        assert all(affinity(t) == {max(ALLOWED)} for t in threads), {t.name: affinity(t) for t in threads}
    assert os.sched_getaffinity(0) == ALLOWED  # the caller's own thread (here: pytest's) is left alone
    assert d.daemon.api.native_cpus() == ALLOWED - {max(ALLOWED)}


@needs_two_cpus
def test_the_cpu_can_be_chosen_or_pinning_turned_off(daemond_factory):
    first = min(ALLOWED)
    d = daemond_factory({"e": {"plugins": ["echo"]}}, tuning={"cpu": first})
    assert all(affinity(t) == {first} for t in daemon_threads(("listener-", "flusher")))
    d.stop()
    d = daemond_factory({"e": {"plugins": ["echo"]}}, tuning={"pin_threads": False})
    assert all(affinity(t) == ALLOWED for t in daemon_threads(("listener-", "flusher")))
    assert d.daemon.api.native_cpus() is None


def test_a_cpu_the_process_may_not_use_is_a_warning_not_a_failure(daemond_factory, caplog):
    missing = max(ALLOWED) + 1
    d = daemond_factory({"e": {"plugins": ["echo"]}}, tuning={"cpu": missing})
    assert f"tuning.cpu: CPU {missing} is not one this process may use" in caplog.text
    assert all(affinity(t) == ALLOWED for t in daemon_threads(("listener-", "flusher")))
    assert d.daemon.api.native_cpus() is None


def test_changing_the_pinning_needs_a_restart(daemond_factory):
    d = daemond_factory({"e": {"plugins": ["echo"]}}, reload={"watch": False})
    doc = yaml.safe_load(d.config_path.read_text())
    doc.setdefault("tuning", {})["pin_threads"] = False
    d.config_path.write_text(yaml.safe_dump(doc))
    report = d.daemon.reload()
    assert not report["ok"]
    assert any(e.startswith("tuning.pin_threads changed (True → False): needs a restart") for e in report["errors"])


def test_the_null_policy_runs_a_plain_thread_per_connection_and_touches_nothing(tmp_path):
    # daemon/policy.py: PlainThreads switches every tuning lever off at once, whatever tuning: says
    import sys

    from daemon.config import load_config
    from daemon.core import Daemon
    from daemon.loader import PluginLoader
    from daemon.policy import PlainThreads
    from daemon.testing import write_config

    switch_before = sys.getswitchinterval()
    path = write_config(tmp_path, {"e": {"plugins": ["echo"], "port": 0}}, tuning={"switch_interval": 0.2})
    daemon = Daemon(load_config(path, PluginLoader()), policy=PlainThreads(), log_to_stderr=False)
    daemon.start()
    try:
        port = daemon.listeners["e"].address[1]
        for _ in range(2):
            with LineClient("127.0.0.1", port) as client:
                client.send(b"x")
                assert client.read_bytes(1) == b"x"
                (session,) = daemon.sessions("e")
                assert affinity(session.thread) == ALLOWED  # not pinned
                assert os.getpriority(os.PRIO_PROCESS, session.thread.native_id) == os.getpriority(os.PRIO_PROCESS, 0)
            assert wait_until(lambda: not daemon.sessions("e"), 5)  # the next one is then the only one
        assert daemon.api.native_cpus() is None
        assert sys.getswitchinterval() == switch_before  # tuning: left alone
        status = daemon.status()["threads"]
        assert status["spare"] == 0 and status["reused"] == 0 and status["started"] == 2
    finally:
        daemon.stop()
