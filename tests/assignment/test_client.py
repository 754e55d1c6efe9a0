"""Client: loading and refusing payloads, refresh, the rule order, sticky, exposures, explain."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys

import pytest

from ab_pipelines.assignment import (
    Client,
    ConfigError,
    ListExposureSink,
    MemoryStickyStore,
    SqliteStickyStore,
)
from ab_pipelines.assignment.signing import sign_payload
from tests.assignment import corpus, experiment, payload, write_signed

SDK_LOG = "ab_pipelines.sdk"


def v1() -> dict:
    return payload({"hero": experiment("hero")}, version=1)


def v2() -> dict:
    return payload(
        {"hero": experiment("hero", weights=(0.2, 0.8)), "extra": experiment("extra")}, version=2
    )


def sdk_errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == SDK_LOG and r.levelno >= logging.ERROR]


@pytest.fixture
def signed_file(tmp_path):
    return write_signed(tmp_path / "config.json", v1())


def test_from_file_loads_a_signed_payload(signed_file):
    client = Client.from_file(signed_file)
    assert client.config_version == 1
    assert client.assign("user-1", "hero") in ("control", "treatment")
    assert client.assign("user-1", "nope") is None


def test_unsigned_payload_needs_trusted():
    with pytest.raises(ConfigError, match="not a signed envelope"):
        Client.from_payload(v1())
    assert Client.from_payload(v1(), trusted=True).config_version == 1
    assert Client.from_payload(sign_payload(v1())).config_version == 1
    assert Client.from_payload(json.dumps(sign_payload(v1()))).config_version == 1


@pytest.mark.parametrize(
    "content",
    ["", '{"payload": "{\\"schema\\": 1', "not json", "[]", '{"schema": 1}'],
    ids=["empty", "truncated", "not-json", "array", "unsigned"],
)
def test_from_file_on_a_bad_first_file_raises(tmp_path, content):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="config.json"):
        Client.from_file(path)


def test_from_file_missing_raises(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        Client.from_file(tmp_path / "absent.json")


def _tampered_signature(text: str) -> str:
    env = json.loads(text)
    sig = env["signature"]
    env["signature"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    return json.dumps(env)


def _tampered_payload(text: str) -> str:
    env = json.loads(text)
    env["payload"] = env["payload"].replace('"version":2', '"version":3')
    return json.dumps(env)


def _bad_schema(p: dict) -> dict:
    p["schema"] = 2
    return p


def _bad_ranges(p: dict) -> dict:
    p["experiments"]["hero"]["variant_buckets"] = [[0, 5000]]
    return payload(p["experiments"], version=2)


def _bucket_out_of_range(p: dict) -> dict:
    p["experiments"]["hero"]["variant_buckets"] = [[0, 5000], [5000, 10001]]
    return payload(p["experiments"], version=2)


def _bad_sha(p: dict) -> dict:
    p["content_sha"] = "0" * 64
    return p


def _missing_field(p: dict) -> dict:
    del p["experiments"]["hero"]["salt"]
    return payload(p["experiments"], version=2)


def _bad_status(p: dict) -> dict:
    p["experiments"]["hero"]["status"] = "draft"
    return payload(p["experiments"], version=2)


def _version_zero(p: dict) -> dict:
    p["version"] = 0
    return p


def _version_as_string(p: dict) -> dict:
    p["version"] = "2"
    return p


@pytest.mark.parametrize(
    "make_text",
    [
        lambda: _tampered_signature(json.dumps(sign_payload(v2()))),
        lambda: _tampered_payload(json.dumps(sign_payload(v2()))),
        lambda: json.dumps(sign_payload(v2()))[:-20],
        lambda: "",
        lambda: json.dumps(v2()),
        lambda: json.dumps(sign_payload(_bad_schema(v2()))),
        lambda: json.dumps(sign_payload(_bad_ranges(v2()))),
        lambda: json.dumps(sign_payload(_bucket_out_of_range(v2()))),
        lambda: json.dumps(sign_payload(_bad_sha(v2()))),
        lambda: json.dumps(sign_payload(_missing_field(v2()))),
        lambda: json.dumps(sign_payload(_bad_status(v2()))),
        lambda: json.dumps(sign_payload(_version_zero(v2()))),
        lambda: json.dumps(sign_payload(_version_as_string(v2()))),
    ],
    ids=[
        "bad-signature",
        "tampered-payload",
        "truncated",
        "empty",
        "unsigned",
        "schema",
        "ranges-length",
        "bucket-10001",
        "content-sha",
        "missing-field",
        "status",
        "version-0",
        "version-str",
    ],
)
def test_refused_payload_keeps_last_good_and_logs_one_line(tmp_path, caplog, make_text):
    path = write_signed(tmp_path / "config.json", v1())
    client = Client.from_file(path)
    before = {u: client.assign(u, "hero") for u in (f"user-{i}" for i in range(200))}
    path.write_text(make_text())
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger=SDK_LOG):
        assert client.refresh() is False
    errors = sdk_errors(caplog)
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert str(path) in errors[0].getMessage()
    assert client.config_version == 1
    assert {u: client.assign(u, "hero") for u in before} == before


def test_lower_version_and_reused_version_are_refused(tmp_path, caplog):
    client = Client.from_payload(sign_payload(v2()))
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger=SDK_LOG):
        assert client.load_payload(sign_payload(v1())) is False
    assert len(sdk_errors(caplog)) == 1
    assert "lower than the held version 2" in sdk_errors(caplog)[0].getMessage()
    other = payload({"hero": experiment("hero", weights=(0.9, 0.1))}, version=2)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger=SDK_LOG):
        assert client.load_payload(sign_payload(other)) is False
    assert len(sdk_errors(caplog)) == 1
    assert "different content" in sdk_errors(caplog)[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger=SDK_LOG):  # the same version again: a no-op
        assert client.load_payload(sign_payload(v2())) is False
    assert sdk_errors(caplog) == []
    assert client.config_version == 2
    assert set(client.experiment_ids) == {"hero", "extra"}


def test_dev_signed_file_refused_in_prod(tmp_path, monkeypatch, caplog):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ab_pipelines.assignment.signing import SigningKey

    prod_key = SigningKey("prod", Ed25519PrivateKey.generate())
    path = tmp_path / "config.json"
    path.write_text(json.dumps(sign_payload(v1(), prod_key)))
    dev_signed = json.dumps(sign_payload(v2()))
    monkeypatch.setenv("ABP_ENV", "prod")
    monkeypatch.setenv("ABP_PUBLIC_KEY", prod_key.public_b64)
    client = Client.from_file(path)
    assert client.config_version == 1
    path.write_text(dev_signed)
    with caplog.at_level(logging.ERROR, logger=SDK_LOG):
        assert client.refresh() is False
    assert "development key" in sdk_errors(caplog)[0].getMessage()


def test_lazy_refresh(tmp_path, monkeypatch):
    path = write_signed(tmp_path / "config.json", v1())
    clock = [1000.0]
    monkeypatch.setattr("ab_pipelines.assignment.client.time.monotonic", lambda: clock[0])
    client = Client.from_file(path, refresh_seconds=30)
    write_signed(path, v2())
    client.assign("user-1", "hero")
    assert client.config_version == 1  # the interval has not elapsed
    clock[0] += 31
    assert client.assign("user-1", "extra") is not None
    assert client.config_version == 2


def test_refresh_forces_a_reload_and_from_url(tmp_path):
    path = write_signed(tmp_path / "config.json", v1())
    client = Client.from_url(path.as_uri())
    assert client.config_version == 1
    write_signed(path, v2())
    assert client.refresh() is True
    assert client.config_version == 2
    assert client.refresh() is False  # unchanged


def test_rule_order():
    c = corpus()
    client = Client.from_payload(c["payload"], trusted=True)
    # an override wins, even outside the layer range
    assert client.assign("qa-user-1", "checkout_cta") == "treatment"
    assert client.assign("qa-user-1", "checkout_copy") == "long"
    # killed serves the baseline, stopped its shipped variant or the baseline
    assert {client.assign(f"u{i}", "recs_widget") for i in range(500)} == {"control"}
    assert {client.assign(f"u{i}", "free_shipping") for i in range(500)} == {"treatment"}
    assert {client.assign(f"u{i}", "old_header") for i in range(500)} == {"legacy"}
    # targeting: all attributes needed
    hits = [
        client.assign(f"u{i}", "pricing_banner", {"country": "US", "platform": "ios"})
        for i in range(200)
    ]
    assert None not in hits
    assert client.assign("u1", "pricing_banner", {"country": "US"}) is None
    assert client.assign("u1", "pricing_banner", {"country": "FR", "platform": "ios"}) is None
    # another unit: the device decides, not the user
    a = client.assign("user-1", "device_theme", {"device_id": "d-7"})
    assert all(
        client.assign(f"user-{i}", "device_theme", {"device_id": "d-7"}) == a for i in range(50)
    )
    assert client.assign("user-1", "device_theme") is None


def test_exposures_once_and_only_on_the_hash_or_sticky_path():
    sink = ListExposureSink()
    client = Client.from_payload(corpus()["payload"], trusted=True, exposure_sink=sink)
    for _ in range(3):
        client.assign("user-1", "homepage_hero", {"country": "FR"})
    client.assign("qa-user-1", "checkout_cta")  # override
    client.assign("user-1", "recs_widget")  # killed
    client.assign("user-1", "free_shipping")  # stopped
    client.assign("user-1", "pricing_banner", {"country": "FR", "platform": "ios"})  # no match
    client.assign("user-1", "device_theme", {"device_id": "d-1"})
    client.assign("user-2", "device_theme", {"device_id": "d-1"})  # same unit: logged already
    assert [(e["experiment_id"], e["user_id"]) for e in sink.events] == [
        ("homepage_hero", "user-1"),
        ("device_theme", "user-1"),
    ]
    ev = sink.events[0]
    assert ev["variant"] == client.assign("user-1", "homepage_hero")
    assert ev["config_version"] == 1 and ev["source"] == "sdk-python"
    assert ev["attributes"] == {"country": "FR"} and ev["ts"].endswith("Z")
    assert sink.events[1]["unit"] == "d-1"


def test_sticky_keeps_the_first_variant_after_weights_change(tmp_path):
    users = [f"user-{i}" for i in range(5000)]
    store = SqliteStickyStore(tmp_path / "sticky.db")
    sink = ListExposureSink()
    client = Client.from_payload(sign_payload(v1()), sticky=store, exposure_sink=sink)
    first = {u: client.assign(u, "hero") for u in users}
    assert len(store) == len(users)
    client.load_payload(sign_payload(v2()))
    assert client.config_version == 2
    assert {u: client.assign(u, "hero") for u in users} == first
    # without the store, the new weights move some users
    plain = Client.from_payload(sign_payload(v2()))
    assert sum(plain.assign(u, "hero") != first[u] for u in users) > 500
    # a new client (another process) with the same store keeps them too, and logs exposures
    sink2 = ListExposureSink()
    again = Client.from_payload(sign_payload(v2()), sticky=store, exposure_sink=sink2)
    assert {u: again.assign(u, "hero") for u in users} == first
    assert len(sink2.events) == len(users)


def test_sticky_variant_that_no_longer_exists_falls_back_to_the_hash():
    store = MemoryStickyStore()
    store.set("user-1", "hero", "gone")
    client = Client.from_payload(v1(), trusted=True, sticky=store)
    assert client.assign("user-1", "hero") in ("control", "treatment")


def test_broken_sticky_store_does_not_break_assign(caplog):
    class Broken:
        def get(self, unit, experiment_id):
            raise OSError("disk gone")

        def set(self, unit, experiment_id, variant):
            raise OSError("disk gone")

    client = Client.from_payload(v1(), trusted=True, sticky=Broken())
    plain = Client.from_payload(v1(), trusted=True)
    with caplog.at_level(logging.ERROR, logger=SDK_LOG):
        for i in range(10):
            assert client.assign(f"u{i}", "hero") == plain.assign(f"u{i}", "hero")
    assert len(sdk_errors(caplog)) == 2  # one for get, one for set


def test_assign_all():
    client = Client.from_payload(corpus()["payload"], trusted=True)
    out = client.assign_all("qa-user-1", {"country": "US", "platform": "ios", "device_id": "d"})
    assert out["checkout_cta"] == "treatment" and out["checkout_copy"] == "long"
    assert out["recs_widget"] == "control"
    assert set(out) <= set(client.experiment_ids)
    assert all(v is not None for v in out.values())
    assert "device_theme" not in client.assign_all("qa-user-1")


def test_explain_reports_every_step():
    sink = ListExposureSink()
    client = Client.from_payload(
        corpus()["payload"], trusted=True, exposure_sink=sink, sticky=MemoryStickyStore()
    )
    inside = next(u for u in (f"user-{i}" for i in range(100)) if client.assign(u, "checkout_cta"))
    outside = next(
        u for u in (f"user-{i}" for i in range(100)) if not client.assign(u, "checkout_cta")
    )
    e = client.explain(inside, "checkout_cta")
    assert e["in_payload"] and e["status"] == "running" and e["unit_value"] == inside
    assert e["layer"] == "checkout" and e["layer_range"] == [0, 5000]
    assert e["in_layer"] and 0 <= e["layer_bucket"] < 5000
    assert e["sticky"] == e["variant"]  # written by the assign above
    assert e["decided_by"] == "sticky" and e["exposure_eligible"]
    assert e["exposure_already_logged"] and e["exposure_logged"]
    assert e["variant_range"] == e["variant_ranges"][e["variant"]]
    assert e["variant_range"][0] <= e["bucket"] < e["variant_range"][1]
    x = client.explain(outside, "checkout_cta")
    assert x["in_layer"] is False and x["variant"] is None
    assert x["decided_by"] == "not in layer range" and not x["exposure_logged"]
    o = client.explain("qa-user-1", "checkout_cta")
    assert o["override"] == "treatment" and o["decided_by"] == "override"
    assert not o["exposure_logged"]
    t = client.explain("u1", "pricing_banner", {"country": "FR", "platform": "ios"})
    assert t["targeting_match"] is False and t["targeting"]["country"]["match"] is False
    assert client.explain("u1", "nope") == {
        "experiment_id": "nope",
        "user_id": "u1",
        "config_version": 1,
        "in_payload": False,
        "variant": None,
        "decided_by": "not in payload",
        "exposure_logged": False,
    }
    n = len(sink.events)
    client.explain("user-99", "homepage_hero")
    assert len(sink.events) == n  # explain has no side effects


def test_import_pulls_in_no_spark_dagster_or_pandas():
    code = (
        "import ab_pipelines.assignment, sys; "
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'pyspark', 'dagster', 'pandas', 'pyarrow', 'numpy'}); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _full_path(client: Client, unit, exp_id: str, attributes=None):
    """What the rules' readable statement (``_evaluate``) gives, bypassing the compiled closures."""
    exp = client.config.experiments.get(exp_id)
    return None if exp is None else client._evaluate(exp, unit, attributes, None)[0]


