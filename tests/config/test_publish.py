"""The config plane: compile, sign, version on change only, kill switch, refusing a broken registry."""

from __future__ import annotations

import json

import pytest

from ab_pipelines.assignment import Client
from ab_pipelines.assignment.signing import verify_envelope
from ab_pipelines.config.publish import PublishRefused, current_payload, kill, publish
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import OPS_AUDIT_LOG, OPS_KILLS


def test_publish_signs_and_moves_the_version_only_on_change(home, registry_copy):
    first = publish(home, registry_copy)
    assert first.changed and first.version == 1
    envelope = json.loads((home.edge / "config.json").read_text())
    payload = verify_envelope(envelope)
    assert payload["version"] == 1 and set(payload["experiments"]) == {
        "checkout_cta",
        "checkout_layout",
        "hero_video",
        "homepage_aa",
        "promo_banner",
        "recs_ranking",
        "search_speed",
    }
    cta = payload["experiments"]["checkout_cta"]
    assert cta["layer_buckets"] == [0, 5000] and cta["variant_buckets"] == [
        [0, 5000],
        [5000, 10000],
    ]
    recs = payload["experiments"]["recs_ranking"]
    assert recs["variant_buckets"] == [[0, 3000], [5000, 8000]]  # allocation 0.6
    again = publish(home, registry_copy)
    assert not again.changed and again.version == 1
    assert (home.edge / "versions" / "config-v1.json").read_text() == (
        home.edge / "config.json"
    ).read_text()


def test_a_broken_registry_is_refused_and_the_last_good_config_serves(home, registry_copy):
    publish(home, registry_copy)
    good = (home.edge / "config.json").read_bytes()
    (registry_copy / "experiments" / "homepage_aa.yaml").write_text(
        "id: homepage_aa\nvariants: [oops\n"
    )
    with pytest.raises(PublishRefused) as err:
        publish(home, registry_copy)
    assert any("homepage_aa.yaml" in p for p in err.value.problems)
    assert (home.edge / "config.json").read_bytes() == good


def test_kill_serves_the_baseline_and_survives_republish(home, registry_copy):
    publish(home, registry_copy)
    result = kill(
        home,
        "checkout_cta",
        "conversion crashed",
        "oncall@example.com",
        registry_root=registry_copy,
    )
    assert result.version == 2
    client = Client.from_file(str(home.edge / "config.json"))
    assert {client.assign(f"user-{i}", "checkout_cta") for i in range(500)} == {"control"}
    assert not publish(home, registry_copy).changed  # a republish does not undo it
    assert current_payload(home)["experiments"]["checkout_cta"]["status"] == "killed"
    lake = Lake(home)
    (k,) = lake.read_arrow(OPS_KILLS).to_pylist()
    assert (k["experiment_id"], k["by"], k["reason"]) == (
        "checkout_cta",
        "oncall@example.com",
        "conversion crashed",
    )
    actions = [r["action"] for r in lake.read_arrow(OPS_AUDIT_LOG).to_pylist()]
    assert actions.count("kill") == 1 and actions.count("publish") == 2


def test_kill_works_even_when_the_registry_is_broken(home, registry_copy):
    publish(home, registry_copy)
    (registry_copy / "experiments" / "search_speed.yaml").write_text("::: not yaml")
    result = kill(
        home, "search_speed", "pages too slow", "oncall@example.com", registry_root=registry_copy
    )
    assert result.changed
    assert current_payload(home)["experiments"]["search_speed"]["serve_variant"] == "control"


def test_kill_of_an_unknown_experiment_is_one_sentence(home, registry_copy):
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        kill(home, "nope", "x", "a@example.com", registry_root=registry_copy)


def test_a_polling_client_serves_the_baseline_from_its_next_refresh(
    home, registry_copy, monkeypatch
):
    publish(home, registry_copy)
    client = Client.from_file(str(home.edge / "config.json"), refresh_seconds=30)
    users = [f"user-{i}" for i in range(400)]
    before = {client.assign(u, "homepage_aa") for u in users}
    assert before == {"a", "b"}
    kill(home, "homepage_aa", "A/A alarm", "oncall@example.com", registry_root=registry_copy)
    assert {client.assign(u, "homepage_aa") for u in users} == before  # not refreshed yet
    client.refresh()  # what the next refresh interval does
    assert client.config_version == 2
    assert {client.assign(u, "homepage_aa") for u in users} == {"a"}
