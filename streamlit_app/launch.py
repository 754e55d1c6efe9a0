"""Start the dashboard: ``streamlit run streamlit_app/app.py`` on loopback, in its own process group.

``abp dashboard --port N`` and ``make dashboard`` call :func:`launch`. Streamlit runs in a new
process group (a server started from a non-interactive shell may otherwise ignore SIGINT/SIGTERM,
see ENVIRONMENT.md), so stopping the launcher stops the server by its group id, and nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ab_pipelines.settings import REPO_ROOT, Paths, paths

__all__ = ["APP", "command", "launch"]

APP = Path(__file__).resolve().parent / "app.py"
_STOP_SECONDS = 10


def command(port: int) -> list[str]:
    """The ``streamlit run`` command line: loopback only, headless, no usage statistics."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(int(port)),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]


def _stop(proc: subprocess.Popen) -> int:
    """Stop the server's process group (SIGTERM, then SIGKILL) and return its exit code."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            return proc.wait(timeout=_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc.wait()


def launch(port: int = 8501, home: Paths | str | os.PathLike[str] | None = None) -> int:
    """Run the dashboard on http://127.0.0.1:PORT until it exits; return Streamlit's exit code.

    Args:
        port: the TCP port on 127.0.0.1.
        home: the ABP_HOME whose tables it shows (default: ``$ABP_HOME`` or the repo's ``.abp/``).

    Ctrl-C or SIGTERM to this process stops the server's whole process group; the exit code is
    then the server's (for example -15 after SIGTERM).
    """
    where = home if isinstance(home, Paths) else paths(home)
    env = dict(os.environ, ABP_HOME=str(where.home))

    def _terminate(signum, frame):  # the server is in another group: pass the stop on
        raise KeyboardInterrupt

    # The handler goes in before the server is forked: a handler is reset to SIGTERM's default
    # action by exec, whereas an *ignored* SIGTERM that this process inherited (from whatever
    # started it) would survive into the server, which would then outlive our SIGTERM until the
    # SIGKILL fallback; and a SIGTERM between the fork and the handler cannot orphan the server.
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: Ctrl-C handling only
        previous = None
    proc = None
    try:
        proc = subprocess.Popen(command(port), cwd=REPO_ROOT, env=env, start_new_session=True)
        return proc.wait()
    except KeyboardInterrupt:
        if proc is None:
            raise
        return _stop(proc)
    finally:
        if proc is not None and proc.poll() is None:
            _stop(proc)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
