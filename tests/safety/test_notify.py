"""Notifiers and the outbox, with a real HTTP server on 127.0.0.1 for the webhook."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ab_pipelines.lake.tables import OPS_NOTIFICATIONS
from ab_pipelines.safety import (
    Backoff,
    Condition,
    JsonLinesNotifier,
    LogNotifier,
    NotifyError,
    WebhookNotifier,
    alerts_file,
    deliver_pending,
    enqueue,
    notifiers_from_env,
    payload,
    pending_notifications,
    reconcile,
)

D1, D2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
NOW = Backoff(base=0, cap=0)  # retry at once


def breach() -> Condition:
    return Condition(
        kind="guardrail_breach",
        severity="critical",
        experiment_id="exp",
        subject="page_load_ms/treatment",
        message="exp: guardrail page_load_ms breached by treatment (+8.00%)",
        effect=0.08,
        bound=0.06,
        margin=0.05,
        detail={"variant": "treatment", "p": math.nan},
    )


class Server:
    """A local webhook receiver answering ``status``; records every request."""

    def __init__(self, port: int = 0, status: int = 200):
        self.requests: list[dict] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                self.send_response(outer.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def outbox(lake) -> dict[str, dict]:
    return {r["notification_id"]: r for r in lake.read_arrow(OPS_NOTIFICATIONS).to_pylist()}


def test_payload_has_every_field_and_no_nan(lake):
    (a,) = reconcile(lake, D1, [breach()], now=T0).opened
    p = payload(a, "opened")
    assert list(p) == [
        "alert_id",
        "event",
        "kind",
        "severity",
        "experiment_id",
        "subject",
        "day",
        "message",
        "effect",
        "bound",
        "margin",
        "detail",
    ]
    assert p["day"] == "2026-03-01" and p["detail"] == {"variant": "treatment", "p": None}
    json.dumps(p, allow_nan=False)
    with pytest.raises(ValueError):
        payload(a, "updated")


def test_enqueue_one_row_per_event_and_notifier_idempotently(lake, home):
    notifiers = [LogNotifier(), JsonLinesNotifier(alerts_file(home))]
    r1 = reconcile(lake, D1, [breach()], now=T0)
    assert enqueue(lake, r1, notifiers, now=T0) == 2
    assert enqueue(lake, r1, notifiers, now=T0) == 0
    r2 = reconcile(lake, D2, [], now=T0)
    assert enqueue(lake, r2, ["log", "file"], now=T0) == 2
    rows = outbox(lake)
    a = r1.opened[0].alert_id
    assert sorted(rows) == sorted(
        f"{a}:{e}:{n}" for e in ("opened", "closed") for n in ("log", "file")
    )
    assert {(r["status"], r["attempts"], r["last_error"]) for r in rows.values()} == {
        ("pending", 0, None)
    }
    assert json.loads(rows[f"{a}:closed:file"]["payload"])["day"] == "2026-03-02"


def test_jsonl_file_gets_one_line_per_event(lake, home):
    notifiers = [JsonLinesNotifier(alerts_file(home))]
    r1 = reconcile(lake, D1, [breach()], now=T0)
    enqueue(lake, r1, notifiers, now=T0)
    enqueue(lake, reconcile(lake, D2, [], now=T0), notifiers, now=T0)
    d = deliver_pending(lake, notifiers, now=T0)
    assert len(d.delivered) == 2 and d.pending == 0
    assert not deliver_pending(lake, notifiers, now=T0).delivered  # nothing twice
    lines = alerts_file(home).read_text().splitlines()
    assert [json.loads(x)["event"] for x in lines] == ["opened", "closed"]
    assert alerts_file(home) == home.home / "alerts" / "alerts.jsonl"
    assert {r["status"] for r in outbox(lake).values()} == {"delivered"}


def test_webhook_down_then_up_delivers_exactly_once(lake):
    port = closed_port()
    hook = WebhookNotifier(f"http://127.0.0.1:{port}/hook", timeout=2)
    r = reconcile(lake, D1, [breach()], now=T0)
    enqueue(lake, r, [hook], now=T0)
    (nid,) = outbox(lake)

    d1 = deliver_pending(lake, [hook], now=T0, backoff=NOW)
    assert d1.failed == (nid,) and not d1.delivered
    row = outbox(lake)[nid]
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert "unreachable" in row["last_error"]
    d2 = deliver_pending(lake, [hook], now=T0, backoff=NOW)
    assert d2.failed == (nid,) and outbox(lake)[nid]["attempts"] == 2

    s = Server(port=port)
    try:
        d3 = deliver_pending(lake, [hook], now=T0, backoff=NOW)
        assert d3.delivered == (nid,)
        assert not deliver_pending(lake, [hook], now=T0, backoff=NOW).delivered
        (req,) = s.requests
    finally:
        s.stop()
    assert req["path"] == "/hook"
    assert req["headers"]["Content-Type"] == "application/json"
    assert json.loads(req["body"]) == payload(r.opened[0], "opened")
    row = outbox(lake)[nid]
    assert (row["status"], row["attempts"]) == ("delivered", 3)
    assert "unreachable" in row["last_error"]  # the last failure stays for the record
    assert pending_notifications(lake) == []


def test_a_500_is_a_failure(lake, server):
    server.status = 500
    hook = WebhookNotifier(server.url)
    with pytest.raises(NotifyError, match="HTTP 500"):
        hook.send({"x": 1})
    enqueue(lake, reconcile(lake, D1, [breach()], now=T0), [hook], now=T0)
    d = deliver_pending(lake, [hook], now=T0, backoff=NOW)
    assert len(d.failed) == 1
    (row,) = outbox(lake).values()
    assert row["status"] == "pending" and "HTTP 500" in row["last_error"]
    server.status = 204
    assert len(deliver_pending(lake, [hook], now=T0, backoff=NOW).delivered) == 1
    assert len(server.requests) == 3  # the direct send, the failed and the delivered one


def test_backoff_waits_and_rows_are_never_dropped(lake):
    hook = WebhookNotifier(f"http://127.0.0.1:{closed_port()}/", timeout=1)
    enqueue(lake, reconcile(lake, D1, [breach()], now=T0), [hook], now=T0)
    b = Backoff(base=60, cap=300)
    assert [b.delay(k) for k in range(6)] == [0, 60, 120, 240, 300, 300]

    t = T0
    assert len(deliver_pending(lake, [hook], now=t, backoff=b).failed) == 1  # first try: at once
    assert (
        len(deliver_pending(lake, [hook], now=t + dt.timedelta(seconds=59), backoff=b).waiting) == 1
    )
    t += dt.timedelta(seconds=60)
    assert len(deliver_pending(lake, [hook], now=t, backoff=b).failed) == 1
    assert (
        len(deliver_pending(lake, [hook], now=t + dt.timedelta(seconds=119), backoff=b).waiting)
        == 1
    )
    # max_attempts stops retrying but keeps the row
    d = deliver_pending(lake, [hook], now=t + dt.timedelta(days=1), backoff=b, max_attempts=2)
    assert len(d.waiting) == 1 and not d.failed
    (row,) = outbox(lake).values()
    assert (row["status"], row["attempts"]) == ("pending", 2)
    # a notifier that is not configured leaves its rows alone
    assert len(deliver_pending(lake, [], now=t + dt.timedelta(days=1)).waiting) == 1


def test_one_failing_notifier_does_not_hold_back_the_others(lake, home):
    hook = WebhookNotifier(f"http://127.0.0.1:{closed_port()}/", timeout=1)
    file = JsonLinesNotifier(alerts_file(home))
    enqueue(lake, reconcile(lake, D1, [breach()], now=T0), [hook, file], now=T0)
    enqueue(lake, reconcile(lake, D2, [], now=T0), [hook, file], now=T0)
    d = deliver_pending(lake, [hook, file], now=T0, backoff=NOW)
    # the webhook fails once, its second row waits for the next pass; the file gets both
    assert len(d.delivered) == 2 and len(d.failed) == 1 and len(d.waiting) == 1
    assert all(n.endswith(":file") for n in d.delivered)
    assert len(alerts_file(home).read_text().splitlines()) == 2


def test_log_notifier_warns_on_open_and_informs_on_close(lake):
    class Recorder:
        def __init__(self):
            self.lines = []

        def warning(self, msg):
            self.lines.append(("warning", msg))

        def info(self, msg):
            self.lines.append(("info", msg))

    rec = Recorder()
    log = LogNotifier(rec)
    (a,) = reconcile(lake, D1, [breach()], now=T0).opened
    (c,) = reconcile(lake, D2, [], now=T0).closed
    log.send(payload(a, "opened"))
    log.send(payload(c, "closed"))
    assert [lvl for lvl, _ in rec.lines] == ["warning", "info"]
    assert "guardrail page_load_ms breached" in rec.lines[0][1]
    LogNotifier(logging.getLogger("test")).send(payload(a, "opened"))  # a real Logger works too


def test_notifiers_from_env(home, monkeypatch):
    monkeypatch.delenv("ABP_ALERT_WEBHOOK", raising=False)
    assert [n.name for n in notifiers_from_env(home)] == ["log", "file"]
    monkeypatch.setenv("ABP_ALERT_WEBHOOK", "http://127.0.0.1:9/alerts")
    ns = notifiers_from_env(home)
    assert [n.name for n in ns] == ["log", "file", "webhook"]
    assert ns[1].path == home.home / "alerts" / "alerts.jsonl"
    assert ns[2].url == "http://127.0.0.1:9/alerts"
    monkeypatch.setenv("ABP_ALERT_WEBHOOK", "not a url")
    with pytest.raises(ValueError, match="ABP_ALERT_WEBHOOK"):
        notifiers_from_env(home)
