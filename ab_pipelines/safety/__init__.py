"""The safety plane: alert conditions, alert episodes in ops.alerts, and notifications.

Pure Python on the Delta tables (no Dagster, no Spark). A day's flow::

    from ab_pipelines.safety import (conditions_for_day, stopped_experiments, reconcile,
                                     enqueue, deliver_pending, notifiers_from_env)
    conds = conditions_for_day(lake, registry, day)
    r = reconcile(lake, day, conds, stopped_experiments=stopped_experiments(lake, registry, day))
    notifiers = notifiers_from_env(home)
    enqueue(lake, r, notifiers)          # outbox rows, status pending
    deliver_pending(lake, notifiers)     # sends what is due; failures stay pending

(``reconcile_day`` does the first two lines.)

Conditions (:mod:`.conditions`): facts about one analysis day read from gold.experiment_results
(``guardrail_breach``, critical, subject ``metric/variant``), gold.srm (``srm``, critical),
gold.health (``crossovers``, warning), ops.dq_results (``dq_failed``, critical, no experiment,
subject ``table.check``), silver.exposure_counts (``no_exposures``, warning: a running
experiment with no exposure event on that day) and gold.interactions (``interaction``, warning,
experiment A of the pair, subject ``B/metric``: the daily scan flagged that the two experiments
interact on the metric; the message names the pair, the metric and the cells). A missing table
yields no condition.

Rules of ops.alerts (:mod:`.alerts`):

- **Episode.** An alert is identified by (kind, experiment_id, subject); one alert per episode,
  ``alert_id = kind:experiment_id:subject:opened_day``. A condition extends the open alert of its
  identity (``last_seen_day``, numbers and message refreshed) or opens a new one: a breach on days
  1, 2, 3 is one alert; back on day 6 after a gap it is a second alert.
- **Closing.** An open alert closes on ``day`` when its kind is in the evaluated scope
  (``scope_kinds``, default all condition kinds), its identity has no condition on ``day`` and
  ``day`` is after its ``last_seen_day``. Alerts of stopped or killed experiments
  (``stopped_experiments``) close regardless, and those experiments' conditions open nothing.
- **Out-of-order days: the newest evaluated day wins.** Re-running a day before an open alert's
  ``last_seen_day`` neither extends nor closes it; a day before a closed alert's ``closed_day``
  opens nothing for its identity. Re-running a day with the same conditions writes nothing
  (idempotent; the table version does not move).
- ``run_failed`` alerts (subject = run id) are opened by ``record_run_failure`` (once per run),
  never close automatically, and are closed by ``close_alert``.

Notifications (:mod:`.notify`):

- **Outbox.** ``enqueue`` writes one ops.notifications row per alert event ("opened", "closed")
  and notifier, ``notification_id = alert_id:event:notifier``, status ``pending``; enqueuing the
  same events again adds nothing. ``deliver_pending`` sends the due rows, marks successes
  ``delivered``, and on failure records ``attempts`` and ``last_error`` and keeps the row pending:
  rows are never dropped (``max_attempts``, default none, only stops retrying). Delivery is at least
  once.
- **Backoff.** A row never tried is due at once; after k failed attempts it is due
  ``min(base * 2**(k-1), cap)`` seconds after its last attempt (``Backoff(base=30, cap=3600)``).
  A notifier that fails is not tried again in the same pass.
- **Payload** (every notifier): ``alert_id, event, kind, severity, experiment_id, subject, day,
  message, effect, bound, margin, detail``; ``day`` is the opened or closed day; null, never NaN.

Settings:

- ``ABP_ALERT_WEBHOOK``: when set, ``notifiers_from_env`` adds a webhook notifier that POSTs each
  payload as JSON to this URL (5 s timeout; anything but a 2xx answer is a failure, retried).
  The log notifier and the file ``$ABP_HOME/alerts/alerts.jsonl`` are always on.
"""

from ab_pipelines.safety.alerts import (
    RUN_FAILED,
    Alert,
    Reconciled,
    alert_id_for,
    close_alert,
    open_alerts,
    read_alerts,
    recent_alerts,
    reconcile,
    reconcile_day,
    record_run_failure,
)
from ab_pipelines.safety.conditions import (
    CONDITION_KINDS,
    Condition,
    conditions_for_day,
    stopped_experiments,
)
from ab_pipelines.safety.notify import (
    WEBHOOK_ENV,
    Backoff,
    Delivery,
    JsonLinesNotifier,
    LogNotifier,
    Notifier,
    NotifyError,
    WebhookNotifier,
    alerts_file,
    deliver_pending,
    enqueue,
    notifiers_from_env,
    payload,
    pending_notifications,
)

__all__ = [
    "CONDITION_KINDS",
    "RUN_FAILED",
    "WEBHOOK_ENV",
    "Alert",
    "Backoff",
    "Condition",
    "Delivery",
    "JsonLinesNotifier",
    "LogNotifier",
    "Notifier",
    "NotifyError",
    "Reconciled",
    "WebhookNotifier",
    "alert_id_for",
    "alerts_file",
    "close_alert",
    "conditions_for_day",
    "deliver_pending",
    "enqueue",
    "notifiers_from_env",
    "open_alerts",
    "payload",
    "pending_notifications",
    "read_alerts",
    "recent_alerts",
    "reconcile",
    "reconcile_day",
    "record_run_failure",
    "stopped_experiments",
]
