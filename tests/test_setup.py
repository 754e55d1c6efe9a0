"""A wrong machine stops with one clear sentence that says how to fix it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from ab_pipelines.settings import REPO_ROOT, SetupError, check_java, ensure_writable_home, paths

ABP = os.path.join(os.path.dirname(sys.executable), "abp")


def _toolbox(tmp_path, with_java: bool, fake_java_version: str | None = None):
    """A PATH with the tools make needs, with or without (a fake) java."""
    box = tmp_path / "bin"
    box.mkdir()
    for tool in ("bash", "sh", "make", "sed", "head", "env", "cat"):
        found = shutil.which(tool)
        if found:
            (box / tool).symlink_to(found)
    (box / "python3").symlink_to(os.path.realpath(sys.executable))
    if with_java:
        java = box / "java"
        java.write_text(
            f"#!/bin/sh\necho 'openjdk version \"{fake_java_version}\" 2020-01-01' >&2\n"
        )
        java.chmod(0o755)
    return str(box)


def _make_check_env(tmp_path, target="check-env", **kw):
    env = {"PATH": _toolbox(tmp_path, **kw), "HOME": str(tmp_path)}
    return subprocess.run(
        ["make", "-s", target], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )


def test_make_test_without_java_says_how_to_install_it(tmp_path):
    out = _make_check_env(tmp_path, with_java=False)
    assert out.returncode != 0
    ours = [ln for ln in out.stderr.splitlines() if not ln.startswith("make")]
    assert len(ours) == 1 and "Java 17" in ours[0] and "apt-get install" in ours[0]
    assert "make demo needs no Java" in ours[0]


def test_the_demo_check_needs_no_java(tmp_path):
    out = _make_check_env(tmp_path, target="check-python", with_java=False)
    assert out.returncode == 0, out.stderr


def test_make_with_an_old_java_says_so(tmp_path):
    out = _make_check_env(tmp_path, with_java=True, fake_java_version="11.0.2")
    assert out.returncode != 0 and "Java 17 or newer" in out.stderr


def test_make_with_an_old_python_says_so(tmp_path):
    env = {
        "PATH": _toolbox(tmp_path, with_java=True, fake_java_version="17.0.1"),
        "HOME": str(tmp_path),
    }
    fake = tmp_path / "python2"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    out = subprocess.run(
        ["make", "-s", "check-env", f"PYTHON={fake}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "Python 3.11 or newer" in out.stderr


def test_check_java_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(SetupError, match="Java 17.*apt-get install"):
        check_java()


def test_unwritable_home_is_one_sentence(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SetupError, match="not writable.*ABP_HOME"):
        ensure_writable_home(paths(blocker / "abp"))


def test_cli_errors_are_one_line_and_nonzero(tmp_path):
    env = {**os.environ, "ABP_HOME": str(tmp_path / "abp")}
    cases = [
        ["run", "--from", "2026-11-05", "--to", "2026-11-01"],
        ["run", "--date", "yesterday"],
        ["run"],
    ]
    for args in cases:
        out = subprocess.run([ABP, *args], env=env, capture_output=True, text=True)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1, (
            out.stderr
        )
    bad_home = {**os.environ, "ABP_HOME": "/dev/null/abp"}
    out = subprocess.run(
        [ABP, "run", "--date", "2026-11-02"], env=bad_home, capture_output=True, text=True
    )
    assert out.returncode == 2 and "not writable" in out.stderr
    for var, value, says in [
        ("ABP_SPARK_MASTER", "local[2]", "ABP_SPARK_MASTER is no longer read"),
        ("ABP_SPARK_REMOTE", "spark://host:7077", "not a Spark Connect URL"),
        ("ABP_SPARK_REMOTE", "sc://127.0.0.1:9", "cannot reach the Spark Connect server"),
    ]:
        out = subprocess.run(
            [ABP, "run", "--date", "2026-11-02"], env={**env, var: value},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert out.returncode == 2 and says in out.stderr, (var, out.stderr[-2000:])
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "abp" / "lake").exists()
