"""The dependency rules of ../shared/STYLE.md, read from the source with ``ast``.

- ``ab_pipelines`` (the library) never imports Dagster, Streamlit, ``assets``, ``jobs`` or
  ``streamlit_app``: those use the library, not the other way round (the commands that drive Dagster
  or start the dashboard are in ``jobs/cli.py``).
- ``ab_pipelines.stats`` imports neither Spark, pandas, Dagster nor deltalake, also through the
  library modules it imports, so an analyst can use it in a notebook.

Every import counts, also one inside a function (the lazy imports the CLI uses) or under
``TYPE_CHECKING``. The SDK's own rule (the standard library, mmh3 and cryptography only) is in the
SDK's tests.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from ab_pipelines.settings import REPO_ROOT

LIBRARY = REPO_ROOT / "ab_pipelines"

NOT_IN_LIBRARY = ("dagster", "streamlit", "assets", "jobs", "streamlit_app")
NOT_IN_STATS = ("pyspark", "pandas", "dagster", "deltalake")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. ab_pipelines.cli
    line: int
    target: str  # the imported module, e.g. dagster._core.storage.tags

    def __str__(self) -> str:
        path = self.module.replace(".", "/")
        return f"{path}.py line {self.line}: imports {self.target}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[Import]:
    """Every module ``path`` imports, with its line (relative imports made absolute)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [Import(module, node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            out.append(Import(module, node.lineno, target))
            # `from ab_pipelines import stats` imports the module ab_pipelines.stats
            out += [Import(module, node.lineno, f"{target}.{a.name}") for a in node.names]
    return out


def _library() -> dict[str, list[Import]]:
    return {_module_name(p): _imports(p) for p in sorted(LIBRARY.rglob("*.py"))}


def _is(target: str, roots: tuple[str, ...]) -> bool:
    return any(target == r or target.startswith(f"{r}.") for r in roots)


def _report(imports: list[Import]) -> list[str]:
    """One line per import statement (``from x import a, b`` is one)."""
    first = {}
    for i in imports:
        first.setdefault((i.module, i.line), i)
    return [str(first[k]) for k in sorted(first)]


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


def test_the_walk_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    """The checker itself: a lazy import inside a function and a relative import are found."""
    import tests.test_architecture as me

    root = tmp_path / "repo"
    pkg = root / "ab_pipelines" / "x"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "y.py").write_text(
        "import os\n\ndef run():\n    from jobs.definitions import defs\n"
        "    return defs\n\nfrom . import z\nfrom ..stats import srm\n"
    )
    monkeypatch.setattr(me, "REPO_ROOT", root)
    found = {(i.line, i.target) for i in _imports(pkg / "y.py")}
    assert (4, "jobs.definitions") in found
    assert (7, "ab_pipelines.x.z") in found
    assert (8, "ab_pipelines.stats.srm") in found
    assert _is("jobs.definitions", NOT_IN_LIBRARY) and not _is("jobsworth", NOT_IN_LIBRARY)
