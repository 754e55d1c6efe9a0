"""Table maintenance: compact small files, checkpoint the log, vacuum what time travel no longer needs.

The promise: any version of a table younger than ABP_TIME_TRAVEL_DAYS (30) can be read
(``Lake.read_arrow(spec, version=N)``). Vacuum and log cleanup therefore keep exactly that long:
both retentions are table properties (``delta.deletedFileRetentionDuration``,
``delta.logRetentionDuration``) set to the same number of days.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from ab_pipelines.lake.delta import (
    Lake,
    remove_dead_staging,
    retention_properties,
)
from ab_pipelines.lake.tables import TableSpec
from ab_pipelines.settings import settings

__all__ = ["MaintenanceReport", "maintain_table"]

STAGING_GRACE = dt.timedelta(days=1)  # a staging folder older than this belongs to a dead run


@dataclass(frozen=True)
class MaintenanceReport:
    table: str
    version_before: int
    version_after: int
    files_before: int
    files_after: int
    files_vacuumed: int
    staging_removed: int


def maintain_table(
    lake: Lake, spec: TableSpec, retention_days: int | None = None
) -> MaintenanceReport | None:
    """Compact, checkpoint, clean the log and vacuum one table; None if it does not exist yet."""
    if not lake.exists(spec):
        return None
    table = lake.table(spec)
    version_before, files_before = table.version(), len(table.file_uris())
    if retention_days is None:
        retention_days = settings().retention_days
    wanted = retention_properties(retention_days)
    if any(table.metadata().configuration.get(k) != v for k, v in wanted.items()):
        table.alter.set_table_properties(wanted, raise_if_not_exists=False)
    table.optimize.compact(target_size=128 * 1024 * 1024)
    table = lake.table(spec)
    table.create_checkpoint()
    table.cleanup_metadata()
    vacuumed = table.vacuum(
        retention_hours=retention_days * 24,
        dry_run=False,
        enforce_retention_duration=False,
        full=True,
    )
    table = lake.table(spec)
    return MaintenanceReport(
        table=spec.qualified,
        version_before=version_before,
        version_after=table.version(),
        files_before=files_before,
        files_after=len(table.file_uris()),
        files_vacuumed=len(vacuumed),
        staging_removed=remove_dead_staging(
            lake.path(spec) / "_staging", time.time() - STAGING_GRACE.total_seconds()
        ),
    )
