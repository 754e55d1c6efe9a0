"""The safety pass of one analysis day: alerts, notifications and automatic kills.

Run after ``gold.experiment_results`` of the day (the Dagster asset ``ops/alerts``):

1. :func:`~ab_pipelines.safety.alerts.reconcile_day` opens, extends and closes alert episodes;
2. every opened/closed alert is queued for every notifier (the outbox, ``ops.notifications``);
3. **automatic kill**: an experiment with ``auto_kill: true`` whose guardrail breach is confirmed on
   its latest look (the breach alert is open and was seen on ``day``, and ``day`` is the latest day
   with results for that experiment, so re-running an old day never kills) is killed through the
   same path as ``abp kill`` (:func:`ab_pipelines.config.publish.kill`: ``ops.kills``, the audit log
   and a new edge config serving the baseline), by ``system``, with the alert as the reason;
4. the due notifications are delivered; what fails stays pending for the next pass.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from ab_pipelines.analysis.scorecard import analysed_days
from ab_pipelines.analysis.state import experiment_state
from ab_pipelines.config.registry import Registry
from ab_pipelines.lake import Lake
from ab_pipelines.safety.alerts import (
    Alert,
    Reconciled,
    open_alerts,
    reconcile_day,
    record_run_failure,
)
from ab_pipelines.safety.notify import (
    Delivery,
    Notifier,
    deliver_pending,
    enqueue,
    notifiers_from_env,
)
from ab_pipelines.settings import Paths
from ab_pipelines.settings import now as clock

__all__ = [
    "AUTO_KILL_ACTOR",
    "AutoKill",
    "SafetyDay",
    "alert_run_failure",
    "auto_kill",
    "safety_day",
]

AUTO_KILL_ACTOR = "system"


@dataclass(frozen=True)
class AutoKill:
    experiment_id: str
    alert_id: str
    reason: str
    config_version: int


@dataclass(frozen=True)
class SafetyDay:
    day: dt.date
    reconciled: Reconciled
    kills: tuple[AutoKill, ...]
    delivery: Delivery


def auto_kill(
    home: Paths,
    lake: Lake,
    registry: Registry,
    day: dt.date,
    now: dt.datetime | None = None,
    registry_root=None,
) -> list[AutoKill]:
    """Kill every ``auto_kill`` experiment whose guardrail breach is confirmed on its latest look."""
    from ab_pipelines.config.publish import kill

    breaches: dict[str, Alert] = {}
    for a in open_alerts(lake):
        if a.kind == "guardrail_breach" and a.last_seen_day == day:
            breaches.setdefault(a.experiment_id, a)
    out = []
    for exp_id, alert in sorted(breaches.items()):
        exp = registry.experiments.get(exp_id)
        if exp is None or not exp.auto_kill:
            continue
        state = experiment_state(lake, registry, exp_id, day)
        # Killed at any time (also since the day ended) is killed: a kill is never repeated.
        if state.kill is not None or state.registry_status != "running":
            continue
        days = analysed_days(lake, exp_id)
        if not days or days[-1] != day:
            continue  # a re-run of an older day: not the latest look
        reason = f"auto-kill: {alert.message} (alert {alert.alert_id})"
        result = kill(
            home, exp_id, reason=reason, by=AUTO_KILL_ACTOR, registry_root=registry_root, now=now
        )
        out.append(AutoKill(exp_id, alert.alert_id, reason, result.version))
    return out


def safety_day(
    home: Paths,
    lake: Lake,
    registry: Registry,
    day: dt.date,
    notifiers: Sequence[Notifier],
    now: dt.datetime | None = None,
    registry_root=None,
) -> SafetyDay:
    """Alerts, outbox, automatic kills and delivery for analysis day ``day`` (see the module doc)."""
    now = now or clock()
    reconciled = reconcile_day(lake, registry, day, now=now)
    enqueue(lake, reconciled, notifiers, now=now)
    kills = auto_kill(home, lake, registry, day, now=now, registry_root=registry_root)
    delivery = deliver_pending(lake, notifiers, now=now)
    return SafetyDay(day, reconciled, tuple(kills), delivery)


def alert_run_failure(
    home: Paths,
    run_id: str,
    job_name: str,
    message: str,
    logger=None,
    now: dt.datetime | None = None,
) -> Reconciled:
    """A failed run: open its ``run_failed`` alert (once per run id), queue and deliver it.

    Called by the ``run_failure_alerts`` sensor and by ``abp run`` for its in-process runs (no
    daemon watches those), so a failure is alerted either way, and only once. ``now``: the
    platform's clock (default: the settings').
    """
    lake = Lake(home)
    message = " ".join(message.split())  # one line: Dagster's errors span several
    now = now or clock()
    r = record_run_failure(lake, run_id, job_name, message, now=now)
    notifiers = notifiers_from_env(home, logger)
    enqueue(lake, r, notifiers, now=now)
    deliver_pending(lake, notifiers, now=now)
    return r
