"""The demo tables the dashboard tests read, built once per test session (no Spark)."""

from __future__ import annotations

import pytest

from ab_pipelines.config import load_registry
from ab_pipelines.lake.delta import Lake
from tests.streamlit_app.demo_data import Demo, build_demo


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Demo:
    return build_demo(tmp_path_factory.mktemp("dashboard"))


@pytest.fixture
def demo_lake(demo) -> Lake:
    return Lake(demo.home)


@pytest.fixture
def demo_registry(demo):
    return load_registry(demo.registry_root)


@pytest.fixture
def dashboard_env(demo, monkeypatch) -> Demo:
    """ABP_HOME and ABP_REGISTRY pointing at the demo, as `abp dashboard` would run it."""
    monkeypatch.setenv("ABP_HOME", str(demo.home.home))
    monkeypatch.setenv("ABP_REGISTRY", str(demo.registry_root))
    return demo
