"""Load the registry (experiments/ and metrics/ YAML) with errors naming file, line and field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from ab_pipelines.config.models import Experiment, Metric
from ab_pipelines.settings import registry_root

__all__ = ["Registry", "RegistryError", "load_registry"]


class RegistryError(ValueError):
    """One or more problems in registry files; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Registry:
    """The experiments and metrics defined in git."""

    experiments: dict[str, Experiment] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    def known_variants(self) -> dict[str, frozenset[str]]:
        """experiment id -> its variant ids: what landing accepts in exposures."""
        return {e.id: frozenset(e.variant_ids) for e in self.experiments.values()}


def _load_one(path: Path, model: type, problems: list[str]):
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problems.append(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path}: expected a mapping of fields, got {type(data).__name__}")
        return None
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "(top)"
            problems.append(f"{path}: field '{loc}': {err['msg']}")
        return None
    if obj.id != path.stem:
        problems.append(f"{path}: field 'id': '{obj.id}' must equal the file name '{path.stem}'")
    return obj


def load_registry(root: Path | None = None) -> Registry:
    """Read ``root/experiments/*.yaml`` and ``root/metrics/*.yaml``; raise RegistryError on problems."""
    root = Path(root) if root is not None else registry_root()
    problems: list[str] = []
    experiments: dict[str, Experiment] = {}
    metrics: dict[str, Metric] = {}
    files: dict[str, Path] = {}
    for folder, model, out in (
        ("metrics", Metric, metrics),
        ("experiments", Experiment, experiments),
    ):
        for path in sorted((root / folder).glob("*.y*ml")):
            obj = _load_one(path, model, problems)
            if obj is not None:
                out[obj.id] = obj
                files[f"{folder}/{obj.id}"] = path
    if problems:
        raise RegistryError(problems)
    return Registry(experiments=experiments, metrics=metrics, files=files)
