"""The dependency rules of ../shared/STYLE.md, read from the source with ``ast``.

- ``ab_pipelines`` (the library) never imports Dagster, Streamlit, ``assets``, ``jobs`` or
  ``streamlit_app``: those use the library, not the other way round (the commands that drive Dagster
  or start the dashboard are in ``jobs/cli.py``).
- ``ab_pipelines.stats`` imports neither Spark, pandas, Dagster nor deltalake, also through the
  library modules it imports, so an analyst can use it in a notebook.

Every import counts, also one inside a function (the lazy imports the CLI uses); imports under
``TYPE_CHECKING`` (annotations only) do not. The walker is the SDK tests' one
(``tests/contracts/sdk_imports.py``). The SDK's own rule (the standard library, mmh3 and
cryptography only) is in the SDK's tests.
"""

from __future__ import annotations

from ab_pipelines.settings import REPO_ROOT
from tests.contracts.sdk_imports import Import, imports_of

LIBRARY = REPO_ROOT / "ab_pipelines"

NOT_IN_LIBRARY = ("dagster", "streamlit", "assets", "jobs", "streamlit_app")
NOT_IN_STATS = ("pyspark", "pandas", "dagster", "deltalake")


def _library() -> dict[str, list[Import]]:
    """Every library module's imports (the SDK tests' walker: lazy and relative ones too)."""
    out = {}
    for path in sorted(LIBRARY.rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = None
    return {name: imports_of(name) for name in out}


def _is(target: str, roots: tuple[str, ...]) -> bool:
    return any(target == r or target.startswith(f"{r}.") for r in roots)


def _report(imports: list[Import]) -> list[str]:
    """One line per import statement (``from x import a, b`` is one)."""
    first = {}
    for i in imports:
        first.setdefault((i.module, i.line), i)
    return [
        f"{first[k].module.replace('.', '/')}.py line {first[k].line}: imports {first[k].target}"
        for k in sorted(first)
    ]


def test_the_library_imports_no_dagster_streamlit_assets_or_jobs():
    modules = _library()
    assert len(modules) > 50  # the walk found the library
    bad = _report([i for imps in modules.values() for i in imps if _is(i.target, NOT_IN_LIBRARY)])
    assert not bad, "the library must not import these:\n" + "\n".join(bad)


def test_stats_imports_no_spark_pandas_dagster_or_deltalake():
    modules = _library()
    # stats and every library module it reaches: a notebook importing stats imports them all
    reached, todo = set(), [m for m in modules if _is(m, ("ab_pipelines.stats",))]
    while todo:
        m = todo.pop()
        if m in reached:
            continue
        reached.add(m)
        todo += [i.target for i in modules[m] if i.target in modules]
    assert "ab_pipelines.stats" in reached
    bad = _report([i for m in sorted(reached) for i in modules[m] if _is(i.target, NOT_IN_STATS)])
    assert not bad, "ab_pipelines.stats must not import these:\n" + "\n".join(bad)


def test_the_walk_sees_function_level_and_relative_imports():
    """The checker itself: a lazy import inside a function and a relative import are found."""
    source = (
        "import os\n\ndef run():\n    from jobs.definitions import defs\n"
        "    return defs\n\nfrom . import z\nfrom ..stats import srm\n"
    )
    found = {(i.line, i.target) for i in imports_of("ab_pipelines.x.y", source)}
    assert (4, "jobs.definitions") in found
    assert (7, "ab_pipelines.x") in found
    assert (8, "ab_pipelines.stats.srm") in found
    assert _is("jobs.definitions", NOT_IN_LIBRARY) and not _is("jobsworth", NOT_IN_LIBRARY)
