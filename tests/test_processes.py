"""Is the process a record names alive, and still that process (not a reused pid)?"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from ab_pipelines.processes import alive, started_at


def test_a_live_process_that_started_before_the_record_is_alive():
    assert alive(os.getpid()) and alive(os.getpid(), time.time())
    assert started_at(os.getpid()) <= time.time()


def test_a_process_started_after_the_record_is_another_one():
    """A pid reused after a crash names a process younger than the record: not the owner."""
    before = time.time() - 60
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert alive(child.pid) and not alive(child.pid, before)
    finally:
        child.kill()
        child.wait()


def test_gone_and_zombie_processes_are_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while started_at(child.pid) is not None:  # a zombie until waited for: dead already
        time.sleep(0.05)
    assert not alive(child.pid)
    child.wait()
    assert not alive(child.pid)


def test_a_child_started_dying_with_its_parent_answers_sigterm_even_if_we_ignore_it():
    """An ignored SIGTERM survives exec; the trampoline gives the child SIGTERM's default back,
    so stop_group's SIGTERM stops it (not only the SIGKILL fallback)."""
    import signal

    import pytest

    from ab_pipelines.processes import dying_with_parent

    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG and /proc are Linux's")
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        cmd = dying_with_parent(["grep", "^SigIgn", "/proc/self/status"])
        line = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        plain = subprocess.run(
            ["grep", "^SigIgn", "/proc/self/status"], capture_output=True, text=True, check=True
        ).stdout
    finally:
        signal.signal(signal.SIGTERM, previous)
    bit = 1 << (signal.SIGTERM - 1)
    assert int(plain.split()[1], 16) & bit  # without the trampoline the child ignores it
    assert not int(line.split()[1], 16) & bit
