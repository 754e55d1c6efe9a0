"""The config plane asset: the registry plus kills, compiled and signed into the edge config."""

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

import ab_pipelines.assignment.hashing
import ab_pipelines.config.publish
from ab_pipelines.config.publish import PublishRefused, publish
from assets.clock import run_clock
from assets.common import OWNER, code_version
from assets.resources import LakeResource

__all__ = ["edge_config"]


@asset(
    key=["config", "edge_config"],
    group_name="config",
    owners=[OWNER],
    kinds={"json"},
    code_version=code_version(ab_pipelines.config.publish, ab_pipelines.assignment.hashing),
    description="The signed edge config ($ABP_HOME/edge/config.json) the SDK reads: running, "
    "stopped and killed experiments with their bucket ranges. A new version only on change.",
)
def edge_config(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    try:
        result = publish(
            lake.paths, lake.registry_root or None, actor="dagster", now=run_clock(context)
        )
    except PublishRefused as exc:
        raise Failure(
            description="the registry does not validate; the last good config keeps serving",
            metadata={"problems": MetadataValue.md("\n".join(f"- {p}" for p in exc.problems))},
            allow_retries=False,
        ) from None
    context.log.info(
        f"edge config version {result.version} ({'new' if result.changed else 'unchanged'})"
    )
    return MaterializeResult(
        metadata={
            "version": MetadataValue.int(result.version),
            "changed": MetadataValue.bool(result.changed),
            "experiments": MetadataValue.json(list(result.experiments)),
            "path": MetadataValue.path(str(result.path)),
        }
    )
