"""One day of traffic: the users' visits as events, then their delivery as Kafka dump files.

Delivery is realistic: ~2% of events arrive the next day (partition 1), ~0.5% are replayed by the
consumer into the next day's folder (same topic, partition and offset), ~0.2% are producer retries
(same event_id, new offset, partition 2), and ~0.1% of lines are malformed, each planted to produce
one reason code of the landing parser and recorded in ``raw/_malformed/date=D.json``. Every draw
comes from the seed and the day, so re-simulating a day rewrites the same bytes.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import orjson

from ab_pipelines.config.models import Experiment
from ab_pipelines.contracts.envelope import (
    EXPOSURES,
    METRIC_EVENTS,
    day_dir,
    dump_name,
    envelope,
    exposure_event,
    metric_event,
)
from ab_pipelines.events.dumps import write_dump
from ab_pipelines.events.parse import read_lines
from ab_pipelines.events.schema import MAX_LINE_BYTES, REASON_CODES
from ab_pipelines.simulate.population import Population

__all__ = [
    "DayDelivery",
    "ExposurePlan",
    "LINE_DEFECTS",
    "TopicEvents",
    "day_events",
    "deliver_day",
    "RecordSink",
    "malformed_manifest_path",
    "offset_base",
    "visitors",
]

DAY_MS = 86_400_000
_EPOCH = dt.date(1970, 1, 1)
OFFSET_EPOCH = dt.date(2020, 1, 1)
OFFSET_STRIDE = 10_000_000  # offsets of day D: (D − 2020-01-01)·10^7 + i, unique per partition
MAIN, LATE, RETRY = 0, 1, 2  # partitions: the day's traffic, late deliveries, producer retries
TOPICS = (EXPOSURES, METRIC_EVENTS)
GZIPPED = {"exposures": False, "metric_events": True}  # both encodings occur
LATE_SHARE, REPLAY_SHARE, RETRY_SHARE, MALFORMED_SHARE = 0.02, 0.005, 0.002, 0.001
LATE_WINDOW_MS = 6 * 3_600_000  # late records arrive in the first hours of the next day
USD_SHARE = 0.9

# Line defects and the reason code each one produces; exposure-only defects need an exposures file.
# (too_large and corrupt_file are planted per file, every few days, not as line defects.)
LINE_DEFECTS = tuple(c for c in REASON_CODES if c not in ("too_large", "corrupt_file"))
_EXPOSURE_ONLY = frozenset({"unknown_experiment", "unknown_variant"})
TOO_LARGE_EVERY, CORRUPT_FILE_EVERY = 4, 3  # one too_large line / one truncated gzip every N days
_BAD_BYTES_MARK = "__sim_bad_bytes__"


@dataclass
class TopicEvents:
    """The events of one topic for one day: event time (epoch ms), Kafka key and event object."""

    ts_ms: np.ndarray
    keys: list[str]
    values: list[dict]

    def __len__(self) -> int:
        return len(self.keys)


@dataclass(frozen=True)
class ExposurePlan:
    """One running experiment: the users' variant indexes and which users log exposures."""

    experiment: Experiment
    variants: np.ndarray  # variant index per user, -1 when not in the experiment
    logged: np.ndarray  # bool per user: assigned, not overridden, exposure not dropped


@dataclass
class DayDelivery:
    """What delivering one day wrote: files (relative to raw/), line counts, planted defects."""

    files: list[str] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)
    malformed: list[dict] = field(default_factory=list)
    replayed: int = 0
    retried: int = 0
    late: int = 0


def _day_ms(day: dt.date) -> int:
    return (day - _EPOCH).days * DAY_MS


def offset_base(day: dt.date) -> int:
    """First Kafka offset of a day's records in every partition."""
    return (day - OFFSET_EPOCH).days * OFFSET_STRIDE


def _iso(ms: np.ndarray) -> list[str]:
    text = np.datetime_as_string(np.asarray(ms, dtype="int64").astype("datetime64[ms]"), unit="ms")
    return [t + "Z" for t in text.tolist()]


