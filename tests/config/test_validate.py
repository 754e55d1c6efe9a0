"""One test (or case) per registry rule, on a small registry written to tmp_path."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import pytest
import yaml

from ab_pipelines.config import Problem, RegistryError, approve, load_registry, validate_registry
from ab_pipelines.settings import REPO_ROOT

AT = dt.datetime(2026, 10, 30, 10, 0, tzinfo=dt.UTC)

METRICS = {
    "conversion": {"id": "conversion", "kind": "proportion", "event": "purchase", "agg": "any"},
    "revenue": {"id": "revenue", "kind": "mean", "event": "purchase", "agg": "sum"},
    "page_load_ms": {
        "id": "page_load_ms",
        "kind": "ratio",
        "numerator": {"event": "page_view", "agg": "sum"},
        "denominator": {"event": "page_view", "agg": "count"},
        "higher_is_better": False,
    },
}

BASE = {
    "id": "exp",
    "name": "An experiment",
    "owner": "ana@example.com",
    "status": "draft",
    "start_date": dt.date(2026, 11, 2),
    "end_date": dt.date(2026, 11, 29),
    "variants": [{"id": "control", "weight": 0.5}, {"id": "treatment", "weight": 0.5}],
    "metrics": {
        "primary": ["conversion"],
        "secondary": ["revenue"],
        "guardrails": [{"metric": "page_load_ms", "max_relative_change": 0.05}],
    },
}


def write(root: Path, folder: str, data: dict, name: str | None = None) -> Path:
    path = root / folder / f"{name or data['id']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def registry(root: Path, *experiments: dict, metrics: dict | None = None) -> Path:
    for m in (METRICS if metrics is None else metrics).values():
        write(root, "metrics", m)
    (root / "experiments").mkdir(exist_ok=True)
    for e in experiments:
        write(root, "experiments", e)
    return root


def exp(**changes) -> dict:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


def fields(problems: list[Problem]) -> set[tuple[str, str]]:
    return {(p.file, p.field) for p in problems}


def test_base_registry_is_valid(tmp_path):
    assert validate_registry(registry(tmp_path, exp())) == []


def test_demo_registry_is_valid():
    assert validate_registry(REPO_ROOT) == []


def _without_guardrails(e):
    e["metrics"].pop("guardrails")


CASES = {
    # name: (experiment changes, expected field, words in the reason)
    "weights sum": (
        {"variants": [{"id": "a", "weight": 0.6}, {"id": "b", "weight": 0.3}]},
        "variants",
        "weights sum to 0.9, not 1",
    ),
    "one variant": ({"variants": [{"id": "a", "weight": 1.0}]}, "variants", "at least two"),
    "repeated variant": (
        {"variants": [{"id": "a", "weight": 0.5}, {"id": "a", "weight": 0.5}]},
        "variants",
        "repeated: a",
    ),
    "unknown primary": (
        {"metrics": {"primary": ["signups"]}},
        "metrics.primary",
        "unknown metric 'signups'",
    ),
    "unknown secondary": (
        {"metrics": {"primary": ["conversion"], "secondary": ["margin"]}},
        "metrics.secondary",
        "unknown metric 'margin'",
    ),
    "unknown guardrail": (
        {"metrics": {"guardrails": [{"metric": "crashes", "max_relative_change": 0.1}]}},
        "metrics.guardrails",
        "unknown metric 'crashes'",
    ),
    "unknown unit": ({"unit": "device_id"}, "unit", "unknown unit 'device_id'"),
    "layer without range": ({"layer": "checkout"}, "layer_range", "needs a layer_range"),
    "range without layer": ({"layer_range": [0.0, 0.5]}, "layer", "needs a layer"),
    "range reversed": (
        {"layer": "checkout", "layer_range": [0.5, 0.2]},
        "layer_range",
        "0 <= lo < hi <= 1",
    ),
    "range beyond 1": (
        {"layer": "checkout", "layer_range": [0.5, 1.2]},
        "layer_range",
        "0 <= lo < hi <= 1",
    ),
    "allocation in layer": (
        {"layer": "checkout", "layer_range": [0.0, 0.5], "allocation": 0.5},
        "allocation",
        "must not be set inside layer 'checkout'",
    ),
    "end before start": ({"end_date": dt.date(2026, 11, 1)}, "end_date", "before start_date"),
    "shipped unknown variant": (
        {"shipped_variant": "blue", "status": "stopped", "approvals": []},
        "shipped_variant",
        "'blue' is not one of the variants",
    ),
    "shipped while running": (
        {"shipped_variant": "treatment"},
        "shipped_variant",
        "only once stopped",
    ),
    "override to unknown variant": (
        {"overrides": {"qa-1": "blue"}},
        "overrides",
        "unknown variant 'blue'",
    ),
    "unknown field": ({"colour": "blue"}, "colour", "Extra inputs"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_experiment_rule(tmp_path, case):
    changes, field, words = CASES[case]
    e = exp(**changes)
    root = registry(tmp_path, e)
    if e["status"] != "draft":  # approve so that only the rule under test fires
        approve(root / "experiments/exp.yaml", "lee@example.com", AT)
    state = {"experiments": {"exp": {"status": "running", "layer": None, "layer_range": None}}}
    problems = validate_registry(root, state if e["status"] == "stopped" else None)
    assert fields(problems) == {("experiments/exp.yaml", field)}, problems
    assert words in problems[0].reason
    assert str(problems[0]).startswith(f"experiments/exp.yaml: field '{field}': ")


def test_units_yaml_adds_units(tmp_path):
    root = registry(tmp_path, exp(unit="device_id"))
    (root / "units.yaml").write_text("device_id: the app install id\n", encoding="utf-8")
    assert validate_registry(root) == []


METRIC_CASES = {
    "mean without event": ({"kind": "mean", "agg": "sum"}, "event"),
    "mean with agg any": ({"kind": "mean", "event": "purchase", "agg": "any"}, "agg"),
    "mean without agg": ({"kind": "mean", "event": "purchase"}, "agg"),
    "proportion without event": ({"kind": "proportion"}, "event"),
    "proportion with agg sum": ({"kind": "proportion", "event": "purchase", "agg": "sum"}, "agg"),
    "ratio without denominator": (
        {"kind": "ratio", "numerator": {"event": "page_view", "agg": "sum"}},
        "denominator",
    ),
    "winsorize at 1": (
        {"kind": "mean", "event": "purchase", "agg": "sum", "winsorize": 1},
        "winsorize",
    ),
    "unknown kind": ({"kind": "median", "event": "purchase"}, "kind"),
}


@pytest.mark.parametrize("case", METRIC_CASES, ids=list(METRIC_CASES))
def test_metric_rule(tmp_path, case):
    body, field = METRIC_CASES[case]
    root = registry(tmp_path, exp(), metrics={**METRICS, "m": {"id": "m", **body}})
    problems = validate_registry(root)
    assert fields(problems) == {("metrics/m.yaml", field)}, problems


def test_proportion_agg_may_be_absent(tmp_path):
    m = {"id": "m", "kind": "proportion", "event": "purchase"}
    assert validate_registry(registry(tmp_path, exp(), metrics={**METRICS, "m": m})) == []


def test_broken_metric_is_not_also_an_unknown_reference(tmp_path):
    # revenue fails to load; the experiments naming it are not blamed for that.
    root = registry(tmp_path, exp(), metrics={**METRICS, "revenue": {"id": "revenue"}})
    assert fields(validate_registry(root)) == {("metrics/revenue.yaml", "kind")}


def test_duplicate_experiment_id_across_files(tmp_path):
    root = registry(tmp_path, exp())
    write(root, "experiments", exp(), name="exp").rename(root / "experiments/exp.yml")
    write(root, "experiments", exp())
    problems = validate_registry(root)
    assert fields(problems) == {("experiments/exp.yml", "id")}
    assert "duplicate experiment id 'exp' (also in experiments/exp.yaml)" in problems[0].reason


def test_id_must_equal_file_name(tmp_path):
    root = registry(tmp_path)
    write(root, "experiments", exp(id="other"), name="exp")
    assert fields(validate_registry(root)) == {("experiments/exp.yaml", "id")}


def test_parse_error_names_the_file_and_line(tmp_path):
    root = registry(tmp_path, exp())
    (root / "experiments/bad.yaml").write_text("id: bad\nvariants: [\n", encoding="utf-8")
    [problem] = validate_registry(root)
    assert problem.file == "experiments/bad.yaml" and problem.field == ""
    assert str(problem).startswith("experiments/bad.yaml: not valid YAML (line 3")


def _layered(id_: str, lo: float, hi: float, status: str = "running") -> dict:
    return exp(id=id_, status=status, layer="checkout", layer_range=[lo, hi])


def _approved(root: Path) -> Path:
    for path in sorted((root / "experiments").glob("*.yaml")):
        approve(path, "lee@example.com", AT)
    return root


def test_overlapping_running_ranges(tmp_path):
    root = _approved(registry(tmp_path, _layered("a", 0.0, 0.6), _layered("b", 0.5, 1.0)))
    problems = validate_registry(root)
    assert fields(problems) == {("experiments/b.yaml", "layer_range")}
    assert "overlaps a's [0, 0.6) in layer 'checkout'" in problems[0].reason


def test_touching_ranges_do_not_overlap(tmp_path):
    root = _approved(registry(tmp_path, _layered("a", 0.0, 0.5), _layered("b", 0.5, 1.0)))
    assert validate_registry(root) == []


def test_overlap_only_counts_running_experiments(tmp_path):
    root = _approved(
        registry(tmp_path, _layered("a", 0.0, 0.6), _layered("b", 0.5, 1.0, status="approved"))
    )
    assert validate_registry(root) == []


# ---- approvals ----------------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["approved", "running", "stopped"])
def test_status_past_review_needs_an_approval(tmp_path, status):
    root = registry(tmp_path, exp(status=status))
    problems = validate_registry(root, _published(exp=status))
    assert fields(problems) == {("experiments/exp.yaml", "approvals")}
    assert "needs an approval by someone other than the owner ana@example.com" in problems[0].reason


@pytest.mark.parametrize("status", ["draft", "in_review"])
def test_draft_and_review_need_no_approval(tmp_path, status):
    assert validate_registry(registry(tmp_path, exp(status=status))) == []


def test_owner_approval_does_not_count(tmp_path):
    root = registry(tmp_path, exp(status="running"))
    path = root / "experiments/exp.yaml"
    approve(path, "lee@example.com", AT)
    data = yaml.safe_load(path.read_text())
    data["approvals"][0]["by"] = "ana@example.com"  # as if the owner had written it by hand
    write(root, "experiments", data)
    assert fields(validate_registry(root)) == {("experiments/exp.yaml", "approvals")}


def test_edit_after_approval_is_stale(tmp_path):
    root = registry(tmp_path, exp(status="running"))
    path = root / "experiments/exp.yaml"
    approve(path, "lee@example.com", AT)
    path.write_text(path.read_text().replace("weight: 0.5", "weight: 0.50"))  # layout only
    assert validate_registry(root) == []
    path.write_text(path.read_text().replace("An experiment", "A renamed experiment"))
    [problem] = validate_registry(root)
    assert str(problem) == (
        "experiments/exp.yaml: field 'approvals': "
        "approval is stale: content changed since lee@example.com approved it"
    )


def test_lifecycle_changes_keep_the_approval(tmp_path):
    root = registry(tmp_path, exp(status="approved"))
    path = root / "experiments/exp.yaml"
    approve(path, "lee@example.com", AT)
    state = {"experiments": {"exp": {"status": "running", "layer": None, "layer_range": None}}}
    text = path.read_text().replace("status: approved", "status: stopped")
    path.write_text(text + "shipped_variant: treatment\n")
    assert validate_registry(root, state) == []


# ---- the published state ------------------------------------------------------------------------
def _published(**statuses) -> dict:
    return {
        "experiments": {
            k: {"status": v, "layer": None, "layer_range": None} for k, v in statuses.items()
        }
    }


@pytest.mark.parametrize(
    ("was", "now", "ok"),
    [
        ("draft", "draft", True),
        ("draft", "in_review", True),
        ("in_review", "approved", True),
        ("approved", "running", True),
        ("running", "stopped", True),
        ("stopped", "stopped", True),
        ("draft", "approved", False),
        ("approved", "stopped", False),
        ("running", "approved", False),
        ("stopped", "running", False),
        ("in_review", "draft", False),
    ],
)
def test_status_moves_one_step_forward(tmp_path, was, now, ok):
    root = _approved(registry(tmp_path, exp(status=now)))
    problems = validate_registry(root, _published(exp=was))
    assert fields(problems) == (set() if ok else {("experiments/exp.yaml", "status")}), problems


@pytest.mark.parametrize(
    ("status", "ok"),
    [
        ("draft", True),
        ("in_review", True),
        ("approved", True),
        ("running", True),
        ("stopped", False),
    ],
)
def test_first_publish_may_not_be_stopped(tmp_path, status, ok):
    root = _approved(registry(tmp_path, exp(status=status)))
    problems = validate_registry(root, None)
    assert fields(problems) == (set() if ok else {("experiments/exp.yaml", "status")})


def test_running_range_never_moves(tmp_path):
    root = _approved(registry(tmp_path, _layered("a", 0.0, 0.4)))
    state = {
        "experiments": {"a": {"status": "running", "layer": "checkout", "layer_range": [0, 0.5]}}
    }
    [problem] = validate_registry(root, state)
    assert (problem.file, problem.field) == ("experiments/a.yaml", "layer_range")
    assert problem.reason.startswith("range moved since it was published")


def test_running_layer_never_changes(tmp_path):
    root = _approved(registry(tmp_path, _layered("a", 0.0, 0.5)))
    state = {"experiments": {"a": {"status": "running", "layer": "home", "layer_range": [0, 0.5]}}}
    assert fields(validate_registry(root, state)) == {("experiments/a.yaml", "layer")}


def test_unchanged_running_range_is_fine(tmp_path):
    root = _approved(registry(tmp_path, _layered("a", 0.0, 0.5, status="stopped")))
    state = {
        "experiments": {"a": {"status": "running", "layer": "checkout", "layer_range": [0, 0.5]}}
    }
    assert validate_registry(root, state) == []


def test_removed_experiment(tmp_path):
    root = registry(tmp_path, exp())
    problems = validate_registry(root, _published(exp="draft", gone="running"))
    assert [str(p) for p in problems] == ["experiments/gone.yaml: removed; stop it instead"]


def test_unparseable_file_is_not_removed(tmp_path):
    root = registry(tmp_path, exp())
    (root / "experiments/gone.yaml").write_text("id: [\n", encoding="utf-8")
    problems = validate_registry(root, _published(exp="draft", gone="running"))
    assert fields(problems) == {("experiments/gone.yaml", "")}
    assert "not valid YAML" in problems[0].reason


# ---- load_registry ------------------------------------------------------------------------------
def test_load_registry_raises_on_content_problems(tmp_path):
    root = registry(tmp_path, exp(end_date=dt.date(2026, 11, 1), unit="device_id"))
    with pytest.raises(RegistryError) as info:
        load_registry(root)
    assert [(p.file, p.field) for p in info.value.details] == [
        ("experiments/exp.yaml", "end_date"),
        ("experiments/exp.yaml", "unit"),
    ]
    assert info.value.problems == [str(p) for p in info.value.details]


def test_load_registry_leaves_approvals_to_validation(tmp_path):
    # Loading serves the SDK and the analysis; approvals are checked when validating and publishing.
    root = registry(tmp_path, exp(status="running"))
    assert set(load_registry(root).experiments) == {"exp"}


def test_load_registry_of_the_demo():
    reg = load_registry(REPO_ROOT)
    assert reg.known_variants()["checkout_cta"] == frozenset({"control", "treatment"})
