"""The vectorized assigner (the body of the Spark UDF) on awkward ids, without Spark."""

from __future__ import annotations

import pandas as pd

from ab_pipelines.analysis.assigner import assign_frame
from ab_pipelines.assignment import Client
from tests.assignment import corpus  # the shared corpus payload


def test_ids_with_trailing_nuls_and_long_ids_agree_with_the_sdk():
    payload = corpus()["payload"]
    client = Client.from_payload(payload, trusted=True)
    ids = [f"u{i}\x00" for i in range(500)] + ["x" * 100_000, "caf\u00e9", "\ud83d\ude00"]
    for eid, exp in payload["experiments"].items():
        attrs = pd.Series(["{}"] * len(ids))
        got = assign_frame(pd.Series(ids), attrs, exp, payload["holdouts"]).tolist()
        assert got == [client.assign(u, eid, attributes={}) for u in ids], eid
