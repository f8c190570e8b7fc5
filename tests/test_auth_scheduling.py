"""plugins/auth/scheduling.py: the hashing helper's nice value and time slice, set on a real
process and read back from the kernel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from plugins.auth import scheduling
from tests.auth_support import slices_of

OURS = os.getpriority(os.PRIO_PROCESS, 0)


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


def lowered(by: int) -> int:
    return min(19, OURS + by)


@pytest.mark.skipif(scheduling._syscall_number() is None, reason="sched_setattr's number is not known for this ABI")
def test_the_helper_gets_the_nice_value_and_a_long_slice(sleeper):
    policy = os.sched_getscheduler(sleeper)
    assert scheduling.lower(sleeper, lowered(10)) is True  # older kernels take the call too
    assert os.getpriority(os.PRIO_PROCESS, sleeper) == lowered(10)
    assert os.sched_getscheduler(sleeper) == policy
    if slices_of(sleeper) is not None:  # where the kernel has slices to ask for, and shows them
        assert slices_of(sleeper) == {scheduling.HASHING_SLICE_NS} != {default_slice()}


@pytest.mark.skipif(scheduling._syscall_number() is None, reason="sched_setattr's number is not known for this ABI")
@pytest.mark.parametrize("policy", [os.SCHED_BATCH, os.SCHED_OTHER | os.SCHED_RESET_ON_FORK],
                         ids=["batch", "reset-on-fork"])
def test_a_fair_policy_and_its_flag_are_kept(sleeper, policy):
    os.sched_setscheduler(sleeper, policy, os.sched_param(0))
    assert scheduling.lower(sleeper, lowered(5)) is True
    assert os.sched_getscheduler(sleeper) == policy
    assert os.getpriority(os.PRIO_PROCESS, sleeper) == lowered(5)
    if slices_of(sleeper) is not None:
        assert slices_of(sleeper) == {scheduling.HASHING_SLICE_NS}


def test_a_policy_someone_chose_is_left_alone_and_only_the_nice_set(sleeper):
    os.sched_setscheduler(sleeper, os.SCHED_IDLE, os.sched_param(0))
    assert scheduling.lower(sleeper, lowered(7)) is False
    assert os.sched_getscheduler(sleeper) == os.SCHED_IDLE
    assert os.getpriority(os.PRIO_PROCESS, sleeper) == lowered(7)


def test_where_the_call_is_not_known_the_nice_is_set_alone(sleeper, monkeypatch):
    monkeypatch.setattr(scheduling.platform, "machine", lambda: "vax")
    assert scheduling.lower(sleeper, lowered(3)) is False
    assert os.getpriority(os.PRIO_PROCESS, sleeper) == lowered(3)
    if slices_of(sleeper) is not None:
        assert slices_of(sleeper) == {default_slice()}


def test_no_nice_can_be_set_on_a_process_that_is_gone():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with pytest.raises(OSError):
        scheduling.lower(gone.pid, lowered(10))


RAISE_AND_LOWER = """
import os, subprocess, sys, time
from plugins.auth import scheduling
child = subprocess.Popen([sys.executable, "-c", "import os, time; os.nice(15 - os.nice(0)); time.sleep(60)"])
try:
    while os.getpriority(os.PRIO_PROCESS, child.pid) != 15:
        time.sleep(0.01)
    try:
        scheduling.lower(child.pid, 10)
        print("raised")
    except PermissionError:
        print("refused", os.getpriority(os.PRIO_PROCESS, child.pid))
    print("lowered", scheduling.lower(child.pid, 18), os.getpriority(os.PRIO_PROCESS, child.pid))
finally:
    child.kill()
"""


@pytest.mark.skipif(os.geteuid() != 0 or not (shutil.which("setpriv") and shutil.which("prlimit")),
                    reason="needs root, setpriv and prlimit to take away the right to raise priority")
def test_without_the_right_to_raise_it_the_nice_is_never_raised():
    # as a process that may not raise priority (no CAP_SYS_NICE, RLIMIT_NICE 0): both calls
    # are refused, nothing changes, and lowering further still works
    command = ["prlimit", "--nice=0:0", "setpriv", "--inh-caps=-sys_nice", "--bounding-set=-sys_nice",
               sys.executable, "-c", RAISE_AND_LOWER]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    asked = "True" if scheduling._syscall_number() is not None else "False"
    assert done.stdout.split("\n") == ["refused 15", f"lowered {asked} 18", ""]
