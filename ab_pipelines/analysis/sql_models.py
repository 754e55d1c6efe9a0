"""A tiny dbt: SQL models with ``{{ ref('...') }}`` lineage, rendered by jinja and run in Spark SQL.

Each ``<name>.sql`` in a folder is one model. A model may use:

- ``{{ ref('other') }}``: the result of model ``other`` (it becomes a dependency; the name is a
  temp view, so the rendered SQL reads it like a table);
- ``{{ source('name') }}``: a source table given to :func:`run_models` (a temp view); like a
  ref, it is found in the file's text, so the lineage (and the Dagster assets) know what each
  model reads;
- ``{{ var('name') }}``: a value given to :func:`run_models`;
- ``{{ value | sql }}``: a Python value as a SQL literal (strings quoted and escaped, lists as
  comma-separated literals), so no template pastes raw text into SQL;
- ``{% import '_macros.sql' as mac %}``: shared macros; a file whose name starts with ``_`` is not
  a model.

Dependencies come from the literal ``ref('...')`` calls in the file; models run in topological
order. A ref to an unknown model or a cycle is an error naming the file.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.sql").write_text("SELECT 1 AS x")
    >>> _ = (d / "b.sql").write_text("SELECT x FROM {{ ref('a') }}")
    >>> models = load_models(d)
    >>> topological_order(models), models["b"].refs
    (['a', 'b'], ('a',))
    >>> render(models["b"], {})
    'SELECT x FROM a'
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from ab_pipelines.lake.engine import checkpoint, release_checkpoints
from ab_pipelines.settings import REPO_ROOT

__all__ = [
    "MODELS_DIR",
    "Model",
    "ModelError",
    "load_models",
    "models_reading",
    "render",
    "run_models",
    "sql_literal",
    "topological_order",
]

MODELS_DIR = REPO_ROOT / "dbt_like_sql"

_REF = re.compile(r"""\bref\(\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]\s*\)""")
_SOURCE = re.compile(r"""\bsource\(\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]\s*\)""")


class ModelError(ValueError):
    """A model folder that cannot be run: unknown ref, cycle, missing var."""


@dataclass(frozen=True)
class Model:
    """One SQL model: its name (the file stem), file, jinja text, the models it refs, its sources."""

    name: str
    path: Path
    template: str
    refs: tuple[str, ...]
    sources: tuple[str, ...] = ()


def load_models(folder: Path | str = MODELS_DIR) -> dict[str, Model]:
    """Every ``*.sql`` in ``folder`` as a :class:`Model`; raise ModelError on a bad ref or a cycle."""
    models = {}
    for path in sorted(Path(folder).glob("*.sql")):
        if path.name.startswith("_"):  # shared macros, imported by models
            continue
        text = path.read_text(encoding="utf-8")
        refs = tuple(dict.fromkeys(_REF.findall(text)))  # unique, in order of first use
        sources = tuple(dict.fromkeys(_SOURCE.findall(text)))
        models[path.stem] = Model(path.stem, path, text, refs, sources)
    for m in models.values():
        unknown = [r for r in m.refs if r not in models]
        if unknown:
            raise ModelError(f"{m.path}: ref to unknown model(s) {', '.join(unknown)}")
    topological_order(models)  # fails on a cycle
    return models


def models_reading(models: Mapping[str, Model], sources: Iterable[str]) -> dict[str, Model]:
    """The models that can run on ``sources`` alone: each reads only sources among them and refs
    only such models (one folder holds the per-experiment models and the day-level ones, which read
    what the per-experiment runs left behind).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "a.sql").write_text("SELECT * FROM {{ source('events') }}")
        >>> _ = (d / "b.sql").write_text("SELECT * FROM {{ ref('a') }}")
        >>> _ = (d / "c.sql").write_text("SELECT * FROM {{ source('cells') }}")
        >>> sorted(models_reading(load_models(d), ["events"]))
        ['a', 'b']
    """
    given, out = set(sources), {}
    for name in topological_order(models):
        m = models[name]
        if set(m.sources) <= given and all(r in out for r in m.refs):
            out[name] = m
    return out


def topological_order(models: Mapping[str, Model]) -> list[str]:
    """Model names, each after the models it refs (ties by name); ModelError on a cycle."""
    order: list[str] = []
    state: dict[str, str] = {}  # "visiting" | "done"

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = [*path[path.index(name) :], name]
            raise ModelError(f"{models[name].path}: ref cycle {' -> '.join(cycle)}")
        state[name] = "visiting"
        for dep in models[name].refs:
            if dep not in models:
                raise ModelError(f"{models[name].path}: ref to unknown model {dep}")
            visit(dep, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in sorted(models):
        visit(name, [])
    return order


def sql_literal(value: Any) -> str:
    """A Python value as a Spark SQL literal.

    Examples:
        >>> sql_literal("it's"), sql_literal(3), sql_literal(None), sql_literal(["a", "b"])
        ("'it\\\\'s'", '3', 'NULL', "'a', 'b'")
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(sql_literal(v) for v in value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")  # Spark's default escaping
    return f"'{text}'"


@functools.lru_cache(maxsize=256)
def _compiled(folder: Path, template: str) -> jinja2.Template:
    """A model's template compiled once per process (compiling was 1.2 s of a day's analysis of
    20 experiments: every model of every experiment, and the macros each imports). The
    environment is the folder's, so ``{% import %}`` finds its siblings; it reloads a sibling
    changed on disk, and a changed model is a new template text."""
    return _environment(folder).from_string(template)


@functools.lru_cache(maxsize=16)
def _environment(folder: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    env.filters["sql"] = sql_literal
    return env


def render(model: Model, vars: Mapping[str, Any]) -> str:
    """The model's SQL with refs and vars filled in."""

    def ref(name: str) -> str:
        if name not in model.refs:  # e.g. a ref built at render time, invisible to the lineage
            raise ModelError(f"{model.path}: ref('{name}') is not a literal ref of this model")
        return name

    def source(name: str) -> str:
        if name not in model.sources:
            raise ModelError(
                f"{model.path}: source('{name}') is not a literal source of this model"
            )
        return name

    def var(name: str) -> Any:
        if name not in vars:
            raise ModelError(f"{model.path}: var('{name}') was not given")
        return vars[name]

    template = _compiled(model.path.parent, model.template)
    return template.render(ref=ref, source=source, var=var).strip()


def release(spark, out: dict[str, Any], names: Iterable[str]) -> None:
    """Free the rows kept for the models persisted by :func:`run_models` and drop their views.

    A checkpointed frame is held by the server until its last client reference goes, so the
    frames are dropped from ``out`` too (Spark Connect then releases the cached relation).
    """
    kept = []
    for name in names:
        spark.catalog.dropTempView(name)
        if name in out:
            kept.append(out.pop(name))
    release_checkpoints(kept)


def run_models(
    spark,
    models: Mapping[str, Model],
    vars: Mapping[str, Any],
    sources: Mapping[str, Any],
    persist: Iterable[str] = (),
    given: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Register ``sources`` as temp views, run every model in order; name -> DataFrame.

    Each result is also a temp view named after its model, which is how ``ref`` reads it. Views
    live in the session, so two runs in one session must not overlap in time. The models named in
    ``persist`` are computed once, as they are created, and kept by the engine (a local checkpoint), so
    the models and actions that read them do not recompute them; the caller frees them with
    :func:`release`. ``given``: frames computed earlier for some of the models (by a run of the same
    models on the same sources and vars), used as they are instead of running those models again;
    they stay the caller's to release.
    """
    persist, given = set(persist), dict(given or {})
    unknown = set(given) - set(models)
    if unknown:
        raise ModelError(f"given names unknown model(s): {', '.join(sorted(unknown))}")
    unknown = persist - set(models)
    if unknown:
        raise ModelError(f"persist names unknown model(s): {', '.join(sorted(unknown))}")
    for m in models.values():
        missing = [s for s in m.sources if s not in sources]
        if missing:
            raise ModelError(f"{m.path}: source(s) {', '.join(missing)} not given")
    for name, df in sources.items():
        df.createOrReplaceTempView(name)
    out = {}
    for name in topological_order(models):
        if name in given:
            df = given[name]
            df.createOrReplaceTempView(name)
            out[name] = df
            continue
        sql = render(models[name], vars)
        if name in persist:
            # Computed now, once, and kept by the engine with its lineage cut, so the models and
            # actions reading it scan the kept rows. (A cache by plan, persist() or cacheTable,
            # was not matched inside these models' plans on JVM Spark, and does nothing on Sail.)
            df = checkpoint(spark.sql(sql))
            df.createOrReplaceTempView(name)
        else:
            # The view made from the text, then a frame of the view: one round trip to the
            # engine (a frame of the text, then a view of the frame, took two: 2-3 ms each, 16
            # models per experiment). Like the text, the view reads its refs' views.
            spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW `{name}` AS\n{sql}")
            df = spark.table(f"`{name}`")
        out[name] = df
    return out
