"""The SDK against the shared corpus tests/data/assignment_cases.json, and at scale."""

from __future__ import annotations

import importlib.util
from collections import Counter

import pytest

from ab_pipelines.assignment import Client, bucket
from tests.assignment import CORPUS_PATH, corpus


def _client() -> Client:
    return Client.from_payload(corpus()["payload"], trusted=True)


def test_buckets_equal_the_corpus():
    rows = corpus()["buckets"]
    assert len(rows) >= 50
    assert [bucket(r["salt"], r["unit"]) for r in rows] == [r["bucket"] for r in rows]


def test_sdk_agrees_with_every_case():
    client = _client()
    cases = corpus()["cases"]
    assert len(cases) >= 300
    wrong = [
        (c, got)
        for c in cases
        if (got := client.assign(c["user_id"], c["experiment_id"], c["attributes"]))
        != c["expected"]
    ]
    assert wrong == []


def test_corpus_covers_the_boundary_buckets():
    c = corpus()
    hero = {
        bucket("homepage_hero", x["user_id"])
        for x in c["cases"]
        if x["experiment_id"] == "homepage_hero"
    }
    layer = {
        bucket("checkout", x["user_id"]) for x in c["cases"] if x["experiment_id"] == "checkout_cta"
    }
    assert {0, 4999, 5000, 9999} <= hero and {0, 4999, 5000, 9999} <= layer


def test_corpus_file_is_what_the_script_writes():
    script = CORPUS_PATH.with_name("make_assignment_cases.py")
    spec = importlib.util.spec_from_file_location("make_assignment_cases", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build() == corpus()


def test_raising_the_allocation_never_moves_a_user():
    client = _client()
    small_in = 0
    for i in range(20_000):
        u = f"user-{i}"
        small = client.assign(u, "onboarding_small")
        large = client.assign(u, "onboarding_large")
        if small is not None:
            small_in += 1
            assert large == small
    assert 0.27 < small_in / 20_000 < 0.33


@pytest.mark.slow
def test_a_million_users():
    np = pytest.importorskip("numpy")
    chisquare = pytest.importorskip("scipy.stats").chisquare
    client = _client()
    assign = client.assign
    users = [f"user-{i}" for i in range(1_000_000)]

    hero = Counter(assign(u, "homepage_hero") for u in users)
    assert set(hero) == {"control", "treatment"}
    assert chisquare(np.array([hero["control"], hero["treatment"]])).pvalue > 0.001

    cta = [assign(u, "checkout_cta") for u in users]
    copy = [assign(u, "checkout_copy") for u in users]
    both = sum(a is not None and b is not None for a, b in zip(cta, copy, strict=True))
    assert both == 0  # one layer: no user in two of its experiments
    share = sum(a is not None for a in cta) / len(users)
    assert 0.49 < share < 0.51
    assert sum(b is not None for b in copy) / len(users) == pytest.approx(1 - share)

    killed = Counter(assign(u, "recs_widget") for u in users[:200_000])
    assert killed == {"control": 200_000}
    # overrides win whatever the hash says
    for u, exp_id, v in (
        ("qa-user-1", "checkout_cta", "treatment"),
        ("qa-user-1", "checkout_copy", "long"),
        ("qa-user-2", "checkout_cta", "control"),
    ):
        assert assign(u, exp_id) == v
