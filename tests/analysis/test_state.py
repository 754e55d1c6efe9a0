"""ab_pipelines.analysis.state: an experiment's state on a day, from the registry, kills and publishes."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ab_pipelines.analysis.state import (
    analysis_window,
    config_versions,
    experiment_state,
    state_rows,
    states_of_day,
    with_provenance,
    write_states,
)
from ab_pipelines.config import load_registry
from ab_pipelines.config.approvals import content_sha
from ab_pipelines.config.models import Experiment
from ab_pipelines.config.publish import kill, publish
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import (
    GOLD_EXPERIMENT_RESULTS,
    GOLD_SUFFICIENT_STATS,
    OPS_EXPERIMENT_DAYS,
    TableSpec,
)

D1, D2, D3 = dt.date(2026, 11, 3), dt.date(2026, 11, 4), dt.date(2026, 11, 5)


def _at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)


def _experiment(**kw) -> Experiment:
    base = dict(
        id="e",
        name="E",
        owner="o@example.com",
        status="running",
        start_date=dt.date(2026, 3, 10),
        end_date=dt.date(2026, 3, 20),
        variants=[{"id": "a", "weight": 0.4}, {"id": "b", "weight": 0.6}],
    )
    return Experiment(**{**base, **kw})


def test_window_is_start_to_the_earliest_of_day_end_end_date_and_kill():
    exp = _experiment()
    w = analysis_window(exp, dt.date(2026, 3, 12))
    assert (w.start, w.end, w.kill_cut) == (
        _at(dt.date(2026, 3, 10), 0),
        _at(dt.date(2026, 3, 13), 0),
        None,
    )
    assert analysis_window(exp, dt.date(2026, 3, 25)).cutoff == _at(dt.date(2026, 3, 21), 0)
    kill_at = _at(dt.date(2026, 3, 12), 9, 30)
    assert analysis_window(exp, dt.date(2026, 3, 12), kill_at).cutoff == kill_at
    # A kill after the window's end does not cut it.
    late = analysis_window(exp, dt.date(2026, 3, 11), kill_at)
    assert late.kill_cut is None and late.cutoff == _at(dt.date(2026, 3, 12), 0)


@pytest.fixture
def published(home, registry_copy):
    """The repo's registry published on D1 at 08:00, hero_video killed on D2 at 12:00."""
    publish(home, registry_copy, now=_at(D1, 8))
    kill(home, "hero_video", reason="harm", by="ops@example.com", now=_at(D2, 12))
    return Lake(home), load_registry(registry_copy), registry_copy


def test_state_of_a_killed_experiment_before_on_and_after_the_kill_day(published):
    lake, registry, root = published
    before = experiment_state(lake, registry, "hero_video", D1)
    on = experiment_state(lake, registry, "hero_video", D2)
    after = experiment_state(lake, registry, "hero_video", D3)
    assert before.status == "running" and before.running and not before.ended
    assert before.kill is not None  # the record is known; it had not taken effect yet
    assert before.window.kill_cut is None
    assert on.status == after.status == "killed" and on.ended and not on.running
    assert (on.kill.by, on.kill.reason, on.kill.at) == ("ops@example.com", "harm", _at(D2, 12))
    assert on.window.cutoff == _at(D2, 12) == after.window.cutoff
    assert on.registry_status == "running" and on.analysed
    assert on.registry_sha == content_sha(root / "experiments" / "hero_video.yaml")
    assert on.variants == tuple(registry.experiments["hero_video"].variant_ids)
    assert on.baseline == on.variants[0]
    assert sum(on.weights) == pytest.approx(1.0)


def test_days_running_stop_at_the_kill_day_and_count_on_before_it(published):
    lake, registry, _ = published
    start = registry.experiments["hero_video"].start_date
    days = {d: experiment_state(lake, registry, "hero_video", d).days_running for d in (D1, D2, D3)}
    assert days[D1] == (D1 - start).days + 1  # the kill (D2) had not taken effect yet
    assert days[D2] == days[D3] == (D2 - start).days + 1
    assert experiment_state(lake, registry, "hero_video", start - dt.timedelta(1)).days_running == 0


