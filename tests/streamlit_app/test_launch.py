"""launch(): `streamlit run` on loopback, headless, in a process group of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ab_pipelines.settings import REPO_ROOT, paths
from streamlit_app import launch as launch_mod
from streamlit_app.launch import APP, command, launch


def test_the_command_runs_the_app_on_loopback_headless():
    cmd = command(8123)
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(APP)]
    opts = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert opts["--server.address"] == "127.0.0.1"
    assert opts["--server.port"] == "8123"
    assert opts["--server.headless"] == "true"
    assert opts["--browser.gatherUsageStats"] == "false"
    assert APP.name == "app.py" and APP.exists()


def test_launch_returns_the_exit_code_with_abp_home_in_a_new_process_group(monkeypatch, tmp_path):
    probe = (
        "import os, sys; "
        f"ok = os.environ['ABP_HOME'] == {str(tmp_path / 'abp')!r} and os.getpgrp() == os.getpid(); "
        "sys.exit(7 if ok else 1)"
    )
    monkeypatch.setattr(launch_mod, "command", lambda port: [sys.executable, "-c", probe])
    assert launch(8123, tmp_path / "abp") == 7
    assert launch(8123, paths(tmp_path / "abp")) == 7  # a Paths, as `abp dashboard` passes
    monkeypatch.setenv("ABP_HOME", str(tmp_path / "abp"))
    assert launch(8123) == 7  # default: $ABP_HOME


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_sigterm_to_the_launcher_stops_the_servers_process_group(tmp_path, inherited):
    """Also when the launcher was started with SIGTERM ignored (an ignored signal survives exec:
    a server forked with it would outlive the stop until the SIGKILL fallback, 10 s later)."""
    pidfile = tmp_path / "server.pid"
    server = (
        f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    )
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN); " if inherited == "ignored" else ""
    launcher = (
        f"import signal, sys; {ignore}from streamlit_app import launch as m; "
        f"m.command = lambda port: [sys.executable, '-c', {server!r}]; "
        "r = m.launch(1); print('launch returned', r); sys.exit(0 if r == -signal.SIGTERM else 3)"
    )
    proc = subprocess.Popen([sys.executable, "-c", launcher], cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text()):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        server_pid = int(pidfile.read_text())
        assert os.getpgid(server_pid) == server_pid  # a process group of its own
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0  # launch returned the server's exit code (-SIGTERM)
        assert time.monotonic() - t0 < 5  # the server died of the SIGTERM, not the SIGKILL
        with pytest.raises(ProcessLookupError):
            os.kill(server_pid, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
