"""The compiled closures with an exposure sink against the full path (``_evaluate`` and
``_assign``): the same variants and the same sequence of ``sink.log`` calls, on random payloads
(layers, overrides, kills, stops, targeting, other units), random users and repeated calls."""

from __future__ import annotations

import logging
import random

import pytest

from ab_pipelines.assignment import Client, ListExposureSink, MemoryStickyStore
from tests.assignment import corpus, experiment, payload

SDK_LOG = "ab_pipelines.sdk"
ODD_UNITS = ["", None, 0, 42, 3.5, b"", "é-ü", "用户-7", "emoji-\U0001f600", "lone-\ud800"]
ATTRIBUTES = [
    None,
    {},
    {"country": "US"},
    {"country": "FR", "device_id": "d-3"},
    {"device_id": 7},
    {"country": "US", "device_id": "d-1"},
]


class SlowClient(Client):
    """The full path only, whatever the config, sink or store: the reference."""

    def _select_fast(self) -> None:
        super()._select_fast()
        self._fast = {}


class RecordingSink:
    """Every ``log`` call's keyword arguments, in order; raises on every ``fail_every``-th."""

    def __init__(self, fail_every: int = 0) -> None:
        self.calls: list[dict] = []
        self.fail_every = fail_every

    def log(self, **kw) -> None:
        self.calls.append(kw)
        if self.fail_every and len(self.calls) % self.fail_every == 0:
            raise RuntimeError("broker down")

    def flush(self) -> None:
        pass


def random_experiment(rng: random.Random, exp_id: str) -> dict:
    variants = [f"{exp_id}-v{j}" for j in range(rng.randrange(1, 4))]
    raw = [rng.randrange(1, 10) for _ in variants]
    weights = [w / sum(raw) for w in raw]
    status = rng.choices(["running", "killed", "stopped"], [8, 1, 1])[0]
    fields: dict = {}
    if rng.random() < 0.4:
        lo = rng.randrange(0, 9000)
        fields["layer"] = rng.choice(["layer-a", "layer-é"])
        fields["layer_buckets"] = [lo, rng.randrange(lo, 10_001)]
    if rng.random() < 0.5:
        units = [f"user-{rng.randrange(200)}" for _ in range(rng.randrange(1, 8))] + ["42"]
        fields["overrides"] = {u: rng.choice(variants) for u in units}
    if rng.random() < 0.15:
        fields["targeting"] = {"country": ["US", "DE"]}
    if rng.random() < 0.15:
        fields["unit"] = "device_id"
    if status == "stopped":
        fields["serve_variant"] = rng.choice([None, *variants])
    return experiment(
        f"salt-{exp_id}-{rng.randrange(10**6)}",
        variants=variants,
        weights=weights,
        allocation=rng.choice([1.0, 1.0, 0.8, 0.5, 0.1]),
        status=status,
        **fields,
    )


def random_payload(rng: random.Random, version: int, n: int = 14) -> dict:
    return payload({f"exp{i}": random_experiment(rng, f"exp{i}") for i in range(n)}, version)


def random_calls(rng: random.Random, exp_ids: list[str], n: int) -> list[tuple]:
    """(unit, experiment id, attributes): a small pool of users, so most pairs come back."""
    users = [f"user-{i}" for i in range(200)] + ODD_UNITS
    exp_ids = [*exp_ids, "not-in-payload"]
    return [(rng.choice(users), rng.choice(exp_ids), rng.choice(ATTRIBUTES)) for _ in range(n)]


def both(p: dict, sink_factory=RecordingSink, **kw) -> tuple[Client, Client]:
    fast = Client.from_payload(p, trusted=True, exposure_sink=sink_factory(), **kw)
    slow = SlowClient.from_payload(p, trusted=True, exposure_sink=sink_factory(), **kw)
    return fast, slow


def run_calls(client: Client, calls: list[tuple]) -> list:
    return [client.assign(u, e, a) for u, e, a in calls]


@pytest.mark.parametrize("seed", range(6))
def test_fast_and_full_paths_give_the_same_variants_and_exposures(seed):
    rng = random.Random(seed)
    p1 = random_payload(rng, version=1)
    fast, slow = both(p1)
    assert fast._fast and all(fast._fast[k] is not fast.config.fast[k] for k in fast._fast)
    assert not slow._fast
    calls = random_calls(rng, list(p1["experiments"]), 4000)
    assert run_calls(fast, calls) == run_calls(slow, calls)
    assert fast.exposure_sink.calls == slow.exposure_sink.calls
    assert 0 < len(fast.exposure_sink.calls) < len(calls)
    assert fast.assign_all("user-7", {"country": "US"}) == slow.assign_all(
        "user-7", {"country": "US"}
    )
    assert fast.exposure_sink.calls == slow.exposure_sink.calls

    # a new version (weights, kills, layers change): already exposed pairs stay logged once, the
    # new ones carry the new version
    p2 = random_payload(rng, version=2)
    assert fast.load_payload(p2, trusted=True) and slow.load_payload(p2, trusted=True)
    calls = random_calls(rng, list(p2["experiments"]), 4000)
    assert run_calls(fast, calls) == run_calls(slow, calls)
    assert fast.exposure_sink.calls == slow.exposure_sink.calls
    assert {c["config_version"] for c in fast.exposure_sink.calls} == {1, 2}
    assert fast._exposed == slow._exposed