def _visits(pop: Population, day: dt.date, seed: int) -> tuple[np.random.Generator, np.ndarray]:
    """The day's generator after its first draw, and who visits (user indexes, ascending)."""
    rng = np.random.default_rng([seed, day.toordinal(), 1])
    return rng, np.flatnonzero(rng.random(pop.size) < pop.visit_prob)


def visitors(pop: Population, day: dt.date, seed: int) -> np.ndarray:
    """The users who visit on ``day`` (indexes, ascending): the ones :func:`day_events` simulates,
    whatever the experiments (the draw comes first and does not depend on them)."""
    return _visits(pop, day, seed)[1]


def day_events(
    pop: Population,
    day: dt.date,
    seed: int,
    multipliers: Mapping[str, np.ndarray],
    plans: Sequence[ExposurePlan],
) -> dict[str, TopicEvents]:
    """Simulate one day: who visits, their page views, purchases and exposures.

    Draw sizes never depend on the experiments, so a kill changes only its users' behaviour.
    """
    rng, active = _visits(pop, day, seed)
    start_ms, end_ms = _day_ms(day), _day_ms(day) + DAY_MS - 1
    ymd = day.strftime("%Y%m%d")
    na = len(active)
    visit_start = start_ms + rng.integers(0, DAY_MS - 3_600_000, na)
    n_views = 1 + rng.poisson(3.0, na)
    view_visit = np.repeat(np.arange(na), n_views)
    gaps = rng.exponential(45_000.0, len(view_visit)).astype(np.int64) + 500
    csum = np.cumsum(gaps)
    first = np.concatenate(([0], np.cumsum(n_views)[:-1])).astype(np.int64)
    before = (csum[first] - gaps[first])[view_visit] if na else csum
    view_ts = np.minimum(visit_start[view_visit] + csum - before, end_ms)
    view_user = active[view_visit]
    sigma_load = 0.35
    load_noise = rng.lognormal(-0.5 * sigma_load**2, sigma_load, len(view_visit))
    load = np.round(pop.speed_ms[view_user] * multipliers["page_load"][view_user] * load_noise, 1)

    buy_draw, buy_gap = rng.random(na), rng.exponential(60_000.0, na).astype(np.int64)
    sigma_value = 0.4
    value_noise = rng.lognormal(-0.5 * sigma_value**2, sigma_value, na)
    usd = rng.random(na) < USD_SHARE
    q = np.clip(pop.purchase_prob[active] * multipliers["purchase_prob"][active], 0.0, 1.0)
    buyer = np.flatnonzero(buy_draw < q)
    last_view = (csum[first + n_views - 1] - (csum[first] - gaps[first])) if na else csum
    buy_ts = np.minimum(visit_start[buyer] + last_view[buyer] + buy_gap[buyer], end_ms)
    buy_user = active[buyer]
    amount = np.round(
        pop.order_value[buy_user] * multipliers["order_value"][buy_user] * value_noise[buyer], 2
    )

    ids = pop.user_ids
    metric_keys = [ids[u] for u in view_user.tolist()] + [ids[u] for u in buy_user.tolist()]
    metric_ts = np.concatenate((view_ts, buy_ts)).astype(np.int64)
    metric_iso = _iso(metric_ts)
    values: list[dict] = []
    for i, (uid, ts, load_ms) in enumerate(
        zip(metric_keys, metric_iso, load.tolist(), strict=False)
    ):
        values.append(  # no properties: the optional field left out, as some clients do
            {
                "event_id": f"sim-{ymd}-m{i:07d}",
                "user_id": uid,
                "event": "page_view",
                "value": load_ms,
                "ts": ts,
            }
        )
    n_views_total = len(values)
    for j, (amt, is_usd) in enumerate(zip(amount.tolist(), usd[buyer].tolist(), strict=True)):
        i = n_views_total + j
        values.append(
            metric_event(
                f"sim-{ymd}-m{i:07d}",
                metric_iso[i],
                (metric_keys[i], "purchase", amt, {"currency": "USD" if is_usd else "EUR"}),
            )
        )
    metric_events = TopicEvents(metric_ts, metric_keys, values)

    exp_ts, exp_keys, exp_values = [], [], []
    for plan in plans:
        visits = np.flatnonzero(plan.logged[active])  # one exposure per visit of a logged user
        users, ts = active[visits], visit_start[visits]
        names = plan.experiment.variant_ids
        for u, variant, t in zip(
            users.tolist(), plan.variants[users].tolist(), _iso(ts), strict=True
        ):
            exp_keys.append(ids[u])
            exp_values.append(
                exposure_event(
                    "",
                    t,
                    (ids[u], plan.experiment.id, names[variant], 0, pop.attributes[u]),
                    source="simulator",
                )
            )
        exp_ts.append(ts)
    for i, value in enumerate(exp_values):
        value["event_id"] = f"sim-{ymd}-x{i:07d}"
    exposures = TopicEvents(
        np.concatenate(exp_ts).astype(np.int64) if exp_ts else np.zeros(0, np.int64),
        exp_keys,
        exp_values,
    )
    return {"exposures": exposures, "metric_events": metric_events}


