"""Shared fixtures: one Spark session per test process, a fresh ABP_HOME per test."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ["PYSPARK_PYTHON"] = sys.executable

from ab_pipelines.config import load_registry  # noqa: E402
from ab_pipelines.settings import REPO_ROOT, paths  # noqa: E402


@pytest.fixture(scope="session")
def spark():
    from ab_pipelines.lake.engine import spark_session, stop_spark

    session = spark_session()
    yield session
    stop_spark()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh ABP_HOME for one test (also exported, for code that reads the environment)."""
    p = paths(tmp_path / "abp")
    p.home.mkdir(parents=True)
    monkeypatch.setenv("ABP_HOME", str(p.home))
    monkeypatch.setenv("DAGSTER_HOME", str(p.dagster_home))  # restored after the test
    return p


@pytest.fixture(scope="session")
def registry():
    return load_registry(REPO_ROOT)


@pytest.fixture
def registry_copy(tmp_path):
    """A writable copy of the repo's registry (experiments/ and metrics/)."""
    root = tmp_path / "registry"
    shutil.copytree(REPO_ROOT / "experiments", root / "experiments")
    shutil.copytree(REPO_ROOT / "metrics", root / "metrics")
    return root


def _chromium() -> str | None:
    for name in (os.environ.get("ABP_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Playwright (the dashboard's and the edge's browser tests)."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip(
            "no Chromium on this machine: run 'make browser-deps' (apt-get install chromium)"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is in the dev extra")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        b.close()
