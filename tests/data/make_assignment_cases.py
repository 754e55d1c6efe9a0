"""Write tests/data/assignment_cases.json, the shared assignment corpus (CONTRACTS section 6).

Run ``python tests/data/make_assignment_cases.py``; the output is deterministic. Every
implementation (the Python SDK, the Spark side, the simulator) must agree with it.

The expected answers are computed here, from the rules written out below, never by the SDK's
client, so the corpus checks the SDK's rules instead of echoing them. Buckets, ranges and the
payload come from the contracts (``ab_pipelines.contracts``), which every side shares; the
committed JSON pins their values, so a change to the contract fails the corpus tests.

Format (one JSON object):

- ``payload``: one unsigned schema-1 edge payload (docs/edge-config.md), ``content_sha`` included,
  with a ``holdouts`` object (``{id: {"salt", "range", "layers"}}``).
- ``buckets``: ``[{"salt", "unit", "bucket"}]`` with
  ``bucket = mmh3.hash(f"{salt}:{unit}".encode(), seed=0, signed=False) % 10000``.
- ``cases``: ``[{"user_id", "experiment_id", "attributes", "expected"}]``; ``attributes`` is an
  object (possibly empty), ``expected`` the variant id or null. No sticky store is involved.

Rules applied, in order (for one case):

1. ``experiment_id`` not in ``payload.experiments``: null.
2. unit value = ``user_id`` if the experiment's ``unit`` is ``"user_id"``, else
   ``attributes[unit]``; a missing, null or empty-string unit value: null.
3. ``overrides[unit value]`` if present.
3b. with a ``layer`` named in a holdout's ``layers``: if ``bucket(holdout salt, unit)`` lies in
   ``[range[0], range[1])`` of that holdout, null (whatever the status: a held-out unit never
   gets a stopped experiment's shipped variant).
4. status ``killed``: ``variants[0]``; ``stopped``: ``serve_variant`` or else ``variants[0]``.
5. every ``targeting`` attribute must be present (not null) in ``attributes`` and its value one of
   the listed strings, else null.
6. (sticky: not used by the corpus)
7. with a ``layer``: ``bucket(layer, unit)`` must lie in ``[layer_buckets[0], layer_buckets[1])``,
   else null; then the first variant i with ``variant_buckets[i][0] <= bucket(salt, unit) <
   variant_buckets[i][1]``, else null.
"""

from __future__ import annotations

import json
from pathlib import Path

from ab_pipelines.contracts.hashing import bucket, layer_buckets, variant_ranges
from ab_pipelines.contracts.payload import build_payload

OUT = Path(__file__).with_name("assignment_cases.json")


def ranges(weights: list[float], allocation: float) -> list[list[int]]:
    return [list(r) for r in variant_ranges(weights, allocation)]


def experiment(
    salt: str,
    variants: list[str],
    weights: list[float],
    allocation: float = 1.0,
    status: str = "running",
    unit: str = "user_id",
    layer: str | None = None,
    layer_range: tuple[float, float] | None = None,
    targeting: dict | None = None,
    overrides: dict | None = None,
    serve_variant: str | None = None,
) -> dict:
    in_layer = layer is not None
    return {
        "status": status,
        "salt": salt,
        "unit": unit,
        "layer": layer,
        "layer_buckets": list(layer_buckets(layer_range)) if in_layer else None,
        "variants": variants,
        "variant_buckets": ranges(weights, 1.0 if in_layer else allocation),
        "targeting": targeting or {},
        "overrides": overrides or {},
        "serve_variant": serve_variant,
    }


