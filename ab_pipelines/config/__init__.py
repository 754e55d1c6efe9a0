"""The registry: experiments and metrics defined in YAML under git."""

from ab_pipelines.config.approvals import approve, content_sha
from ab_pipelines.config.models import Approval, Experiment, Metric, Variant
from ab_pipelines.config.registry import Problem, Registry, RegistryError, load_registry
from ab_pipelines.config.validate import validate_registry

__all__ = [
    "Approval",
    "Experiment",
    "Metric",
    "Problem",
    "Registry",
    "RegistryError",
    "Variant",
    "approve",
    "content_sha",
    "load_registry",
    "validate_registry",
]