def test_config_version_in_force_is_the_last_published_by_the_day_end(published):
    lake, registry, _ = published
    versions = config_versions(lake)
    assert [v.version for v in versions] == [1, 2]  # the publish, then the kill's publish
    assert experiment_state(lake, registry, "checkout_cta", D1).config_version == 1
    s2 = experiment_state(lake, registry, "checkout_cta", D2)
    assert s2.config_version == 2 and s2.config.content_sha == versions[1].content_sha
    day_before = D1 - dt.timedelta(days=1)
    assert experiment_state(lake, registry, "checkout_cta", day_before).config is None


def test_states_of_day_lists_started_experiments_sorted(published):
    lake, registry, _ = published
    states = states_of_day(lake, registry, dt.date(2026, 11, 2))
    assert list(states) == sorted(
        e.id for e in registry.experiments.values() if e.start_date <= dt.date(2026, 11, 2)
    )
    assert "hero_video" not in states and all(s.analysed for s in states.values())
    with pytest.raises(KeyError, match="unknown experiment 'nope'"):
        experiment_state(lake, registry, "nope", D1)


def test_experiment_days_rows_replace_the_day_and_name_only_kills_in_effect(published):
    lake, registry, _ = published
    for day in (D1, D2, D2):  # D2 twice: a re-run rewrites the day
        write_states(lake, day, states_of_day(lake, registry, day))
    t = lake.read_arrow(OPS_EXPERIMENT_DAYS)
    started = [sum(e.start_date <= d for e in registry.experiments.values()) for d in (D1, D2)]
    assert t.num_rows == sum(started) and started[0] < started[1]  # search_speed starts on D2
    rows = {(r["experiment_id"], r["day"]): r for r in t.to_pylist()}
    d1, d2 = rows["hero_video", D1], rows["hero_video", D2]
    assert d1["status"] == "running" and d1["killed_at"] is None and d1["kill_cut"] is None
    assert (d2["status"], d2["killed_by"], d2["kill_reason"]) == (
        "killed",
        "ops@example.com",
        "harm",
    )
    assert d2["killed_at"] == d2["kill_cut"] == _at(D2, 12)
    assert (d1["config_version"], d2["config_version"]) == (1, 2)
    assert d2["variants"] == list(registry.experiments["hero_video"].variant_ids)
    assert state_rows([]).schema == OPS_EXPERIMENT_DAYS.schema


def test_with_provenance_sets_the_columns_on_every_row(published):
    lake, registry, _ = published
    state = experiment_state(lake, registry, "checkout_cta", D2)
    t = pa.Table.from_pylist([{"experiment_id": "checkout_cta"}] * 3)
    stamped = with_provenance(t, state)
    assert stamped.column("registry_sha").to_pylist() == [state.registry_sha] * 3
    assert stamped.column("config_version").to_pylist() == [2] * 3
    again = with_provenance(stamped, None)  # replaced, not duplicated
    assert again.column_names == stamped.column_names
    assert again.column("config_version").null_count == 3


@pytest.mark.parametrize("spec", [GOLD_SUFFICIENT_STATS, GOLD_EXPERIMENT_RESULTS])
def test_gold_tables_written_without_provenance_stay_readable(home, spec):
    lake = Lake(home)
    provenance = {"registry_sha", "config_version"}
    old = TableSpec(
        spec.tier,
        spec.name,
        pa.schema([f for f in spec.schema if f.name not in provenance]),
        spec.partition_by,
        spec.keys,
    )
    row = {"experiment_id": "e", "metric": "m", "variant": "b", "segment": "all", "day": D1}
    lake.write_arrow(old, pa.Table.from_pylist([row], schema=old.schema), replace=[{"day": "x"}])
    # Read through today's spec before any new write: the new columns read as nulls.
    t = lake.read_arrow(spec)
    assert t.schema == spec.schema and t.column("registry_sha").to_pylist() == [None]
    new = {**row, "day": D2, "registry_sha": "abc", "config_version": 7}
    lake.write_arrow(spec, pa.Table.from_pylist([new], schema=spec.schema), replace=[{"day": "y"}])
    t = lake.read_arrow(spec, columns=["day", "registry_sha", "config_version"]).sort_by("day")
    assert t.to_pylist() == [
        {"day": D1, "registry_sha": None, "config_version": None},
        {"day": D2, "registry_sha": "abc", "config_version": 7},
    ]
    assert lake.read_arrow(spec, filter=pc.field("day") == D2).num_rows == 1
