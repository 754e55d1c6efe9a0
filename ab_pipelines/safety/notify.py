"""Notifiers and the notification outbox (ops.notifications).

The outbox decouples deciding from telling: :func:`enqueue` records one ``pending`` row per alert
event ("opened" / "closed") and notifier, and :func:`deliver_pending` sends them. A notifier that
is down loses nothing: a failed send records ``attempts`` and ``last_error`` and the row stays
pending, to be retried after an exponential backoff (:class:`Backoff`). Rows are never dropped;
``max_attempts`` only stops retrying (the row stays pending for a human to see). Delivery is at
least once: a crash between a send and the commit of its row resends it.

Notifiers (``notifiers_from_env``): ``log`` (a logger) and ``file`` (``$ABP_HOME/alerts/alerts.jsonl``)
always, ``webhook`` when ``ABP_ALERT_WEBHOOK`` is set (a JSON POST to that URL).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.tables import OPS_NOTIFICATIONS
from ab_pipelines.safety._util import as_utc, dumps, json_safe, table_lock
from ab_pipelines.safety.alerts import Alert, Reconciled
from ab_pipelines.settings import Paths, settings

__all__ = [
    "EVENTS",
    "WEBHOOK_ENV",
    "Backoff",
    "Delivery",
    "JsonLinesNotifier",
    "LogNotifier",
    "NotifyError",
    "Notifier",
    "WebhookNotifier",
    "alerts_file",
    "deliver_pending",
    "enqueue",
    "notification_id_for",
    "notifiers_from_env",
    "payload",
    "pending_notifications",
]

WEBHOOK_ENV = "ABP_ALERT_WEBHOOK"
EVENTS = ("opened", "closed")
PENDING, DELIVERED = "pending", "delivered"
_ERROR_CHARS = 1000


class NotifyError(RuntimeError):
    """A notifier could not deliver a payload (the outbox keeps it pending)."""


@runtime_checkable
class Notifier(Protocol):
    """Something that tells people: ``send`` returns once delivered and raises on failure."""

    name: str

    def send(self, payload: dict[str, Any]) -> None: ...


def _json(payload: dict[str, Any]) -> str:
    return json.dumps(json_safe(payload), sort_keys=True, allow_nan=False)


class LogNotifier:
    """Writes one line per event to a logger: ``warning`` when opened, ``info`` when closed."""

    name = "log"

    def __init__(self, logger: Any | None = None):
        self.logger = logger or logging.getLogger("ab_pipelines.safety")

    def send(self, payload: dict[str, Any]) -> None:
        event = payload.get("event")
        line = (
            f"alert {event} [{payload.get('severity')}] {payload.get('kind')} "
            f"{payload.get('alert_id')}: {payload.get('message')}"
        )
        (self.logger.warning if event == "opened" else self.logger.info)(line)


class JsonLinesNotifier:
    """Appends one JSON line per payload to ``path`` (its folders are created)."""

    name = "file"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def send(self, payload: dict[str, Any]) -> None:
        line = _json(payload) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise NotifyError(f"cannot append to {self.path}: {exc.strerror or exc}") from exc


class WebhookNotifier:
    """POSTs the payload as JSON (``Content-Type: application/json``); anything but 2xx raises."""

    name = "webhook"

    def __init__(self, url: str, timeout: float = 5):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{WEBHOOK_ENV} must be an http(s) URL, got {url[:40]!r}")
        self.url = url
        self.timeout = timeout

    def send(self, payload: dict[str, Any]) -> None:
        body = _json(payload).encode("utf-8")
        req = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "ab-pipelines-alerts"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                status = resp.status
                resp.read()
        except urllib.error.HTTPError as exc:
            raise NotifyError(f"webhook answered HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NotifyError(f"webhook unreachable: {reason}") from exc
        if not 200 <= status < 300:
            raise NotifyError(f"webhook answered HTTP {status}")


def alerts_file(home: Paths) -> Path:
    return home.home / "alerts" / "alerts.jsonl"


def notifiers_from_env(home: Paths, logger: Any | None = None) -> list[Notifier]:
    """log and file always; webhook when ``ABP_ALERT_WEBHOOK`` is set (and not blank)."""
    out: list[Notifier] = [LogNotifier(logger), JsonLinesNotifier(alerts_file(home))]
    url = settings().alert_webhook.strip()
    if url:
        out.append(WebhookNotifier(url))
    return out


# ---- the outbox ---------------------------------------------------------------------------


def payload(alert: Alert, event: str) -> dict[str, Any]:
    """What every notifier receives about one alert event (null, never NaN)."""
    if event not in EVENTS:
        raise ValueError(f"event must be one of {EVENTS}, got {event!r}")
    day = alert.opened_day if event == "opened" else (alert.closed_day or alert.last_seen_day)
    return json_safe(
        {
            "alert_id": alert.alert_id,
            "event": event,
            "kind": alert.kind,
            "severity": alert.severity,
            "experiment_id": alert.experiment_id,
            "subject": alert.subject,
            "day": day,
            "message": alert.message,
            "effect": alert.effect,
            "bound": alert.bound,
            "margin": alert.margin,
            "detail": alert.detail,
        }
    )


def notification_id_for(alert_id: str, event: str, notifier: str) -> str:
    return f"{alert_id}:{event}:{notifier}"


def _names(notifiers: Sequence[Notifier | str]) -> list[str]:
    return [n if isinstance(n, str) else n.name for n in notifiers]


def enqueue(
    lake: Lake,
    events: Reconciled | Iterable[tuple[Alert, str]],
    notifiers: Sequence[Notifier | str],
    now: dt.datetime | None = None,
) -> int:
    """Record a pending notification per alert event and notifier; returns the rows added.

    Idempotent by ``notification_id`` (``alert_id:event:notifier``): an event already in the outbox,
    pending or delivered, is left as it is.
    """
    now = as_utc(now)
    pairs = events.events() if isinstance(events, Reconciled) else list(events)
    names = _names(notifiers)
    with table_lock(lake, OPS_NOTIFICATIONS):
        have = set(
            lake.read_arrow(OPS_NOTIFICATIONS, columns=["notification_id"])
            .column("notification_id")
            .to_pylist()
        )
        rows = []
        for alert, event in pairs:
            body = dumps(payload(alert, event))
            for name in names:
                nid = notification_id_for(alert.alert_id, event, name)
                if nid in have:
                    continue
                have.add(nid)
                rows.append(
                    {
                        "notification_id": nid,
                        "alert_id": alert.alert_id,
                        "event": event,
                        "notifier": name,
                        "status": PENDING,
                        "attempts": 0,
                        "last_error": None,
                        "payload": body,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
        if rows:
            lake.merge_arrow(
                OPS_NOTIFICATIONS, pa.Table.from_pylist(rows, schema=OPS_NOTIFICATIONS.schema)
            )
    return len(rows)


@dataclass(frozen=True)
class Backoff:
    """Wait before retry number k (k = attempts so far >= 1): min(base * 2**(k-1), cap) seconds.

    A row never tried (attempts 0) is due at once. Defaults: 30 s, 1 min, 2 min, ... up to 1 hour.
    """

    base: float = 30.0
    cap: float = 3600.0

    def delay(self, attempts: int) -> float:
        if attempts <= 0:
            return 0.0
        return float(min(self.base * 2 ** min(attempts - 1, 60), self.cap))


@dataclass(frozen=True)
class Delivery:
    """What one deliver_pending pass did, by notification id."""

    delivered: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()  # pending but not tried: in backoff, notifier failed, or unknown

    @property
    def pending(self) -> int:
        return len(self.failed) + len(self.waiting)


def pending_notifications(lake: Lake) -> list[dict[str, Any]]:
    """The pending rows of the outbox, oldest first (an alert's "opened" before its "closed")."""
    rows = [r for r in lake.read_arrow(OPS_NOTIFICATIONS).to_pylist() if r["status"] == PENDING]
    order = {e: i for i, e in enumerate(EVENTS)}
    return sorted(
        rows,
        key=lambda r: (r["created_at"], r["alert_id"], order.get(r["event"], 9), r["notifier"]),
    )


def deliver_pending(
    lake: Lake,
    notifiers: Sequence[Notifier],
    now: dt.datetime | None = None,
    max_attempts: int | None = None,
    backoff: Backoff = Backoff(),
) -> Delivery:
    """Try every pending notification that is due; record the outcome of each attempt.

    A row is due when it was never tried, or when ``backoff.delay(attempts)`` seconds have passed
    since its ``updated_at``. After one failure of a notifier its other rows wait for the next pass
    (a dead webhook costs one timeout per pass, not one per row). Rows for a notifier that is not
    configured, or that reached ``max_attempts`` (None: no limit), stay pending untouched. One
    deliverer at a time (a lock file), so two passes never send the same row twice.
    """
    now = as_utc(now)
    by_name = {n.name: n for n in notifiers}
    delivered: list[str] = []
    failed: list[str] = []
    waiting: list[str] = []
    with table_lock(lake, OPS_NOTIFICATIONS):
        changed: list[dict[str, Any]] = []
        broken: set[str] = set()
        try:
            for row in pending_notifications(lake):
                nid, attempts = row["notification_id"], int(row["attempts"] or 0)
                notifier = by_name.get(row["notifier"])
                due = as_utc(row["updated_at"]) + dt.timedelta(seconds=backoff.delay(attempts))
                if (
                    notifier is None
                    or row["notifier"] in broken
                    or (max_attempts is not None and attempts >= max_attempts)
                    or now < due
                ):
                    waiting.append(nid)
                    continue
                try:
                    notifier.send(json.loads(row["payload"]))
                except Exception as exc:  # any failure keeps the row pending
                    broken.add(row["notifier"])
                    failed.append(nid)
                    error = f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]
                    changed.append(
                        {**row, "attempts": attempts + 1, "last_error": error, "updated_at": now}
                    )
                else:
                    delivered.append(nid)
                    changed.append(
                        {**row, "attempts": attempts + 1, "status": DELIVERED, "updated_at": now}
                    )
        finally:
            if changed:
                lake.merge_arrow(
                    OPS_NOTIFICATIONS,
                    pa.Table.from_pylist(changed, schema=OPS_NOTIFICATIONS.schema),
                )
    return Delivery(tuple(delivered), tuple(failed), tuple(waiting))
