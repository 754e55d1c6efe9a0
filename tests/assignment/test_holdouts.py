"""Rules 3b and 8b, holdouts (issue 25, part 5), on the corpus payload: both client paths, the reasons,
the exposures, and the payload contract around ``holdouts``."""

from __future__ import annotations

import pandas as pd
import pytest

from ab_pipelines.analysis.assigner import assign_frame
from ab_pipelines.assignment import Client, ListExposureSink, bucket
from ab_pipelines.contracts.payload import PayloadError, build_payload, read_payload
from tests.assignment import corpus

USERS = [f"r-{i}" for i in range(20_000)]


def _held(u: str) -> bool:
    return bucket("longterm_2026", u) < 1000


def test_the_corpus_has_held_out_users_who_would_otherwise_be_in():
    cases = [c for c in corpus()["cases"] if c["experiment_id"] == "search_layout"]
    would_be_in = [
        c for c in cases if _held(c["user_id"]) and bucket("search", c["user_id"]) < 6000
    ]
    assert would_be_in and all(
        c["expected"] is None for c in would_be_in if "qa" not in c["user_id"]
    )


def test_fast_path_full_path_and_spark_side_agree_on_random_users():
    p = corpus()["payload"]
    fast = Client.from_payload(p, trusted=True)
    assert "search_layout" in fast._fast  # the compiled closure serves it
    full = Client.from_payload(p, trusted=True)
    full._fast = {}  # every call through _evaluate
    frame = assign_frame(pd.Series(USERS), None, p["experiments"]["search_layout"], p["holdouts"])
    got = [fast.assign(u, "search_layout") for u in USERS]
    assert got == [full.assign(u, "search_layout") for u in USERS] == frame.tolist()
    held = [v for u, v in zip(USERS, got, strict=True) if _held(u)]
    assert len(held) > 1500 and set(held) == {None}
    share_in = sum(v is not None for v in got) / len(USERS)
    assert share_in == pytest.approx(0.9 * 0.6, abs=0.02)


def test_an_override_still_serves_a_held_out_user_a_shipped_variant_does_not():
    p = corpus()["payload"]
    client = Client.from_payload(p, trusted=True)
    (qa,) = p["experiments"]["search_layout"]["overrides"]
    assert _held(qa) and client.assign(qa, "search_layout") == "treatment"
    # search_filters is stopped with its treatment shipped: everyone gets it but the holdout,
    # which keeps measuring what the layer's shipped features add (rule 3b before rule 4)
    held = [u for u in USERS if _held(u)][:200]
    assert {client.assign(u, "search_filters") for u in held} == {None}
    others = [u for u in USERS if not _held(u)][:200]
    assert {client.assign(u, "search_filters") for u in others} == {"treatment"}
    frame = assign_frame(
        pd.Series(held + others), None, p["experiments"]["search_filters"], p["holdouts"]
    )
    assert frame.tolist() == [None] * 200 + ["treatment"] * 200


def test_holdout_exposures_name_the_group_once_per_unit():
    """Rule 8b: a unit reaching the holdout rule in a held layer is logged once under the
    holdout's id: "holdout" in [0, 1000), "general" in [1000, 2000), nothing above."""
    p = corpus()["payload"]
    sink = ListExposureSink()
    client = Client.from_payload(p, trusted=True, exposure_sink=sink)
    assert "search_layout" not in client._fast  # a held layer's experiments take the full path
    users = USERS[:3000]
    for u in users:
        for exp_id in ("search_layout", "search_filters", "search_layout"):
            client.assign(u, exp_id)
    held = [e for e in sink.events if e["experiment_id"] == "longterm"]
    want = {
        u: "holdout" if b < 1000 else "general"
        for u in users
        if (b := bucket("longterm_2026", u)) < 2000
    }
    assert {e["unit"]: e["variant"] for e in held} == want
    assert len(held) == len(want)  # once per unit, whichever experiment reached it first
    assert 0.08 < sum(v == "general" for v in want.values()) / len(users) < 0.12
    # the experiments' own exposures are as before: none for held-out units
    logged = {e["unit"] for e in sink.events if e["experiment_id"] == "search_layout"}
    assert logged and not any(want.get(u) == "holdout" for u in logged)


def test_no_exposure_and_the_reason_for_a_held_out_unit():
    p = corpus()["payload"]
    sink = ListExposureSink()
    client = Client.from_payload(p, trusted=True, exposure_sink=sink)
    held = [u for u in USERS if _held(u) and bucket("search", u) < 6000][:50]
    for u in held:
        assert client.assign(u, "search_layout") is None
    assert client.evaluate(held[0], experiments=["search_layout"]) == {
        "search_layout": (None, "holdout longterm")
    }
    # no exposure of the experiment; one of the holdout, group "holdout" (rule 8b)
    assert {(e["experiment_id"], e["variant"]) for e in sink.events} == {("longterm", "holdout")}
    assert sorted(e["unit"] for e in sink.events) == sorted(held)
    why = client.explain(held[0], "search_layout")
    assert why["held_out_by"] == "longterm" and why["decided_by"] == "holdout longterm"
    assert why["holdouts"] == {"longterm": [0, 1000]}
    # a unit keyed on an attribute: the holdout hashes that unit
    dev = next(f"d{i}" for i in range(1000) if bucket("device_hold", f"d{i}") < 2000)
    assert client.evaluate("any", {"device_id": dev}, ["device_font"])["device_font"] == (
        None,
        "holdout device_hold",
    )


def test_a_payload_without_holdouts_is_valid_and_keeps_its_sha():
    p = corpus()["payload"]
    plain = build_payload(p["experiments"], 1, None)
    assert "holdouts" not in plain
    assert read_payload(plain).holdouts == {}
    assert build_payload(p["experiments"], 1, None, {})["content_sha"] == plain["content_sha"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h: h["longterm"].pop("salt"), "holdouts.longterm lacks field"),
        (lambda h: h["longterm"].update(range=[0, 20000]), "holdouts.longterm.range"),
        (lambda h: h["longterm"].update(layers="search"), "holdouts.longterm.layers"),
    ],
)
def test_a_bad_holdout_is_refused_naming_the_field(edit, message):
    p = corpus()["payload"]
    edit(p["holdouts"])
    with pytest.raises(PayloadError, match=message):
        read_payload(build_payload(p["experiments"], 1, None, p["holdouts"]))


def test_the_sha_covers_the_holdouts():
    p = corpus()["payload"]
    p["holdouts"]["longterm"]["range"] = [0, 500]
    with pytest.raises(PayloadError, match="content_sha does not match the experiments and"):
        read_payload(p)