def test_compiled_closures_agree_with_the_rules_everywhere():
    payload = corpus()["payload"]
    client = Client.from_payload(payload, trusted=True)
    fast = client.config.fast
    # The closures cover the common case (running, user_id, no targeting), layers and overrides
    # included, and nothing else.
    assert fast and set(fast) < set(client.config.experiments)
    covered = {e.layer is not None for k, e in client.config.experiments.items() if k in fast}
    assert covered == {True, False}
    assert any(client.config.experiments[k].overrides for k in fast)
    rng = random.Random(7)
    units = [c["user_id"] for c in corpus()["cases"]]
    units += [f"user-{rng.randrange(10**9)}" for _ in range(3000)]
    units += ["", None, 0, 42, 3.5, b"", "é-ü", "用户-7", "emoji-\U0001f600", "lone-\ud800"]
    units += [u for e in client.config.experiments.values() for u in e.overrides]
    checked = 0
    for exp_id in client.config.experiments:
        for u in units:
            assert client.assign(u, exp_id) == _full_path(client, u, exp_id), (exp_id, u)
            checked += 1
    assert checked > 10_000
    for c in corpus()["cases"]:
        got = client.assign(c["user_id"], c["experiment_id"], c["attributes"])
        assert got == _full_path(client, c["user_id"], c["experiment_id"], c["attributes"])


