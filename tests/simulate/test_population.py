"""The simulated population and the default assigner (CONTRACTS section 6 minus kills and sticky)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ab_pipelines.assignment.hashing import bucket, in_layer
from ab_pipelines.config.registry import load_registry
from ab_pipelines.simulate.population import (
    PLATFORMS,
    assign_population,
    make_population,
    registry_assigner,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registry():
    return load_registry(REPO)


@pytest.fixture(scope="module")
def pop():
    return make_population(5000, 7)


def test_population_is_deterministic_and_plausible(pop):
    again = make_population(5000, 7)
    np.testing.assert_array_equal(pop.visit_prob, again.visit_prob)
    np.testing.assert_array_equal(pop.country, again.country)
    assert pop.user_ids[0] == "user-1" and pop.size == 5000
    assert 0.25 < pop.visit_prob.mean() < 0.32  # Beta(2, 5)
    assert 0.04 < pop.purchase_prob.mean() < 0.07  # Beta(1.5, 25)
    assert set(np.unique(pop.platform).tolist()) == set(range(len(PLATFORMS)))
    assert not np.array_equal(make_population(5000, 8).visit_prob, pop.visit_prob)


def test_layer_members_are_exclusive_and_follow_the_hash(registry, pop):
    assigner = registry_assigner(registry)
    cta = assign_population(pop, registry.experiments["checkout_cta"], assigner)
    layout = assign_population(pop, registry.experiments["checkout_layout"], assigner)
    assert not np.any((cta >= 0) & (layout >= 0))
    # the two halves cover the whole layer but the running holdouts' held-out users (rule 3b)
    held = np.zeros(pop.size, dtype=bool)
    for h in registry.holdouts.values():
        if h.status == "running" and "checkout" in h.layers:
            held |= np.array(
                [bucket(h.hash_salt, u) < round(10_000 * h.share) for u in pop.user_ids]
            )
    assert np.all((cta >= 0) | (layout >= 0) | held)
    assert not np.any(((cta >= 0) | (layout >= 0)) & held)
    for i in range(0, pop.size, 97):
        uid = pop.user_ids[i]
        assert (cta[i] >= 0) == in_layer("checkout", (0.0, 0.5), uid)
        if cta[i] >= 0:  # the variant comes from the experiment's own salt, over all 10,000
            assert cta[i] == (0 if bucket("checkout_cta", uid) < 5000 else 1)


def test_allocation_and_targeting(registry, pop):
    assigner = registry_assigner(registry)
    recs = assign_population(pop, registry.experiments["recs_ranking"], assigner)
    assert 0.56 < (recs >= 0).mean() < 0.64  # allocation 0.6
    speed = assign_population(pop, registry.experiments["search_speed"], assigner)
    web = pop.platform == PLATFORMS.index("web")
    assert np.all(speed[web] == -1)
    assert np.all(speed[~web] >= 0)  # allocation 1.0 on ios and android


def test_overrides_stopped_and_not_running(registry):
    exp = registry.experiments["checkout_cta"]
    assign = registry_assigner()
    attrs = {"country": "US", "platform": "web"}
    assert assign(exp, "qa-user-1", attrs) == "treatment"
    forced = exp.model_copy(update={"overrides": {"user-3": "control"}})
    assert assign(forced, "user-3", attrs) == "control"
    stopped = exp.model_copy(update={"status": "stopped", "shipped_variant": "treatment"})
    assert assign(stopped, "user-3", attrs) == "treatment"
    assert assign(exp.model_copy(update={"status": "stopped"}), "user-3", attrs) == "control"
    assert assign(exp.model_copy(update={"status": "approved"}), "user-3", attrs) is None
    speed = registry.experiments["search_speed"]
    assert assign(speed, "user-3", attrs) is None  # web is not targeted
    assert assign(speed, "user-3", {"country": "US", "platform": "ios"}) in {"control", "lite"}


def test_registry_definition_wins(registry):
    # The assigner reads the registry it was built on, as the SDK reads the published config.
    exp = registry.experiments["checkout_cta"]
    assign = registry_assigner(registry)
    stale = exp.model_copy(update={"overrides": {}})
    assert assign(stale, "qa-user-1", {}) == "treatment"
