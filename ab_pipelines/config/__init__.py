"""The registry: experiments and metrics defined in YAML under git."""

from ab_pipelines.config.models import Experiment, Metric, Variant
from ab_pipelines.config.registry import Registry, RegistryError, load_registry

__all__ = ["Experiment", "Metric", "Registry", "RegistryError", "Variant", "load_registry"]
