"""Peer side of the assignment benchmark, run in the growthbook venv (the GrowthBook Python SDK).

stdin: {"units": [...], "key": experiment key, "variations": [...], "warmup": int}; stdout:
{"seconds": one loop over all units, "latencies_ns": per-call times of a second loop, "counts":
{variation: users}}. One GrowthBook instance serves every user (``set_attributes`` then ``run``),
with no tracking callback and no sticky bucket service, as a server would use it.
"""

import json
import sys
from collections import Counter

from clock import latencies_ns, loop_seconds
from growthbook import Experiment, GrowthBook

data = json.load(sys.stdin)
units = data["units"]
variations = data["variations"]
gb = GrowthBook(attributes={})
experiment = Experiment(
    key=data["key"],
    variations=variations,
    weights=[1 / len(variations)] * len(variations),
)


def assign(unit):
    gb.set_attributes({"id": unit})
    return gb.run(experiment).value


for u in units[: data["warmup"]]:
    assign(u)
seconds = loop_seconds(assign, units)
latencies = latencies_ns(assign, units)
counts = Counter(assign(u) for u in units)
json.dump({"seconds": seconds, "latencies_ns": latencies, "counts": counts}, sys.stdout)
