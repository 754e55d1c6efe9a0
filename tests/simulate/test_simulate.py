"""simulate_days end to end: the dump files, their defects and their delivery quirks."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from ab_pipelines.config.registry import load_registry
from ab_pipelines.events.dumps import list_day_files
from ab_pipelines.events.parse import parse_dump_file, read_lines
from ab_pipelines.events.schema import REASON_CODES
from ab_pipelines.settings import paths
from ab_pipelines.simulate import HISTORY_DAYS, simulate_days, state_path
from ab_pipelines.simulate.traffic import malformed_manifest_path, offset_base

REPO = Path(__file__).resolve().parents[2]
START = dt.date(2026, 11, 2)
DAYS = 4
USERS, SEED = 2000, 11


@pytest.fixture(scope="module")
def registry():
    return load_registry(REPO)


@pytest.fixture(scope="module")
def sim(tmp_path_factory, registry):
    home = paths(tmp_path_factory.mktemp("abp"))
    report = simulate_days(home, START, DAYS, users=USERS, seed=SEED, registry=registry)
    return home, report


@pytest.fixture(scope="module")
def parsed(sim, registry) -> list[dict]:
    return _parsed(sim[0].raw, registry).to_pylist()


def _tree(raw: Path) -> dict[str, bytes]:
    return {
        p.relative_to(raw).as_posix(): p.read_bytes() for p in sorted(raw.rglob("*")) if p.is_file()
    }


def _arrival_days(raw: Path) -> list[dt.date]:
    days = {p.name.removeprefix("date=") for p in raw.glob("*/date=*") if p.is_dir()}
    return sorted(dt.date.fromisoformat(d) for d in days)


def _envelopes(path: Path) -> list[dict]:
    """The well-formed envelopes of a dump file (malformed lines and a corrupt tail skipped)."""
    lines, _ = read_lines(path.read_bytes(), gzipped=path.name.endswith(".gz"))
    out = []
    for line in lines:
        try:
            env = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if {"topic", "partition", "offset", "value"} <= env.keys():
            out.append(env)
    return out


def _parsed(raw: Path, registry) -> pa.Table:
    batches = []
    known = registry.known_variants()
    for day in _arrival_days(raw):
        for f in list_day_files(raw, day):
            batches += parse_dump_file(f.path.read_bytes(), f.rel, f.topic, day, known)
    return pa.Table.from_batches(batches)


def test_first_use_stores_state_and_simulates_history(sim):
    home, report = sim
    history = [START - dt.timedelta(days=HISTORY_DAYS - i) for i in range(HISTORY_DAYS)]
    assert list(report.history_days) == history
    assert list(report.days) == history + [START + dt.timedelta(days=i) for i in range(DAYS)]
    state = orjson.loads(state_path(home).read_bytes())
    assert state == {"users": USERS, "seed": SEED, "first_day": history[0].isoformat()}
    assert (home.raw / "metric_events" / f"date={history[0]}").is_dir()
    # No experiment runs in the pre-period.
    exposure_days = sorted(p.name for p in (home.raw / "exposures").iterdir())
    assert exposure_days[0] == f"date={START}"
    assert report.malformed > 0 and report.duplicates > 0 and report.late > 0
    assert "simulated" in report.summary()


def test_state_mismatch_is_one_clear_error(sim, registry):
    home, _ = sim
    with pytest.raises(ValueError, match=r"2000 users with seed 11.*remove .*raw"):
        simulate_days(home, START, 1, users=3000, registry=registry)
    with pytest.raises(ValueError, match="seed 12"):
        simulate_days(home, START, 1, seed=12, registry=registry)


def test_resimulating_a_day_rewrites_identical_bytes(sim, registry):
    home, _ = sim
    before = _tree(home.raw)
    simulate_days(home, START + dt.timedelta(days=1), 1, registry=registry)
    assert _tree(home.raw) == before


def test_day_by_day_equals_one_call(sim, registry, tmp_path):
    home, _ = sim
    other = paths(tmp_path)
    for i in range(DAYS):
        simulate_days(
            other, START + dt.timedelta(days=i), 1, users=USERS, seed=SEED, registry=registry
        )
    assert _tree(other.raw) == _tree(home.raw)


def test_every_planted_line_gets_its_reason_and_the_rest_parse(sim, parsed):
    home, _ = sim
    table = parsed
    quarantined = {
        (r["source_file"], r["source_line"]): r["reason"]
        for r in table
        if r["status"] == "quarantined"
    }
    planted = {}
    for day in _arrival_days(home.raw):
        manifest = malformed_manifest_path(home.raw, day)
        if manifest.exists():
            planted |= {
                (m["file"], m["line"]): m["reason"] for m in orjson.loads(manifest.read_bytes())
            }
    assert quarantined == planted
    assert set(planted.values()) == set(REASON_CODES)  # every kind occurs in 18 days
    ok = [r for r in table if r["status"] == "ok"]
    assert len(ok) > 0.99 * len(table)
    assert {r["source_file"].endswith(".gz") for r in ok if r["topic"] == "metric_events"} == {True}
    assert {r["source_file"].endswith(".gz") for r in ok if r["topic"] == "exposures"} == {False}


def test_truncated_gzip_keeps_the_lines_before_the_cut(sim, registry):
    home, _ = sim
    corrupt = [
        m
        for day in _arrival_days(home.raw)
        if malformed_manifest_path(home.raw, day).exists()
        for m in orjson.loads(malformed_manifest_path(home.raw, day).read_bytes())
        if m["reason"] == "corrupt_file"
    ]
    assert corrupt
    for m in corrupt:
        day = dt.date.fromisoformat(m["file"].split("/")[1].removeprefix("date="))
        rows = pa.Table.from_batches(
            list(
                parse_dump_file(
                    (home.raw / m["file"]).read_bytes(),
                    m["file"],
                    "metric_events",
                    day,
                    registry.known_variants(),
                )
            )
        ).to_pylist()
        assert rows[-1]["reason"] == "corrupt_file" and rows[-1]["source_line"] == m["line"]
        assert all(r["status"] == "ok" for r in rows[:-1])


def _files(raw: Path, partition: int) -> list[Path]:
    return sorted(p for p in raw.glob("*/date=*/*") if p.name.split("+")[1] == str(partition))


def test_late_records_arrive_next_day_with_their_event_time(sim):
    home, report = sim
    late_files = _files(home.raw, 1)
    assert late_files and sum(len(_envelopes(p)) for p in late_files) == report.late
    main_ids = {e["value"]["event_id"] for p in _files(home.raw, 0) for e in _envelopes(p)}
    for path in late_files:
        folder_day = dt.date.fromisoformat(path.parent.name.removeprefix("date="))
        for env in _envelopes(path):
            event_day = dt.date.fromisoformat(env["value"]["ts"][:10])
            arrival = dt.datetime.fromtimestamp(env["timestamp"] / 1000, dt.UTC).date()
            assert event_day == folder_day - dt.timedelta(days=1)
            assert arrival == folder_day
            assert env["value"]["event_id"] not in main_ids  # delivered late, not twice


def test_replays_repeat_envelopes_and_retries_repeat_events(sim):
    home, _ = sim
    originals: dict[tuple, dict] = {}
    replays = []
    for path in _files(home.raw, 0):
        folder_day = dt.date.fromisoformat(path.parent.name.removeprefix("date="))
        first = int(path.name.split("+")[2].split(".")[0])
        if first < offset_base(folder_day):
            replays.append((path, _envelopes(path)))
            continue
        for env in _envelopes(path):
            originals[(env["topic"], env["partition"], env["offset"])] = env
    assert replays
    for path, lines in replays:
        assert lines[0]["offset"] == int(path.name.split("+")[2].split(".")[0])
        for env in lines:
            assert originals[(env["topic"], env["partition"], env["offset"])] == env
    by_event = defaultdict(list)
    for env in originals.values():
        by_event[env["value"].get("event_id")].append(env)
    retried = 0
    for path in _files(home.raw, 2):
        for env in _envelopes(path):  # a truncated retry file keeps its lines before the cut
            (orig,) = by_event[env["value"]["event_id"]]
            assert orig["value"] == env["value"] and orig["partition"] == 0
            assert orig["offset"] != env["offset"]
            retried += 1
    assert retried > 0


def test_exposures_respect_layers_targeting_and_start_dates(parsed, registry):
    rows = [r for r in parsed if r["status"] == "ok" and r["topic"] == "exposures"]
    by_user = defaultdict(set)
    for r in rows:
        by_user[r["user_id"]].add(r["experiment_id"])
        assert r["source"] == "simulator" and r["config_version"] == 0
        if r["experiment_id"] == "search_speed":
            assert orjson.loads(r["attributes"])["platform"] in {"ios", "android"}
            assert r["ts"].date() >= dt.date(2026, 11, 4)
    assert not [u for u, exps in by_user.items() if {"checkout_cta", "checkout_layout"} <= exps]
    # every experiment logs exposures, and so does every running holdout (rule 8b)
    holdouts = {h.id for h in registry.holdouts.values() if h.status == "running"}
    assert {e for exps in by_user.values() for e in exps} == set(registry.experiments) | holdouts
    # One exposure per visit (one visit a day): copies share the event_id, so count distinct ids.
    visits = defaultdict(set)
    for r in rows:
        visits[(r["user_id"], r["experiment_id"], r["ts"].date())].add(r["event_id"])
    assert max(len(v) for v in visits.values()) == 1
