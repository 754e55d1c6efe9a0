"""launch(): `streamlit run` on loopback, headless, in a process group of its own."""

from __future__ import annotations

import sys

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