CT = ["control", "treatment"]
EXPERIMENTS = {
    "homepage_hero": experiment("homepage_hero", CT, [0.5, 0.5]),
    "checkout_cta": experiment(
        "checkout_cta",
        CT,
        [0.5, 0.5],
        layer="checkout",
        layer_range=(0.0, 0.5),
        overrides={"qa-user-1": "treatment", "qa-user-2": "control"},
    ),
    "checkout_copy": experiment(
        "checkout_copy_v2",
        ["control", "short", "long"],
        [0.34, 0.33, 0.33],
        layer="checkout",
        layer_range=(0.5, 1.0),
        overrides={"qa-user-1": "long"},
    ),
    "search_ranking": experiment(
        "search_ranking", ["control", "bm25", "neural"], [0.2, 0.4, 0.4], allocation=0.5
    ),
    "onboarding_small": experiment("onboarding", CT, [0.5, 0.5], allocation=0.3),
    "onboarding_large": experiment("onboarding", CT, [0.5, 0.5], allocation=0.6),
    "pricing_banner": experiment(
        "pricing_banner",
        CT,
        [0.5, 0.5],
        targeting={"country": ["US", "CA"], "platform": ["ios"]},
    ),
    "device_theme": experiment("device_theme", ["light", "dark"], [0.5, 0.5], unit="device_id"),
    "recs_widget": experiment(
        "recs_widget", CT, [0.5, 0.5], status="killed", serve_variant="control"
    ),
    "free_shipping": experiment(
        "free_shipping", CT, [0.5, 0.5], status="stopped", serve_variant="treatment"
    ),
    "old_header": experiment("old_header", ["legacy", "new"], [0.5, 0.5], status="stopped"),
}


def first_id(prefix: str, salt: str, lo: int, hi: int) -> str:
    """The first id ``<prefix><n>`` whose bucket for ``salt`` lies in [lo, hi)."""
    n = 0
    while not lo <= bucket(salt, f"{prefix}{n}") < hi:
        n += 1
    return f"{prefix}{n}"


# Holdouts: "longterm" keeps 10% of users out of the search layer (and of a layer with no
# experiment); "device_hold" 20% of devices out of a layer randomized by device.
HOLDOUTS = {
    "longterm": {"salt": "longterm_2026", "range": [0, 1000], "layers": ["recs", "search"]},
    "device_hold": {"salt": "device_hold", "range": [0, 2000], "layers": ["device_ui"]},
}
HELD_QA = first_id("qa-held-", "longterm_2026", 0, 1000)  # held out, yet overridden
EXPERIMENTS |= {
    "search_layout": experiment(
        "search_layout",
        CT,
        [0.5, 0.5],
        layer="search",
        layer_range=(0.0, 0.6),
        overrides={HELD_QA: "treatment"},
    ),
    "search_filters": experiment(
        "search_filters",
        CT,
        [0.5, 0.5],
        layer="search",
        layer_range=(0.6, 1.0),
        status="stopped",
        serve_variant="treatment",
    ),
    "device_font": experiment(
        "device_font",
        ["serif", "sans"],
        [0.5, 0.5],
        unit="device_id",
        layer="device_ui",
        layer_range=(0.0, 1.0),
    ),
}

PAYLOAD = build_payload(EXPERIMENTS, 1, "2026-11-24T06:00:00Z", HOLDOUTS)


def expected(user_id, experiment_id: str, attributes: dict) -> str | None:
    e = EXPERIMENTS.get(experiment_id)
    if e is None:
        return None
    unit = user_id if e["unit"] == "user_id" else attributes.get(e["unit"])
    if unit is None or unit == "":
        return None
    unit = str(unit)
    if unit in e["overrides"]:
        return e["overrides"][unit]
    for h in HOLDOUTS.values():
        if e["layer"] in h["layers"] and h["range"][0] <= bucket(h["salt"], unit) < h["range"][1]:
            return None
    if e["status"] == "killed":
        return e["variants"][0]
    if e["status"] == "stopped":
        return e["serve_variant"] or e["variants"][0]
    for attr, allowed in e["targeting"].items():
        value = attributes.get(attr)
        if value is None or str(value) not in allowed:
            return None
    if e["layer"] is not None:
        lo, hi = e["layer_buckets"]
        if not lo <= bucket(e["layer"], unit) < hi:
            return None
    b = bucket(e["salt"], unit)
    for variant, (lo, hi) in zip(e["variants"], e["variant_buckets"], strict=True):
        if lo <= b < hi:
            return variant
    return None


ODD_IDS = [
    "0",
    " ",
    "  ",
    "-",
    "null",
    "None",
    "user-42",
    "USER-42",
    "ü",
    "José",
    "日本語ユーザー",
    "用户-7",
    "😀",
    "emoji-🚀-id",
    "a:b",
    "tab\tid",
    "newline\nid",
    "x" * 200,
    "Ω≈ç√",
    "ñ",
]