def test_a_store_set_later_switches_off_the_compiled_path_and_a_sink_rebinds_it():
    client = Client.from_payload(corpus()["payload"], trusted=True)
    exp_id = next(e for e in client.config.fast if not client.config.experiments[e].holdouts)
    assert client._fast is client.config.fast
    sink = ListExposureSink()
    client.exposure_sink = sink
    # closures that log (test_client_fast_path); a held layer's experiments also log holdout
    # exposures (rule 8b) and take the full path
    unheld = {e for e in client.config.fast if not client.config.experiments[e].holdouts}
    assert unheld and set(client._fast) == unheld
    assert client._fast[exp_id] is not client.config.fast[exp_id]
    units = [f"late-{i}" for i in range(50)]
    got = [client.assign(u, exp_id) for u in units]
    assert len(sink.events) == sum(v is not None for v in got) > 0
    client.exposure_sink = None
    assert client._fast is client.config.fast
    client.sticky = MemoryStickyStore()
    assert not client._fast
    client.assign("late-0", exp_id)
    assert client.sticky.get("late-0", exp_id) == got[0]


def test_evaluate_gives_assigns_variants_with_the_reason_and_its_exposures():
    attrs = {"country": "FR", "device_id": "d-1"}
    sink, plain_sink = ListExposureSink(), ListExposureSink()
    client = Client.from_payload(corpus()["payload"], trusted=True, exposure_sink=sink)
    plain = Client.from_payload(corpus()["payload"], trusted=True, exposure_sink=plain_sink)
    got = client.evaluate("user-1", attrs)
    assert set(got) == set(client.experiment_ids)
    for exp_id, (variant, _) in got.items():
        assert plain.assign("user-1", exp_id, attrs) == variant, exp_id
    # the same exposures, in the same order, as assign
    assert [e["experiment_id"] for e in sink.events] == [
        e["experiment_id"] for e in plain_sink.events
    ]
    assert got["recs_widget"] == ("control", "killed")
    assert got["free_shipping"] == ("treatment", "stopped")
    assert got["pricing_banner"] == (None, "targeting")
    assert got["homepage_hero"][1] == "hash"
    assert client.evaluate("qa-user-1", None, ["checkout_cta", "nope"]) == {
        "checkout_cta": ("treatment", "override"),
        "nope": (None, "not in payload"),
    }
    assert client.evaluate("user-1", None, ["device_theme"]) == {
        "device_theme": (None, "no unit value")
    }


def test_exposure_memory_is_bounded_and_only_repeats_exposures():
    sink = ListExposureSink()
    client = Client.from_payload(v1(), trusted=True, exposure_sink=sink, exposure_memory=10)
    for _ in range(2):
        for i in range(25):
            client.assign(f"u{i}", "hero")
    assert len(client._exposed) <= 10
    # every unit logged, some more than once once the memory was emptied
    assert {e["user_id"] for e in sink.events} == {f"u{i}" for i in range(25)}
    assert 25 < len(sink.events) <= 50
    with pytest.raises(ValueError, match="exposure_memory"):
        Client(exposure_memory=0)
