"""Alert episodes in ops.alerts: conditions of successive days become one alert per episode.

The rules (also in the package docstring):

- **Identity.** An alert is about (kind, experiment_id, subject). At most one alert per identity is
  open; its ``alert_id`` is ``kind:experiment_id:subject:opened_day``.
- **Episode.** A condition on ``day`` extends the identity's open alert (``last_seen_day`` = day,
  severity, numbers, message and detail refreshed) or, when none is open, opens a new alert.
- **Closing.** An open alert closes (``closed_day`` = day, ``closed_at`` = now) when its kind was
  evaluated (``scope_kinds``, default every kind of :data:`CONDITION_KINDS`), it has no condition on
  ``day`` and ``day`` is after its ``last_seen_day``. An open alert of a stopped or killed
  experiment closes whatever the day (``closed_day`` = the later of day and last_seen_day), and
  conditions of such experiments are ignored, so they open nothing.
- **Out of order days: the newest evaluated day wins.** A day before an open alert's
  ``last_seen_day`` changes nothing for it (neither extends nor closes it), and a day before a
  closed alert's ``closed_day`` opens nothing for its identity: re-running old days never rewrites
  an episode. A re-run of the newest day refreshes numbers; a re-run with the same conditions
  writes nothing (no new table version), so reconcile is idempotent.
- ``run_failed`` alerts (subject = the run id) come from :func:`record_run_failure`, are never
  closed by :func:`reconcile`, and close with :func:`close_alert`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from ab_pipelines.config.registry import Registry
from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.tables import OPS_ALERTS
from ab_pipelines.safety._util import as_utc, dumps, num, table_lock, utc_now
from ab_pipelines.safety.conditions import (
    CONDITION_KINDS,
    CRITICAL,
    Condition,
    conditions_for_day,
    stopped_experiments,
)

__all__ = [
    "RUN_FAILED",
    "Alert",
    "Reconciled",
    "alert_id_for",
    "close_alert",
    "open_alerts",
    "read_alerts",
    "recent_alerts",
    "reconcile",
    "reconcile_day",
    "record_run_failure",
]

RUN_FAILED = "run_failed"
OPEN, CLOSED = "open", "closed"
_MESSAGE_CHARS = 300
_ERROR_CHARS = 4000
_SEVERITY_ORDER = {CRITICAL: 0}


def alert_id_for(kind: str, experiment_id: str, subject: str, opened_day: dt.date) -> str:
    return f"{kind}:{experiment_id}:{subject}:{opened_day.isoformat()}"


@dataclass(frozen=True)
class Alert:
    """One row of ops.alerts (``detail`` parsed from its JSON)."""

    alert_id: str
    kind: str
    severity: str
    status: str
    experiment_id: str
    subject: str
    opened_day: dt.date
    last_seen_day: dt.date
    closed_day: dt.date | None
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    effect: float | None
    bound: float | None
    margin: float | None
    message: str
    detail: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.kind, self.experiment_id, self.subject)

    @property
    def is_open(self) -> bool:
        return self.status == OPEN

    def to_row(self) -> dict[str, Any]:
        row = {name: getattr(self, name) for name in OPS_ALERTS.schema.names}
        row["detail"] = dumps(self.detail)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Alert:
        values = dict(row)
        values["detail"] = json.loads(row["detail"]) if row.get("detail") else {}
        for t in ("opened_at", "closed_at"):
            if values[t] is not None:
                values[t] = as_utc(values[t])
        return cls(**values)


@dataclass(frozen=True)
class Reconciled:
    """What one reconcile (or record/close) changed: alerts opened, updated in place, closed."""

    opened: tuple[Alert, ...] = ()
    updated: tuple[Alert, ...] = ()
    closed: tuple[Alert, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.opened or self.updated or self.closed)

    def events(self) -> list[tuple[Alert, str]]:
        """(alert, "opened" | "closed") for notifications; an update notifies nobody."""
        return [(a, "opened") for a in self.opened] + [(a, "closed") for a in self.closed]


def read_alerts(lake: Lake) -> list[Alert]:
    """Every alert in ops.alerts (none if the table does not exist yet)."""
    return [Alert.from_row(r) for r in lake.read_arrow(OPS_ALERTS).to_pylist()]


def _write(lake: Lake, alerts: Iterable[Alert]) -> None:
    rows = [a.to_row() for a in alerts]
    if rows:
        lake.merge_arrow(OPS_ALERTS, pa.Table.from_pylist(rows, schema=OPS_ALERTS.schema))


def _normal_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """The detail as it reads back from the table (so unchanged alerts compare equal)."""
    return json.loads(dumps(detail))


def _refresh(alert: Alert, c: Condition, day: dt.date) -> Alert:
    return replace(
        alert,
        last_seen_day=max(alert.last_seen_day, day),
        severity=c.severity,
        effect=num(c.effect),
        bound=num(c.bound),
        margin=num(c.margin),
        message=c.message,
        detail=_normal_detail(c.detail),
    )


def _close(alert: Alert, day: dt.date, now: dt.datetime) -> Alert:
    return replace(alert, status=CLOSED, closed_day=day, closed_at=now)


def reconcile(
    lake: Lake,
    day: dt.date,
    conditions: Iterable[Condition],
    *,
    scope_kinds: Iterable[str] | None = None,
    stopped_experiments: Iterable[str] = (),
    now: dt.datetime | None = None,
) -> Reconciled:
    """Turn the conditions holding on ``day`` into alert episodes in ops.alerts (module rules).

    ``scope_kinds`` are the kinds that were evaluated for ``day`` (only their alerts can close for
    lack of a condition); ``stopped_experiments`` are stopped or killed experiments, whose open
    alerts close and whose conditions are ignored. Conditions of the same identity after the
    first are ignored.
    """
    now = as_utc(now)
    scope = set(CONDITION_KINDS if scope_kinds is None else scope_kinds) - {RUN_FAILED}
    stopped = set(stopped_experiments)
    wanted: dict[tuple[str, str, str], Condition] = {}
    for c in conditions:
        if c.kind == RUN_FAILED:
            raise ValueError("run_failed alerts are recorded with record_run_failure")
        if c.experiment_id and c.experiment_id in stopped:
            continue
        wanted.setdefault(c.identity, c)

    with table_lock(lake, OPS_ALERTS):
        alerts = read_alerts(lake)
        by_id = {a.alert_id: a for a in alerts}
        by_identity: dict[tuple[str, str, str], list[Alert]] = defaultdict(list)
        for a in alerts:
            by_identity[a.identity].append(a)
        opened: list[Alert] = []
        updated: list[Alert] = []
        closed: list[Alert] = []

        for ident, c in wanted.items():
            mine = by_identity.get(ident, [])
            current = next((a for a in mine if a.is_open), None)
            if current is not None:
                if day < current.last_seen_day:
                    continue  # an older day: the episode keeps the newest day's view
                new = _refresh(current, c, day)
                if new != current:
                    updated.append(new)
                continue
            latest = max(mine, key=lambda a: (a.opened_day, a.alert_id), default=None)
            if latest is not None and latest.closed_day is not None and day < latest.closed_day:
                continue  # inside or before a past episode: history is not rewritten
            alert_id = alert_id_for(c.kind, c.experiment_id, c.subject, day)
            if alert_id in by_id:
                continue  # this episode opened and closed (its experiment stopped) on that day
            opened.append(
                Alert(
                    alert_id=alert_id,
                    kind=c.kind,
                    severity=c.severity,
                    status=OPEN,
                    experiment_id=c.experiment_id,
                    subject=c.subject,
                    opened_day=day,
                    last_seen_day=day,
                    closed_day=None,
                    opened_at=now,
                    closed_at=None,
                    effect=num(c.effect),
                    bound=num(c.bound),
                    margin=num(c.margin),
                    message=c.message,
                    detail=_normal_detail(c.detail),
                )
            )

        for a in alerts:
            if not a.is_open or a.kind == RUN_FAILED:
                continue
            if a.experiment_id and a.experiment_id in stopped:
                closed.append(_close(a, max(day, a.last_seen_day), now))
            elif a.kind in scope and a.identity not in wanted and day > a.last_seen_day:
                closed.append(_close(a, day, now))

        _write(lake, [*opened, *updated, *closed])
    return Reconciled(tuple(opened), tuple(updated), tuple(closed))


def reconcile_day(
    lake: Lake, registry: Registry, day: dt.date, now: dt.datetime | None = None
) -> Reconciled:
    """Evaluate every condition kind on ``day`` and reconcile: what the pipeline runs per day."""
    return reconcile(
        lake,
        day,
        conditions_for_day(lake, registry, day),
        stopped_experiments=stopped_experiments(lake, registry, day),
        now=now,
    )


def record_run_failure(
    lake: Lake,
    run_id: str,
    job_name: str,
    message: str,
    now: dt.datetime | None = None,
) -> Reconciled:
    """Open a critical ``run_failed`` alert for a failed run (once per run id; never auto-closes)."""
    now = as_utc(now)
    text = (message or "").strip()
    first = text.splitlines()[0] if text else "no error message"
    if len(first) > _MESSAGE_CHARS:
        first = first[: _MESSAGE_CHARS - 3] + "..."
    with table_lock(lake, OPS_ALERTS):
        if any(a.kind == RUN_FAILED and a.subject == run_id for a in read_alerts(lake)):
            return Reconciled()
        day = now.date()
        alert = Alert(
            alert_id=alert_id_for(RUN_FAILED, "", run_id, day),
            kind=RUN_FAILED,
            severity=CRITICAL,
            status=OPEN,
            experiment_id="",
            subject=run_id,
            opened_day=day,
            last_seen_day=day,
            closed_day=None,
            opened_at=now,
            closed_at=None,
            effect=None,
            bound=None,
            margin=None,
            message=f"run {run_id} of job {job_name} failed: {first}",
            detail={"run_id": run_id, "job_name": job_name, "error": text[:_ERROR_CHARS]},
        )
        _write(lake, [alert])
    return Reconciled(opened=(alert,))


def close_alert(
    lake: Lake, alert_id: str, now: dt.datetime | None = None, day: dt.date | None = None
) -> Reconciled:
    """Close one alert by hand (how ``run_failed`` alerts end); closing a closed alert is a no-op.

    ``closed_day`` is ``day`` (default: today in UTC), never before the alert's last_seen_day.
    """
    now = as_utc(now)
    with table_lock(lake, OPS_ALERTS):
        found = [a for a in read_alerts(lake) if a.alert_id == alert_id]
        if not found:
            raise KeyError(f"no alert {alert_id!r} in ops.alerts")
        alert = found[0]
        if not alert.is_open:
            return Reconciled()
        done = _close(alert, max(day or now.date(), alert.last_seen_day), now)
        _write(lake, [done])
    return Reconciled(closed=(done,))


def _sorted(alerts: Sequence[Alert]) -> list[Alert]:
    """Open first, critical first, most recent first."""

    def key(a: Alert):
        latest = a.closed_day or a.last_seen_day
        return (
            not a.is_open,
            _SEVERITY_ORDER.get(a.severity, 1),
            -latest.toordinal(),
            -a.opened_day.toordinal(),
            a.alert_id,
        )

    return sorted(alerts, key=key)


def open_alerts(lake: Lake) -> list[Alert]:
    """Every open alert: critical first, then the most recently seen."""
    return _sorted([a for a in read_alerts(lake) if a.is_open])


def recent_alerts(lake: Lake, days: int = 7, today: dt.date | None = None) -> list[Alert]:
    """Open alerts plus those closed in the ``days`` days up to ``today`` (default: today, UTC)."""
    today = today or utc_now().date()
    since = today - dt.timedelta(days=days)
    return _sorted(
        [a for a in read_alerts(lake) if a.is_open or (a.closed_day and a.closed_day > since)]
    )
