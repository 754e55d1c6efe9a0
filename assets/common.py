"""What every asset module shares: owners, keys, code versions, retries and quality-check plumbing."""

import hashlib
import inspect
from collections import defaultdict
from collections.abc import Iterable
from types import ModuleType

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    Backoff,
    Jitter,
    MetadataValue,
    RetryPolicy,
)

from ab_pipelines.lake import TableSpec
from ab_pipelines.quality import CheckOutcome, check_names

__all__ = [
    "OWNER",
    "SPARK_RETRY",
    "asset_key",
    "check_results",
    "check_specs",
    "code_version",
]

OWNER = "team:data-platform"

# Transient failures (a lost engine connection, a busy disk) are retried; errors in the data are raised as
# dagster.Failure(allow_retries=False) and fail at once.
SPARK_RETRY = RetryPolicy(
    max_retries=2, delay=15, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)


def asset_key(spec: TableSpec) -> AssetKey:
    return AssetKey([spec.tier, spec.name])


def code_version(*modules: ModuleType, extra: str = "") -> str:
    """A hash of the source of the modules that define a transform: editing them marks it stale."""
    h = hashlib.sha256(extra.encode())
    for m in modules:
        h.update(inspect.getsource(m).encode())
    return h.hexdigest()[:12]


def check_specs(spec: TableSpec) -> list[AssetCheckSpec]:
    """The table's quality checks, all blocking: a failure stops the assets downstream of it."""
    return [
        AssetCheckSpec(name, asset=asset_key(spec), description=desc, blocking=True)
        for name, desc in check_names(spec.qualified)
    ]


def _sample_md(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    cols = sorted({k for r in rows for k in r})
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def check_results(outcomes: Iterable[CheckOutcome]) -> list[AssetCheckResult]:
    """One Dagster check result per (table, check) over the days of a run: failed if any day failed."""
    grouped: dict[tuple[str, str], list[CheckOutcome]] = defaultdict(list)
    for o in outcomes:
        grouped[(o.table, o.check)].append(o)
    out = []
    for (table, check), items in grouped.items():
        failed = [o for o in items if not o.passed]
        shown = failed[0] if failed else items[-1]
        meta = {
            "days": MetadataValue.json([o.day.isoformat() for o in items]),
            "failed_days": MetadataValue.json([o.day.isoformat() for o in failed]),
            "observed": MetadataValue.json({"day": shown.day.isoformat(), **shown.observed}),
        }
        if failed:
            meta["sample_rows"] = MetadataValue.md(_sample_md(shown.sample))
        out.append(
            AssetCheckResult(
                asset_key=AssetKey(table.split(".")),
                check_name=check,
                passed=not failed,
                severity=AssetCheckSeverity.ERROR,
                metadata=meta,
                description=shown.description,
            )
        )
    return out
