"""Load the registry (experiments/, metrics/ and holdouts/ YAML) with problems naming file, field
and reason. A registry without a holdouts/ folder has no holdouts."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from ab_pipelines.config.models import Experiment, Holdout, Metric
from ab_pipelines.settings import registry_root

__all__ = ["Problem", "Registry", "RegistryError", "load_registry", "read_registry"]


@dataclass(frozen=True)
class Problem:
    """One problem in one registry file.

    Example:
        >>> str(Problem("experiments/x.yaml", "variants", "weights sum to 0.9, not 1"))
        "experiments/x.yaml: field 'variants': weights sum to 0.9, not 1"
        >>> str(Problem("experiments/x.yaml", "", "not valid YAML (line 3: ...)"))
        'experiments/x.yaml: not valid YAML (line 3: ...)'
    """

    file: str  # relative to the registry root, e.g. "experiments/x.yaml"
    field: str  # dotted, e.g. "metrics.primary"; "" when the whole file is at fault
    reason: str

    def __str__(self) -> str:
        where = f" field '{self.field}':" if self.field else ""
        return f"{self.file}:{where} {self.reason}"


class RegistryError(ValueError):
    """One or more problems in registry files; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[Problem] | list[str]):
        self.details = [p for p in problems if isinstance(p, Problem)]
        self.problems = [str(p) for p in problems]
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Registry:
    """The experiments, metrics and holdouts defined in git."""

    experiments: dict[str, Experiment] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)  # "experiments/<id>" -> its file
    holdouts: dict[str, Holdout] = field(default_factory=dict)

    def known_variants(self) -> dict[str, frozenset[str]]:
        """experiment id -> its variant ids: what landing accepts in exposures (a holdout's
        exposures carry its id and its groups, "holdout" and "general")."""
        return {e.id: frozenset(e.variant_ids) for e in self.analysed_experiments.values()}

    @cached_property
    def analysed_experiments(self) -> dict[str, Experiment]:
        """The experiments and, under their own ids, the holdouts as the analysis sees them
        (:meth:`Holdout.as_experiment`): what the daily analysis and ``abp results`` read."""
        return {**self.experiments, **{h.id: h.as_experiment() for h in self.holdouts.values()}}

    def file_of(self, kind: str, id_: str) -> Path:
        """The file defining ``id_`` (``kind`` is "experiments", "metrics" or "holdouts")."""
        return self.files[f"{kind}/{id_}"]


def relative_name(path: Path, root: Path) -> str:
    """``path`` as the registry names it in problems: relative to ``root``, with forward slashes."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def read_yaml_mapping(path: Path, name: str, problems: list[Problem]) -> dict | None:
    """The YAML mapping in ``path``, or None after recording why it is not one."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problems.append(
            Problem(name, "", f"not valid YAML ({where}{getattr(exc, 'problem', exc)})")
        )
        return None
    except UnicodeDecodeError as exc:
        problems.append(Problem(name, "", f"not UTF-8 text (byte {exc.start})"))
        return None
    if not isinstance(data, dict):
        problems.append(
            Problem(name, "", f"expected a mapping of fields, got {type(data).__name__}")
        )
        return None
    return data


def _pydantic_problems(name: str, exc: ValidationError) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        out.append(Problem(name, loc, msg))
    return out


def _load_one(path: Path, name: str, model: type[BaseModel], problems: list[Problem]):
    data = read_yaml_mapping(path, name, problems)
    if data is None:
        return None
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(name, exc))
        return None
    if obj.id != path.stem:
        problems.append(Problem(name, "id", f"'{obj.id}' must equal the file name '{path.stem}'"))
    return obj


def read_registry(root: Path | None = None) -> tuple[Registry, list[Problem]]:
    """Read every registry file; return what loaded and the problems of what did not.

    Collects parse, schema, id-versus-file-name and duplicate-id problems of all files (it does
    not stop at the first). A duplicate id keeps the first file (in name order) and names the second.
    """
    root = Path(root) if root is not None else registry_root()
    problems: list[Problem] = []
    experiments: dict[str, Experiment] = {}
    metrics: dict[str, Metric] = {}
    holdouts: dict[str, Holdout] = {}
    files: dict[str, Path] = {}
    for folder, model, out in (
        ("metrics", Metric, metrics),
        ("experiments", Experiment, experiments),
        ("holdouts", Holdout, holdouts),
    ):
        for path in sorted((root / folder).glob("*.y*ml")):
            name = relative_name(path, root)
            obj = _load_one(path, name, model, problems)
            if obj is None:
                continue
            key = f"{folder}/{obj.id}"
            if key in files:
                other = relative_name(files[key], root)
                problems.append(
                    Problem(name, "id", f"duplicate {folder[:-1]} id '{obj.id}' (also in {other})")
                )
                continue
            out[obj.id] = obj
            files[key] = path
    registry = Registry(experiments=experiments, metrics=metrics, files=files, holdouts=holdouts)
    return registry, problems


def load_registry(root: Path | None = None) -> Registry:
    """Read ``root/{experiments,metrics,holdouts}/*.yaml``; raise RegistryError on problems.

    Checks everything ``validate_registry`` checks except approvals and the published state (those
    are publishing's concern), so code that loads the registry can trust its contents.
    """
    # validate.py holds the rules and imports this module, hence the late import.
    from ab_pipelines.config.validate import content_problems

    root = Path(root) if root is not None else registry_root()
    registry, problems = read_registry(root)
    problems += content_problems(registry, root)
    if problems:
        raise RegistryError(problems)
    return registry
