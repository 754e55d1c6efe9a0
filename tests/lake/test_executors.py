"""What the executors import stays within EXECUTOR_REQUIREMENTS, from the shipped zip alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from ab_pipelines.executors import EXECUTOR_REQUIREMENTS, executor_requirements, project_zip
from ab_pipelines.settings import REPO_ROOT

# What a worker image does not have: the driver-side stack.
DRIVER_ONLY = ["deltalake", "dagster", "pyspark", "great_expectations", "scipy", "statsmodels"]


def _run_from_zip(zipped, blocked: list[str], body: str, cwd) -> subprocess.CompletedProcess:
    """Run ``body`` in a fresh interpreter that finds the project only in ``zipped`` and cannot
    import any of ``blocked`` (-I: no user site, no PYTHONPATH, no script folder; the repo root is
    dropped from the path, so the editable install stays invisible)."""
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys
        blocked = {blocked!r}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in blocked:
                    raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)")
        sys.meta_path.insert(0, Block())
        sys.path = [p for p in sys.path if p not in ("", {str(REPO_ROOT)!r})]
        sys.path.insert(0, {str(zipped)!r})
        """
    ) + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, cwd=cwd
    )


def test_executor_modules_import_from_the_zip_without_driver_packages(tmp_path):
    zipped = project_zip(tmp_path)
    body = f"""
        import ab_pipelines.events.parse, ab_pipelines.events.stage
        import ab_pipelines.analysis.assigner, ab_pipelines.executors
        assert ab_pipelines.__file__.startswith({str(zipped)!r}), ab_pipelines.__file__
        report = ab_pipelines.executors.probe({str(tmp_path)!r})
        assert report["missing"] == [] and report["sees_home"], report
        print("ok")
        """
    out = _run_from_zip(zipped, DRIVER_ONLY, body, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_a_driver_only_import_on_the_executor_path_is_caught(tmp_path):
    """The check above fails when an executor module pulls in a driver package (mutation)."""
    zipped = project_zip(tmp_path / "zip")
    # The lake package is driver-side: it opens tables via deltalake.
    out = _run_from_zip(zipped, ["deltalake"], "import ab_pipelines.lake\n", cwd=tmp_path)
    assert out.returncode != 0 and "blocked" in out.stderr


def test_requirements_are_pinned_to_the_driver():
    lines = executor_requirements()
    assert [ln.split("==")[0] for ln in lines] == list(EXECUTOR_REQUIREMENTS)
    assert all("==" in ln and ln.split("==")[1] for ln in lines)


def test_project_zip_is_named_by_content(tmp_path):
    a, b = project_zip(tmp_path), project_zip(tmp_path)
    assert a == b and a.stat().st_size > 10_000


def test_cli_prints_the_workers_requirements(tmp_path):
    from click.testing import CliRunner

    from ab_pipelines.cli import main

    out = CliRunner().invoke(main, ["executor-requirements", "--zip", str(tmp_path)])
    assert out.exit_code == 0, out.output
    lines = [ln for ln in out.stdout.splitlines() if not ln.startswith("#")]
    assert lines == executor_requirements()
    assert len(list(tmp_path.glob("ab_pipelines-*.zip"))) == 1
