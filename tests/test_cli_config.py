"""`abp validate`, `abp publish`, `abp approve`, `abp kill`, `abp assign` from the shell."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from ab_pipelines.settings import REPO_ROOT

ABP = os.path.join(os.path.dirname(sys.executable), "abp")


def run(args, env):
    return subprocess.run([ABP, *args], env=env, capture_output=True, text=True, timeout=120)


def test_broken_registry_gives_one_line_per_problem_and_is_never_published(tmp_path):
    env = {
        **os.environ,
        "ABP_HOME": str(tmp_path / "abp"),
        "ABP_REGISTRY": str(REPO_ROOT / "tests" / "config" / "broken"),
    }
    out = run(["validate"], env)
    assert out.returncode == 2
    problems = [ln for ln in out.stderr.splitlines() if not ln.startswith("error:")]
    assert len(problems) >= 10 and all(".yaml" in ln for ln in problems)
    out = run(["publish"], env)
    assert out.returncode == 2 and "not published" in out.stderr
    assert not (tmp_path / "abp" / "edge" / "config.json").exists()


def test_publish_kill_assign_approve_round_trip(tmp_path):
    root = tmp_path / "registry"
    shutil.copytree(REPO_ROOT / "experiments", root / "experiments")
    shutil.copytree(REPO_ROOT / "metrics", root / "metrics")
    env = {**os.environ, "ABP_HOME": str(tmp_path / "abp"), "ABP_REGISTRY": str(root)}
    assert run(["validate"], env).returncode == 0
    out = run(["publish"], env)
    assert out.returncode == 0 and "version 1" in out.stdout and "DEVELOPMENT key" in out.stderr
    assert "unchanged: version 1" in run(["publish"], env).stdout

    out = run(["assign", "qa-user-1", "checkout_cta", "--json"], env)
    why = json.loads(out.stdout)["checkout_cta"]
    assert why["variant"] == "treatment" and why["decided_by"] == "override"

    out = run(["kill", "checkout_cta", "--reason", "bad", "--by", "oncall@example.com"], env)
    assert out.returncode == 0 and "version 2" in out.stdout
    out = run(["assign", "user-7", "checkout_cta", "--json"], env)
    assert json.loads(out.stdout)["checkout_cta"]["variant"] == "control"
    assert run(["kill", "nope", "--reason", "x", "--by", "a@b.c"], env).returncode == 2

    out = run(["approve", "homepage_aa", "--by", "ana@example.com"], env)  # the owner
    assert out.returncode == 2 and out.stderr.startswith("error:")
    # an edit makes the approval stale: validate says so, and publish refuses
    path = root / "experiments" / "homepage_aa.yaml"
    path.write_text(path.read_text().replace("Two identical variants", "Two identical arms"))
    out = run(["validate"], env)
    assert out.returncode == 2 and "homepage_aa.yaml" in out.stderr and "stale" in out.stderr
    out = run(["approve", "homepage_aa", "--by", "lee@example.com"], env)
    assert out.returncode == 0, out.stderr
    assert run(["validate"], env).returncode == 0
