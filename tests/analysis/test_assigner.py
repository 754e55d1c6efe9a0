"""The Spark assigner agrees with the corpus and with the SDK on 200,000 random users."""

from __future__ import annotations

import json

import pytest

from ab_pipelines.analysis.assigner import spark_assign
from ab_pipelines.assignment import Client
from ab_pipelines.config import load_registry
from ab_pipelines.config.publish import compile_experiments
from ab_pipelines.settings import REPO_ROOT

pytestmark = pytest.mark.spark

# Random users beyond the corpus (the Python UDF runs under one GIL on the embedded engine).
USERS = 200_000
CORPUS = json.loads((REPO_ROOT / "tests" / "data" / "assignment_cases.json").read_text())


def _assign_rows(spark, rows, experiments, holdouts=None):
    """rows: (user_id, attributes JSON); returns {experiment: [variant per row]} computed in Spark."""
    from pyspark.sql import functions as F

    df = spark.createDataFrame(rows, "user_id string, attributes string").withColumn(
        "i", F.monotonically_increasing_id()
    )
    cols = [
        spark_assign(F.col("user_id"), F.col("attributes"), exp, holdouts).alias(eid)
        for eid, exp in experiments.items()
    ]
    got = df.select("i", *cols).orderBy("i").collect()
    return {eid: [r[eid] for r in got] for eid in experiments}


def test_spark_agrees_with_every_corpus_case(spark):
    experiments = CORPUS["payload"]["experiments"]
    cases = [c for c in CORPUS["cases"] if c["experiment_id"] in experiments]
    rows = [(c["user_id"], json.dumps(c["attributes"])) for c in cases]
    got = _assign_rows(spark, rows, experiments, CORPUS["payload"]["holdouts"])
    mismatches = [
        (c, got[c["experiment_id"]][i])
        for i, c in enumerate(cases)
        if got[c["experiment_id"]][i] != c["expected"]
    ]
    assert not mismatches, mismatches[:5]
    assert len(cases) > 300


@pytest.mark.slow
def test_spark_and_sdk_agree_on_random_users(spark):
    import hashlib

    from pyspark.sql import functions as F

    from ab_pipelines.assignment.signing import canonical_json

    registry = load_registry(REPO_ROOT)
    experiments = compile_experiments(registry, killed={"recs_ranking"})
    payload = {
        "schema": 1,
        "version": 1,
        "published_at": "2026-11-24T00:00:00Z",
        "content_sha": "",
        "experiments": experiments,
    }

    payload["content_sha"] = hashlib.sha256(canonical_json(experiments).encode()).hexdigest()
    client = Client.from_payload(payload, trusted=True)
    platforms = ["ios", "android", "web"]
    df = spark.range(USERS).select(
        F.concat(F.lit("r-"), F.sha2(F.col("id").cast("string"), 256).substr(1, 16)).alias(
            "user_id"
        ),
        F.concat(
            F.lit('{"platform": "'),
            F.element_at(
                F.array(*[F.lit(p) for p in platforms]), (F.col("id") % 3 + 1).cast("int")
            ),
            F.lit('"}'),
        ).alias("attributes"),
    )
    cols = [
        spark_assign(F.col("user_id"), F.col("attributes"), exp).alias(eid)
        for eid, exp in experiments.items()
    ]
    pdf = df.select("user_id", "attributes", *cols).toPandas()
    assert len(pdf) == USERS
    users = pdf.user_id.tolist()
    attrs = [{"platform": p} for p in (json.loads(a)["platform"] for a in pdf.attributes)]
    for eid in experiments:
        sdk = [client.assign(u, eid, attributes=a) for u, a in zip(users, attrs, strict=True)]
        assert sdk == pdf[eid].tolist(), eid
    # the split is real: every running experiment assigns a sizeable share of users
    assert all(pdf[eid].notna().mean() > 0.2 for eid in experiments)
