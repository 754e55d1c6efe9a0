"""A scheduled job that compacts, checkpoints and vacuums every lake table."""

from dagster import OpExecutionContext, ScheduleDefinition, job, op

from ab_pipelines.lake.maintenance import maintain_table
from ab_pipelines.lake.tables import TABLES
from ab_pipelines.settings import settings
from assets.resources import LakeResource

__all__ = ["maintain_tables", "maintenance_schedule"]


@op(
    pool="spark",
    description="Compact, checkpoint and vacuum (keeping "
    f"{settings().retention_days} days) every table.",
)
def maintain_all_tables(context: OpExecutionContext, lake: LakeResource) -> None:
    for spec in TABLES.values():
        report = maintain_table(lake.lake, spec)
        if report is not None:
            context.log.info(
                f"{report.table}: files {report.files_before} -> {report.files_after}, "
                f"version {report.version_before} -> {report.version_after}, "
                f"{report.files_vacuumed} files vacuumed, {report.staging_removed} dead staging folders"
            )


@job(
    description="Table maintenance: compaction, log checkpoints, vacuum within the time-travel promise."
)
def maintain_tables():
    maintain_all_tables()


# 03:30 UTC, after the daily landing (00:30) and its analysis.
maintenance_schedule = ScheduleDefinition(job=maintain_tables, cron_schedule="30 3 * * *")
