"""Processes on this host: is the process a record names still alive, and still that process?

A run, an engine's scratch folder or a staging folder records the process id that owns it; after
a crash the id may be free, a zombie, or reused by another process. On Linux the process's start
time (``/proc``) tells a reused id apart; elsewhere only existence is checked.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

__all__ = ["HOST", "alive", "die_with_parent", "dying_with_parent", "started_at", "stop_group"]

HOST = socket.gethostname()
_SLACK = 2.0  # seconds: /proc's start time is in clock ticks, the records' times in wall clock


def started_at(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), None if there is none or it is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return 0.0 if _exists(pid) else None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # a zombie or dead: it holds nothing any more
        return None
    ticks = int(fields[19])  # field 22, starttime, in clock ticks after boot
    return _boot_time() + ticks / os.sysconf("SC_CLK_TCK")


def alive(pid: int, started_by: float | None = None) -> bool:
    """Is ``pid`` a live process that had started by ``started_by`` (epoch seconds, when the
    record naming it was written)? A process that started later is another one that got the id."""
    if not Path("/proc/self/stat").exists():
        return _exists(pid)
    began = started_at(pid)
    if began is None:
        return False
    return started_by is None or began <= started_by + _SLACK


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_BOOT: list[float] = []


def _boot_time() -> float:
    if not _BOOT:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                _BOOT.append(float(line.split()[1]))
                break
        else:
            _BOOT.append(0.0)
    return _BOOT[0]


def die_with_parent() -> None:
    """In a child (a task worker, or before ``exec`` of a broker or connector): be killed when
    the thread that started it ends, even by SIGKILL, so no child outlives a killed run (Linux's
    PR_SET_PDEATHSIG; elsewhere a no-op)."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before the call
            os._exit(1)


# PR_SET_PDEATHSIG survives exec: set it, make sure the parent did not die first, then exec.
# SIGTERM back to its default action first: an ignored SIGTERM inherited from whatever started
# us would also survive exec, and the child would ignore the SIGTERM that stops it (stop_group
# then needs its SIGKILL fallback).
_EXEC_DYING = (
    "import ctypes, os, signal, sys; "
    "signal.signal(signal.SIGTERM, signal.SIG_DFL); "
    "ctypes.CDLL(None).prctl(1, signal.SIGKILL); "
    "os.getppid() == int(sys.argv[1]) or os._exit(1); "
    "os.execvp(sys.argv[2], sys.argv[2:])"
)


def dying_with_parent(cmd: list[str]) -> list[str]:
    """``cmd`` as a command that dies with the thread starting it, even by SIGKILL (Linux; else
    ``cmd`` itself): a small Python sets PR_SET_PDEATHSIG and execs ``cmd``. Not a
    ``preexec_fn``: that forks the whole process, and forking one whose gRPC threads run (the
    Spark Connect client) aborted the child before its exec (seen in CI: SIGABRT, "epoll_wait
    error: Bad file descriptor")."""
    import sys

    if not sys.platform.startswith("linux"):
        return list(cmd)
    return [sys.executable, "-c", _EXEC_DYING, str(os.getpid()), *cmd]


def stop_group(proc, grace: float) -> None:
    """Stop a child started in a process group of its own (``start_new_session=True``): SIGTERM
    to the group, SIGKILL after ``grace`` seconds, and reap it."""
    import contextlib
    import signal
    import subprocess

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
