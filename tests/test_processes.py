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
