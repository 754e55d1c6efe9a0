"""/events and /assign's exposures reach Kafka (the embedded broker, found through ABP_HOME)."""

from __future__ import annotations

import json

import pytest

from ab_pipelines.events.kafka import EmbeddedBroker, KafkaSettings, ensure_topics
from tests.assignment import experiment, payload
from tests.edge import request, start_edge, write_config
from tests.events.test_producer import _consume

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.xdist_group("edge-kafka")]


def test_events_and_exposures_arrive_in_kafka(tmp_path):
    home = tmp_path / "abp"
    write_config(
        home,
        payload(
            {
                "checkout": experiment("checkout"),
                "anon_banner": experiment("anon_banner", unit="anonymous_id"),
            },
            3,
        ),
    )
    with EmbeddedBroker(home, record=True) as broker:  # found by the edge's producers
        ensure_topics(broker.bootstrap, KafkaSettings())
        with start_edge(home) as (url, _):
            status, headers, body = request(url, "POST", "/assign", {"user_id": "kafka-user-1"})
            assert status == 200
            anonymous_id = json.loads(body)["anonymous_id"]
            batch = {
                "events": [
                    {
                        "event": "purchase",
                        "value": 19.5,
                        "user_id": "kafka-user-1",
                        "properties": {"currency": "EUR"},
                        "ts": "2026-11-05T10:00:00+01:00",
                    },
                    {"event": "page_view", "ts": 1793869200},  # the anonymous id's
                ]
            }
            cookie = headers["Set-Cookie"].split(";")[0]
            status, _, body = request(url, "POST", "/events", batch, {"Cookie": cookie})
            assert (status, json.loads(body)) == (202, {"accepted": 2})
            events = _consume(broker.bootstrap, "metric_events", 2)
            exposures = _consume(broker.bootstrap, "exposures", 2)
    got = sorted((json.loads(m.value()) for m in events), key=lambda e: e["event"])
    assert [(e["event"], e["user_id"], e["value"]) for e in got] == [
        ("page_view", anonymous_id, 1),
        ("purchase", "kafka-user-1", 19.5),
    ]
    assert got[1]["ts"] == "2026-11-05T09:00:00.000Z" and got[1]["properties"] == {
        "currency": "EUR"
    }
    assert got[0]["ts"] == "2026-11-05T09:00:00.000Z"
    by_exp = {json.loads(m.value())["experiment_id"]: json.loads(m.value()) for m in exposures}
    assert set(by_exp) == {"checkout", "anon_banner"}
    for exp in by_exp.values():  # the user id used, and the anonymous id beside it
        assert exp["user_id"] == "kafka-user-1"
        assert exp["attributes"]["anonymous_id"] == anonymous_id
        assert exp["config_version"] == 3
    keys = {json.loads(m.value())["experiment_id"]: m.key().decode() for m in exposures}
    assert keys == {"checkout": "kafka-user-1", "anon_banner": anonymous_id}  # key = the unit
