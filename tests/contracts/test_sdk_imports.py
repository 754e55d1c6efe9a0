"""The SDK imports nothing outside the standard library, mmh3, cryptography and its own package
(CONTRACTS section 6, issue 24), read from the import graph with ``ast``; the contracts import
nothing of the rest of ``ab_pipelines``."""

from __future__ import annotations

import sys
import tomllib

from tests.contracts.sdk_imports import (
    PACKAGE,
    REPO_ROOT,
    SDK_DEPENDENCIES,
    closure,
    imports_of,
    is_stdlib,
    sdk_violations,
    top,
)

CONTRACTS = sorted(
    f"ab_pipelines.contracts.{p.stem}" for p in (PACKAGE / "contracts").glob("*.py")
) + ["ab_pipelines.contracts"]
SDK_ROOTS = [
    "ab_pipelines",
    *sorted(
        f"ab_pipelines.assignment.{p.stem}"
        for p in (PACKAGE / "assignment").glob("*.py")
        if p.stem != "__init__"
    ),
    "ab_pipelines.assignment",
    *CONTRACTS,
]


def test_the_sdk_imports_only_the_standard_library_mmh3_and_cryptography():
    graph = closure(SDK_ROOTS)
    assert "ab_pipelines.assignment.client" in graph and "ab_pipelines.contracts.payload" in graph
    assert sdk_violations(graph) == []


def test_the_sdk_reaches_no_platform_module():
    graph = closure(SDK_ROOTS)
    platform = ("analysis", "lake", "stats", "quality", "safety", "simulate", "config", "edge")
    reached = [m for m in graph if m.split(".")[1:2] and m.split(".")[1] in platform]
    assert reached == []
    assert not [m for m in graph if m.startswith(("ab_pipelines.cli", "ab_pipelines.events.parse"))]


def test_the_contracts_import_the_standard_library_and_each_other_only():
    for name in CONTRACTS:
        for i in imports_of(name):
            allowed = is_stdlib(i.target) or i.target.startswith("ab_pipelines.contracts")
            # the bucket function is mmh3's: the one non-stdlib import of the contracts
            allowed = allowed or (name == "ab_pipelines.contracts.hashing" and i.target == "mmh3")
            assert allowed and not i.lazy, f"{name}:{i.line} imports {i.target}"


def test_the_check_catches_a_platform_import():
    """Mutation: the walk flags a module that imports pandas, at module level or lazily."""
    source = "import json\nimport pandas\n\ndef f():\n    import pyspark.sql\n    import orjson\n"
    found = sdk_violations({"ab_pipelines.assignment.fake": imports_of("x.fake", source)})
    assert [v.split(" imports ")[1] for v in found] == ["pandas", "pyspark.sql (lazily)"]
    assert sdk_violations({"m": imports_of("x.m", "import mmh3, hashlib\n")}) == []


def test_the_distribution_depends_on_the_sdk_dependencies_only():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    names = {
        d.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().replace("-", "_")
        for d in project["dependencies"]
    }
    assert names == set(SDK_DEPENDENCIES)
    extras = project["optional-dependencies"]
    assert {"kafka", "platform", "dev"} <= set(extras)
    platform = " ".join(extras["platform"])
    for heavy in ("pyspark", "dagster", "pandas", "pyarrow", "streamlit", "confluent-kafka"):
        assert heavy in platform


def test_importing_the_sdk_here_loads_no_platform_package():
    """The same in a fresh interpreter of this venv (where the platform is installed)."""
    import subprocess

    code = (
        "import sys, ab_pipelines.assignment, ab_pipelines.contracts.approval;"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    loaded = set(out.stdout.split())
    outside = {m for m in loaded if not is_stdlib(m) and not m.startswith("_")}
    # the editable install's finder and setuptools' shim come from site-packages, not the SDK
    outside -= {"ab_pipelines", "__editable___ab_pipelines_0_1_0_finder", "_distutils_hack"}
    assert {top(m) for m in outside} <= set(SDK_DEPENDENCIES) | {"_cffi_backend"}, outside
