"""The safety sensors: pending alerts reach a webhook once it is back; a failed run is an alert."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ab_pipelines.lake import Lake
from ab_pipelines.safety import Condition, open_alerts, pending_notifications, reconcile
from ab_pipelines.safety.notify import enqueue, notifiers_from_env

DAY = dt.date(2026, 11, 5)


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.dagster
def test_deliver_alerts_sensor_delivers_what_waited_for_the_webhook(home, monkeypatch):
    from dagster import build_sensor_context

    from jobs.definitions import defs

    port = _free_port()
    monkeypatch.setenv("ABP_ALERT_WEBHOOK", f"http://127.0.0.1:{port}/hook")
    lake = Lake(home)
    cond = Condition(
        kind="srm",
        severity="critical",
        experiment_id="recs_ranking",
        subject="",
        message="recs_ranking: sample ratio mismatch",
    )
    r = reconcile(lake, DAY, [cond], now=dt.datetime(2026, 11, 6, tzinfo=dt.UTC))
    enqueue(lake, r, notifiers_from_env(home))
    sensor = defs.get_sensor_def("deliver_alerts")

    sensor(build_sensor_context())  # the webhook is down: the row stays pending
    pending = [n for n in pending_notifications(lake) if n["notifier"] == "webhook"]
    assert len(pending) == 1 and pending[0]["attempts"] == 1 and pending[0]["last_error"]

    _Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", port), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # the backoff makes the row due again 30 s after the failed attempt: 5 minutes later
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
        monkeypatch.setenv("ABP_NOW", later.isoformat())
        sensor(build_sensor_context())
    finally:
        server.shutdown()
    assert [x["alert_id"] for x in _Hook.received] == [r.opened[0].alert_id]
    assert not [n for n in pending_notifications(lake) if n["notifier"] == "webhook"]
    assert open_alerts(lake)[0].kind == "srm"


def test_the_safety_sensors_and_asset_are_defined():
    from jobs.definitions import defs

    names = {s.name for s in defs.sensors}
    assert {"deliver_alerts", "run_failure_alerts"} <= names
    analyze = defs.resolve_job_def("analyze")
    keys = {k.to_user_string() for k in analyze.asset_layer.asset_graph.get_all_asset_keys()}
    assert {"ops/alerts", "gold/experiment_results", "gold/srm", "gold/health"} <= keys


@pytest.mark.dagster
def test_results_recomputed_by_hand_trigger_the_safety_pass(home):
    from dagster import AssetKey, DagsterInstance, build_sensor_context

    from jobs.definitions import defs

    instance = DagsterInstance.ephemeral()
    results = AssetKey(["gold", "experiment_results"])
    job = defs.resolve_implicit_global_asset_job_def()
    run = job.execute_in_process(
        instance=instance, partition_key=DAY.isoformat(), asset_selection=[results]
    )
    assert run.success
    sensor = defs.get_sensor_def("alerts_on_new_results")
    repo = defs.get_repository_def()
    out = sensor.evaluate_tick(build_sensor_context(instance=instance, repository_def=repo))
    (request,) = out.run_requests
    assert request.partition_key == DAY.isoformat() and sensor.job_name == "alerts"

    # results written by the analyze job (which runs the safety pass itself) request nothing
    analyze = defs.resolve_job_def("analyze")
    assert "ops/alerts" in {
        k.to_user_string() for k in analyze.asset_layer.asset_graph.get_all_asset_keys()
    }
