"""The payload contract: what the publisher builds is what the SDK reads, written once."""

from __future__ import annotations

import pytest

from ab_pipelines.assignment import ConfigError
from ab_pipelines.assignment.client import parse_payload
from ab_pipelines.config.registry import load_registry
from ab_pipelines.contracts.payload import (
    EXPERIMENT_FIELDS,
    SCHEMA,
    PayloadError,
    build_payload,
    content_sha,
    experiment_entry,
    fixed_variant,
    read_payload,
)
from tests.assignment import corpus
from tests.contracts.sdk_imports import REPO_ROOT


def test_an_entry_has_exactly_the_fields_the_sdk_reads():
    e = experiment_entry(
        status="running", salt="s", unit="user_id", variants=["a", "b"], weights=[0.5, 0.5]
    )
    assert tuple(e) == EXPERIMENT_FIELDS
    assert read_payload(build_payload({"x": e}, 1, None)).experiments["x"].ranges == (
        (0, 5000),
        (5000, 10000),
    )


def test_layer_entries_cover_the_full_range_and_carry_their_layer_buckets():
    e = experiment_entry(
        status="running",
        salt="s",
        unit="user_id",
        variants=["a", "b"],
        weights=[0.5, 0.5],
        allocation=0.3,  # a layer does the allocating: ignored
        layer="L",
        layer_range=(0.25, 0.5),
    )
    assert e["layer_buckets"] == [2500, 5000]
    assert e["variant_buckets"] == [[0, 5000], [5000, 10000]]


@pytest.mark.parametrize(
    "status, shipped, expected",
    [
        ("running", "b", None),
        ("killed", "b", "a"),
        ("stopped", "b", "b"),
        ("stopped", None, "a"),
        ("draft", "b", None),
    ],
)
def test_fixed_variant(status, shipped, expected):
    assert fixed_variant(status, ["a", "b"], shipped) == expected


def test_the_registry_compiles_to_a_payload_the_sdk_reads():
    from ab_pipelines.config.publish import compile_experiments

    registry = load_registry(REPO_ROOT)
    experiments = compile_experiments(registry, killed={"recs_ranking"})
    cfg = parse_payload(build_payload(experiments, 7, "2026-11-24T00:00:00Z"))
    assert cfg.version == 7 and set(cfg.experiments) == set(experiments)
    assert cfg.experiments["recs_ranking"].fixed == experiments["recs_ranking"]["variants"][0]


def test_the_corpus_payload_is_schema_1_with_its_content_sha():
    p = corpus()["payload"]
    assert p["schema"] == SCHEMA and p["content_sha"] == content_sha(
        p["experiments"], p["holdouts"]
    )
    assert read_payload(p).version == p["version"]


def test_a_payload_error_names_the_field_and_the_sdk_raises_its_config_error():
    p = corpus()["payload"]
    p["experiments"]["homepage_hero"]["variant_buckets"] = [[0, 20000], [0, 1]]
    p["content_sha"] = content_sha(p["experiments"], p["holdouts"])
    with pytest.raises(PayloadError, match=r"experiments.homepage_hero.variant_buckets\[0\]"):
        read_payload(p)
    with pytest.raises(ConfigError, match="variant_buckets"):
        parse_payload(p)