def _malformed_line(defect: str, env: dict) -> bytes | dict:
    """Break one envelope (a fresh copy) so that the parser answers with ``defect``."""
    value = env["value"]
    if defect == "bad_json":
        text = orjson.dumps(env)
        return text[: len(text) // 2]  # a truncated object is never valid JSON
    if defect == "bad_encoding":
        value["user_id"] = env["key"] = _BAD_BYTES_MARK
        return orjson.dumps(env).replace(_BAD_BYTES_MARK.encode(), b"user-\xc3\x28")
    if defect == "bad_envelope":
        del env["offset"]
    elif defect == "missing_field":
        del value["user_id"]
    elif defect == "wrong_type":
        if env["topic"] == "exposures":
            value["config_version"] = "abc"
        else:
            value["value"] = "abc" if env["offset"] % 2 else True
    elif defect == "bad_timestamp":
        value["ts"] = value["ts"].removesuffix("Z")  # no zone
    elif defect == "ts_out_of_range":
        value["ts"] = _iso(np.array([env["timestamp"] - 20 * DAY_MS]))[0]
    elif defect == "unknown_topic":
        env["topic"] = "clicks"
    elif defect == "unknown_experiment":
        value["experiment_id"] = "sim_retired_experiment"
    elif defect == "unknown_variant":
        value["variant"] = "sim_unknown_variant"
    elif defect == "too_large":
        value["properties"] = {"currency": "USD", "blob": "x" * (MAX_LINE_BYTES + 1)}
    else:
        raise ValueError(f"unknown defect {defect!r}")
    return env


def _plan_defects(day: dt.date, counts: Mapping[str, int]) -> dict[str, list[str]]:
    """Which defects to plant in which topic's main file today (every kind once before repeats)."""
    total = sum(counts.values())
    n = max(round(MALFORMED_SHARE * total), min(len(LINE_DEFECTS), total // 200))
    shift = day.toordinal()
    out: dict[str, list[str]] = {t: [] for t in TOPICS}
    for i in range(n):
        defect = LINE_DEFECTS[(i + shift) % len(LINE_DEFECTS)]
        if defect in _EXPOSURE_ONLY or i % 2:
            topic = "exposures" if counts["exposures"] else "metric_events"
        else:
            topic = "metric_events" if counts["metric_events"] else "exposures"
        if counts[topic] and not (defect in _EXPOSURE_ONLY and topic != "exposures"):
            out[topic].append(defect)
    if shift % TOO_LARGE_EVERY == 0 and counts["metric_events"]:
        out["metric_events"].append("too_large")
    return out


class RecordSink(Protocol):
    """Where delivered records go instead of dump files: a Kafka producer
    (``ab_pipelines.simulate.to_kafka.KafkaDelivery``). The broker gives partitions and offsets,
    the sink connector writes the dumps."""

    def produce(self, topic: str, timestamp_ms: int, key: str | None, value: bytes) -> None: ...


def _write(
    raw: Path,
    topic: str,
    day: dt.date,
    partition: int,
    first: int,
    lines: list,
    out: DayDelivery,
    sink: RecordSink | None = None,
) -> str | None:
    out.lines[topic] = out.lines.get(topic, 0) + len(lines)
    if sink is not None:
        for line in lines:  # an envelope, or a malformed value as bytes (see _kafka_malformed)
            if isinstance(line, dict):
                sink.produce(topic, line["timestamp"], line["key"], orjson.dumps(line["value"]))
            else:
                sink.produce(topic, _day_ms(day), None, line)
        return None
    path = write_dump(raw, topic, day, partition, first, lines, gzipped=GZIPPED[topic])
    rel = path.relative_to(raw).as_posix()
    out.files.append(rel)
    return rel


# Defects a producer can send: a value that is not JSON, not UTF-8, or an event with a wrong
# field. The envelope's defects (bad_envelope, unknown_topic) are the connector's to avoid, and a
# value over the broker's message size (too_large) is refused by the producer, so those are not
# planted through Kafka.
_KAFKA_DEFECTS = frozenset(LINE_DEFECTS) - {"bad_envelope", "unknown_topic"}


def _kafka_malformed(defect: str, env: dict) -> bytes | dict | None:
    """The record value a producer would send for ``defect`` (None: not plantable in Kafka)."""
    if defect not in _KAFKA_DEFECTS:
        return None
    if defect == "bad_json":
        text = orjson.dumps(env["value"])
        return text[: len(text) // 2]
    if defect == "bad_encoding":
        env["value"]["user_id"] = _BAD_BYTES_MARK
        return orjson.dumps(env["value"]).replace(_BAD_BYTES_MARK.encode(), b"user-\xc3\x28")
    return _malformed_line(defect, env)


def _truncate_gzip(raw: Path, rel: str) -> int:
    """Cut a gzip file short; return the line number the parser gives its corrupt tail."""
    path = raw / rel
    data = path.read_bytes()
    cut = data[: max(11, int(len(data) * 0.6))]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(cut)
    os.replace(tmp, path)
    lines, corrupt = read_lines(cut, gzipped=True)
    assert corrupt is not None, f"{rel} still decompresses after truncation"
    return len(lines) + 1


def _deliver_topic(
    raw: Path,
    day: dt.date,
    seed: int,
    topic: str,
    events: TopicEvents,
    defects: list[str],
    corrupt: bool,
    out: DayDelivery,
    sink: RecordSink | None = None,
) -> None:
    rng = np.random.default_rng([seed, day.toordinal(), 2, TOPICS.index(topic)])
    n, base = len(events), offset_base(day)
    day_end, next_day = _day_ms(day) + DAY_MS - 1, day + dt.timedelta(days=1)
    arrival = np.minimum(events.ts_ms + 1 + rng.exponential(300.0, n).astype(np.int64), day_end)
    late = rng.random(n) < LATE_SHARE
    late_arrival = _day_ms(next_day) + rng.integers(0, LATE_WINDOW_MS, n)
    on_time = np.flatnonzero(~late)
    on_time = on_time[np.argsort(arrival[on_time], kind="stable")]

    # The main file: on-time records in arrival order, malformed lines planted among them.
    order: list = on_time.tolist()
    templates = rng.integers(0, max(n, 1), len(defects))
    spots = rng.integers(0, len(order) + 1, len(defects))
    for spot, defect, tpl in sorted(
        zip(spots.tolist(), defects, templates.tolist(), strict=True), reverse=True
    ):
        order.insert(spot, (defect, tpl))
    main_name = f"{day_dir(topic, day)}/{dump_name(topic, MAIN, base, GZIPPED[topic])}"
    lines: list = []
    ok: list[dict] = []
    for pos, item in enumerate(order):
        if isinstance(item, int):
            env = envelope(
                topic, MAIN, base + pos, int(arrival[item]), events.keys[item], events.values[item]
            )
            ok.append(env)
            lines.append(env)
            continue
        defect, tpl = item
        value = {**events.values[tpl], "event_id": f"{events.values[tpl]['event_id']}-bad{pos}"}
        env = envelope(topic, MAIN, base + pos, int(arrival[tpl]), events.keys[tpl], value)
        if sink is None:
            lines.append(_malformed_line(defect, env))
            out.malformed.append({"file": main_name, "line": pos + 1, "reason": defect})
        elif (bad := _kafka_malformed(defect, env)) is not None:
            lines.append(bad)  # where it lands is the connector's: counted, not located
            out.malformed.append({"file": None, "line": None, "reason": defect})
    if lines:
        _write(raw, topic, day, MAIN, base, lines, out, sink)

    # A consumer replay: a contiguous run of records delivered again the next day, same envelopes
    # (a dump-level defect: through Kafka the connector writes each offset once).
    n_replay = int(round(REPLAY_SHARE * len(ok))) if sink is None else 0
    if n_replay:
        first = int(rng.integers(0, len(ok) - n_replay + 1))
        block = ok[first : first + n_replay]
        _write(raw, topic, next_day, MAIN, block[0]["offset"], block, out)
        out.replayed += n_replay

    # Producer retries: the same event again under a new offset, moments later.
    # The truncated file is a gzip: a retry file, no data lost (dumps only).
    corrupt = corrupt and GZIPPED[topic] and sink is None
    n_retry = max(int(round(RETRY_SHARE * len(ok))), 4 if corrupt else 0)
    n_retry = min(n_retry, len(ok))
    if n_retry:
        picks = np.sort(rng.choice(len(ok), n_retry, replace=False)).tolist()
        delays = rng.integers(5, 2000, n_retry).tolist()
        retries = [
            envelope(
                topic,
                RETRY,
                base + j,
                min(ok[p]["timestamp"] + d, day_end),
                ok[p]["key"],
                ok[p]["value"],
            )
            for j, (p, d) in enumerate(zip(picks, delays, strict=True))
        ]
        rel = _write(raw, topic, day, RETRY, base, retries, out, sink)
        out.retried += n_retry
        if corrupt and rel is not None:
            out.malformed.append(
                {"file": rel, "line": _truncate_gzip(raw, rel), "reason": "corrupt_file"}
            )

    # Late deliveries: the next day's folder, a partition of their own, arrival time on D + 1.
    late_idx = np.flatnonzero(late)
    late_idx = late_idx[np.argsort(late_arrival[late_idx], kind="stable")]
    if len(late_idx):
        late_lines = [
            envelope(topic, LATE, base + j, int(late_arrival[i]), events.keys[i], events.values[i])
            for j, i in enumerate(late_idx.tolist())
        ]
        _write(raw, topic, next_day, LATE, base, late_lines, out, sink)
        out.late += len(late_lines)


def malformed_manifest_path(raw: Path, day: dt.date) -> Path:
    """``raw/_malformed/date=D.json``: the malformed lines planted in day D's files."""
    return raw / "_malformed" / f"date={day.isoformat()}.json"


def deliver_day(
    raw: Path,
    day: dt.date,
    seed: int,
    events: Mapping[str, TopicEvents],
    sink: RecordSink | None = None,
) -> DayDelivery:
    """Write one day's events as dump files, with late, duplicate and malformed records.

    Files written: day D's main files (partition 0) and retries (partition 2); in day D + 1's
    folders, the late records (partition 1) and a consumer replay (partition 0, named for its first
    offset). The planted malformed lines go to :func:`malformed_manifest_path`.

    With a ``sink`` the records are produced to Kafka instead, each with its arrival time as the
    record time (late ones on D + 1): producer retries and malformed values too, but no consumer
    replay, no truncated file and no manifest (the connector decides where a line lands).
    """
    out = DayDelivery()
    counts = {t: len(events[t]) for t in TOPICS}
    defects = _plan_defects(day, counts)
    corrupt_day = day.toordinal() % CORRUPT_FILE_EVERY == 0
    for topic in TOPICS:
        _deliver_topic(raw, day, seed, topic, events[topic], defects[topic], corrupt_day, out, sink)
    if sink is not None:
        return out
    out.malformed.sort(key=lambda m: (m["file"], m["line"]))
    manifest = malformed_manifest_path(raw, day)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    tmp = manifest.with_name(f".{manifest.name}.tmp")
    tmp.write_bytes(orjson.dumps(out.malformed, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(tmp, manifest)
    return out
