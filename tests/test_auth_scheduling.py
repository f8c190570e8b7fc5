"""plugins/auth/scheduling.py: the hashing helper's nice value and time slice, set on a real
process and read back from the kernel."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from plugins.auth import scheduling
from tests.auth_support import slices_of


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def default_slice() -> int | None:
    """The slice a process gets when it asks for none (this test process's)."""
    found = slices_of(os.getpid())
    return min(found) if found else None


def test_the_helper_gets_the_nice_value_and_the_longest_slice(sleeper):
    nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
    asked = scheduling.lower(sleeper, nice)
    assert os.getpriority(os.PRIO_PROCESS, sleeper) == nice
    assert os.sched_getscheduler(sleeper) == os.SCHED_OTHER
    if slices_of(sleeper) is None:  # a kernel without slices to ask for: the nice alone
        return
    assert asked is True
    assert slices_of(sleeper) == {scheduling.LONGEST_SLICE_NS} != {default_slice()}


def test_a_policy_someone_chose_is_left_alone_and_only_the_nice_set(sleeper):
    os.sched_setscheduler(sleeper, os.SCHED_IDLE, os.sched_param(0))
    assert scheduling.lower(sleeper, 15) is False
    assert os.sched_getscheduler(sleeper) == os.SCHED_IDLE
    assert os.getpriority(os.PRIO_PROCESS, sleeper) == 15


def test_where_the_call_is_not_known_the_nice_is_set_alone(sleeper, monkeypatch):
    monkeypatch.setattr(scheduling.platform, "machine", lambda: "vax")
    assert scheduling.lower(sleeper, 12) is False
    assert os.getpriority(os.PRIO_PROCESS, sleeper) == 12
    if slices_of(sleeper) is not None:
        assert slices_of(sleeper) == {default_slice()}


def test_no_nice_can_be_set_on_a_process_that_is_gone():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with pytest.raises(OSError):
        scheduling.lower(gone.pid, 10)