def test_the_random_payloads_reach_every_case_of_the_fast_path():
    """The comparison above is worth something only if the closures saw layers, overrides and
    both logged and unlogged outcomes, next to killed, stopped and targeted experiments."""
    seen = set()
    for seed in range(6):
        rng = random.Random(seed)
        p = random_payload(rng, version=1)
        fast, _ = both(p)
        for exp_id, exp in fast.config.experiments.items():
            if exp_id in fast._fast:
                seen.add("layer" if exp.layer is not None else "no layer")
                seen.add("overrides" if exp.overrides else "no overrides")
            else:
                seen.add(exp.status if exp.status != "running" else "other unit or targeting")
    assert seen == {
        "layer",
        "no layer",
        "overrides",
        "no overrides",
        "killed",
        "stopped",
        "other unit or targeting",
    }


def test_the_corpus_cases_log_the_same_exposures_on_both_paths():
    c = corpus()
    fast, slow = both(c["payload"])
    cases = c["cases"] * 2  # the second round: every pair is logged already
    for case in cases:
        args = (case["user_id"], case["experiment_id"], case["attributes"])
        assert fast.assign(*args) == slow.assign(*args) == case["expected"]
    assert fast.exposure_sink.calls == slow.exposure_sink.calls
    assert len(fast.exposure_sink.calls) == len(fast._exposed) > 0


def test_overrides_killed_and_out_of_layer_log_nothing_on_the_fast_path():
    p = payload(
        {
            "forced": experiment("forced", overrides={"qa-1": "treatment"}),
            "layered": experiment("layered", layer="shared", layer_buckets=[0, 1]),
            "killed": experiment("killed", status="killed"),
            "half": experiment("half", allocation=0.5),
        }
    )
    sink = ListExposureSink()
    client = Client.from_payload(p, trusted=True, exposure_sink=sink)
    assert set(client._fast) == {"forced", "layered", "half"}
    assert client.assign("qa-1", "forced") == "treatment"
    assert all(client.assign(f"u{i}", "killed") == "control" for i in range(20))
    outside = [u for u in (f"u{i}" for i in range(200)) if client.assign(u, "layered") is None]
    unallocated = [u for u in (f"u{i}" for i in range(200)) if client.assign(u, "half") is None]
    assert len(outside) > 190 and 50 < len(unallocated) < 150
    logged = [(e["experiment_id"], e["unit"]) for e in sink.events]
    assert ("forced", "qa-1") not in logged and not any(x == "killed" for x, _ in logged)
    assert not {("layered", u) for u in outside} & set(logged)
    assert not {("half", u) for u in unallocated} & set(logged)
    assert len(logged) == len(set(logged)) == 200 - len(outside) + 200 - len(unallocated)
    e = client.explain("u1", "half")
    assert e["exposure_already_logged"] == (client.assign("u1", "half") is not None)


def test_the_fast_path_logs_the_fields_of_the_full_path():
    p = payload({"hero": experiment("hero")}, version=3)
    fast, slow = both(p, sink_factory=ListExposureSink)
    attrs = {"country": "FR", "n": 1}
    for u in ("user-1", 42, "lone-\ud800"):
        assert fast.assign(u, "hero", attrs) == slow.assign(u, "hero", attrs)
    attrs["country"] = "DE"  # the sink copied the attributes it was given
    keep = ("unit", "user_id", "experiment_id", "variant", "config_version", "source", "attributes")
    got = [{k: e[k] for k in keep} for e in fast.exposure_sink.events]
    assert got == [{k: e[k] for k in keep} for e in slow.exposure_sink.events]
    assert [e["user_id"] for e in got] == ["user-1", "42", "lone-\ud800"]
    assert got[0]["config_version"] == 3 and got[0]["attributes"] == {"country": "FR", "n": 1}


def test_a_failing_sink_never_raises_and_is_called_as_on_the_full_path(caplog):
    rng = random.Random(11)
    p = random_payload(rng, version=1)
    fast, slow = both(p, sink_factory=lambda: RecordingSink(fail_every=3))
    calls = random_calls(rng, list(p["experiments"]), 2000)
    with caplog.at_level(logging.ERROR, logger=SDK_LOG):
        assert run_calls(fast, calls) == run_calls(slow, calls)
    assert fast.exposure_sink.calls == slow.exposure_sink.calls
    assert len(fast.exposure_sink.calls) >= 3
    errors = [r for r in caplog.records if r.name == SDK_LOG and r.levelno >= logging.ERROR]
    assert len(errors) == 2  # once per client


def test_sink_and_store_set_or_removed_later_rebind_the_paths():
    client = Client.from_payload(corpus()["payload"], trusted=True)
    exp_id = "homepage_hero"
    assert client._fast is client.config.fast  # no sink: the config's own closures
    sink = RecordingSink()
    client.exposure_sink = sink
    assert client._fast and client._fast[exp_id] is not client.config.fast[exp_id]
    units = [f"late-{i}" for i in range(50)]
    got = [client.assign(u, exp_id) for u in units + units]
    assert got[:50] == got[50:]
    assert [c["unit"] for c in sink.calls] == [
        u for u, v in zip(units, got[:50], strict=True) if v is not None
    ]
    client.exposure_sink = None
    assert client._fast is client.config.fast
    assert [client.assign(u, exp_id) for u in units] == got[:50]
    assert len(sink.calls) == sum(v is not None for v in got[:50])
    client.exposure_sink = sink
    client.sticky = MemoryStickyStore()
    assert not client._fast  # a sticky store: the full path, which still logs
    client.assign("late-0", exp_id)
    client.assign("sticky-new", exp_id)
    assert client.sticky.get("late-0", exp_id) == got[0]
    assert sink.calls[-1]["unit"] == "sticky-new"
    client.sticky = None
    assert client._fast and client._fast[exp_id] is not client.config.fast[exp_id]
