"""The Dagster resource that hands assets the lake, the raw folder, the registry and Spark."""

from dagster import ConfigurableResource, InitResourceContext

from ab_pipelines.config import Registry, load_registry
from ab_pipelines.lake import Lake, engine_tags, spark_session
from ab_pipelines.settings import Paths, ensure_writable_home, paths

__all__ = ["LakeResource"]


class LakeResource(ConfigurableResource):
    """Where the platform's data lives. Empty fields mean: from the environment (ABP_HOME, ABP_REGISTRY)."""

    home: str = ""
    registry_root: str = ""

    def setup_for_execution(self, context: InitResourceContext) -> None:
        ensure_writable_home(self.paths)  # once per run: a clear error before any work
        if context.instance is not None:
            # Before any step claims the engine's pool: a run whose process died would hold
            # its slot forever (schedule and sensor runs too; jobs/recovery.py).
            from jobs.recovery import close_dead_runs

            for state in close_dead_runs(context.instance, self.paths, f"run {context.run_id}"):
                context.log.warning(f"closed {state.describe()}: its process died")

    @property
    def paths(self) -> Paths:
        return paths(self.home or None)

    @property
    def lake(self) -> Lake:
        return Lake(self.paths)

    def registry(self) -> Registry:
        return load_registry(self.registry_root or None)

    def spark(self, context=None):
        """The process's shared Spark Connect session (started on first use).

        Given the asset's context, the run is tagged with the engine, its URL and the session
        (``abp/spark_engine``, ``abp/spark_remote``, ``abp/spark_session``): the Dagster UI
        shows where a run ran.
        """
        spark = spark_session(self.paths.home)
        if context is not None:
            tags = engine_tags(spark)
            if any(context.run.tags.get(k) != v for k, v in tags.items()):
                context.instance.add_run_tags(context.run_id, tags)
        return spark