def boundary_ids(salt: str, targets=(0, 4999, 5000, 9999)) -> dict[int, str]:
    """The first id ``b<n>`` whose bucket for ``salt`` is each target (a search over n)."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < len(targets):
        uid = f"b{n}"
        b = bucket(salt, uid)
        if b in targets and b not in found:
            found[b] = uid
        n += 1
    return found


def build() -> dict:
    buckets = []
    salts = ["homepage_hero", "checkout", "checkout_cta", "onboarding", "device_theme"]
    for i, unit in enumerate(ODD_IDS + [f"user-{n}" for n in range(30)]):
        salt = salts[i % len(salts)]
        buckets.append({"salt": salt, "unit": unit, "bucket": bucket(salt, unit)})
    # the empty-salt and empty-unit corners of the hash itself
    buckets.append({"salt": "homepage_hero", "unit": "", "bucket": bucket("homepage_hero", "")})
    buckets.append({"salt": "", "unit": "user-1", "bucket": bucket("", "user-1")})

    cases = []

    def add(user_id, experiment_id, attributes=None):
        attributes = attributes or {}
        cases.append(
            {
                "user_id": user_id,
                "experiment_id": experiment_id,
                "attributes": attributes,
                "expected": expected(user_id, experiment_id, attributes),
            }
        )

    users = [f"user-{n}" for n in range(20)] + ODD_IDS[:12]
    simple = [
        "homepage_hero",
        "checkout_cta",
        "checkout_copy",
        "search_ranking",
        "onboarding_small",
        "onboarding_large",
        "recs_widget",
        "free_shipping",
        "old_header",
    ]
    for u in users:
        for exp_id in simple:
            add(u, exp_id)
    # boundaries of the 50/50 split and of the layer
    for salt, exp_ids in (
        ("homepage_hero", ["homepage_hero"]),
        ("checkout", ["checkout_cta", "checkout_copy"]),
        ("onboarding", ["onboarding_small", "onboarding_large"]),
    ):
        for uid in boundary_ids(salt).values():
            for exp_id in exp_ids:
                add(uid, exp_id)
    # overrides (one of them outside its layer range), and not-in-payload
    for u in ("qa-user-1", "qa-user-2"):
        for exp_id in ("checkout_cta", "checkout_copy", "homepage_hero"):
            add(u, exp_id)
    add("user-1", "no_such_experiment")
    add("user-1", "draft_experiment")
    add("", "homepage_hero")
    # targeting
    for n in range(12):
        u = f"user-{n}"
        add(u, "pricing_banner", {"country": "US", "platform": "ios"})
        add(u, "pricing_banner", {"country": "CA", "platform": "ios", "age": 30})
        add(u, "pricing_banner", {"country": "FR", "platform": "ios"})
        add(u, "pricing_banner", {"country": "US"})
        add(u, "pricing_banner", {"country": "us", "platform": "ios"})
    add("user-1", "pricing_banner")
    add("user-1", "pricing_banner", {"country": None, "platform": "ios"})
    # a unit other than user_id: the same device gives the same variant to every user
    for n in range(15):
        add(f"user-{n}", "device_theme", {"device_id": f"device-{n % 5}"})
        add(f"user-{n}", "device_theme", {"device_id": n})
    add("user-1", "device_theme")
    add("user-1", "device_theme", {"device_id": ""})
    add("user-1", "device_theme", {"device_id": None})
    # attributes never change a non-targeted experiment
    add("user-3", "homepage_hero", {"country": "FR", "platform": "web"})
    # holdouts: the edges of the held range, the users above, an override of a held-out user,
    # a stopped experiment in a held layer (its shipped variant reaches every unit but the
    # held-out ones), a device-keyed layer
    held_edges = boundary_ids("longterm_2026", (0, 999, 1000, 9999)).values()
    for u in [*held_edges, *users, HELD_QA]:
        for exp_id in ("search_layout", "search_filters"):
            add(u, exp_id)
    for n in range(40):
        add(f"user-{n}", "device_font", {"device_id": f"device-{n}"})
    return {"payload": PAYLOAD, "buckets": buckets, "cases": cases}


def main() -> None:
    OUT.write_text(json.dumps(build(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
