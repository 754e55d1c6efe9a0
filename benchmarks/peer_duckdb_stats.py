"""Peer side of the analysis benchmark, run in the duckdb venv: the same sufficient statistics in
DuckDB SQL, written the way one would write them for DuckDB (one join of the analysed units to
their events per experiment, every metric a conditional aggregate of it), from the same parquet
files of the bronze Delta tables (hive partitions give ``arrival_date``).

stdin: {"exposures": [parquet files], "events": [parquet files], "experiments": [...], "reps": N}
(see ``benchmarks/bench_analysis.py``: ``peer_spec``); stdout: {"seconds": [per rep], "rows":
[{experiment_id, metric, variant, n, <sums>}], "peak_rss_mb": this process's peak RSS}.
"""

import json
import resource
import sys
import time

import duckdb

PAIRS = {
    "num_sum": ("num", None),
    "num_sum_sq": ("num", "num"),
    "den_sum": ("den", None),
    "den_sum_sq": ("den", "den"),
    "num_den_sum": ("num", "den"),
    "pre_num_sum": ("pre_num", None),
    "pre_num_sum_sq": ("pre_num", "pre_num"),
    "pre_den_sum": ("pre_den", None),
    "pre_den_sum_sq": ("pre_den", "pre_den"),
    "pre_num_pre_den_sum": ("pre_num", "pre_den"),
    "num_pre_num_sum": ("num", "pre_num"),
    "num_pre_den_sum": ("num", "pre_den"),
    "den_pre_num_sum": ("den", "pre_num"),
    "den_pre_den_sum": ("den", "pre_den"),
}


def lit(v):
    return "'" + str(v).replace("'", "''") + "'"


def matches(side):
    cond = [f"e.event = {lit(side['event'])}"]
    for k, v in side["where"].items():
        cond.append(f"json_extract_string(e.properties, {lit('$.' + k)}) = {lit(v)}")
    return "(" + " AND ".join(cond) + ")"


def aggregate(agg, cond):
    fn = "MAX" if agg == "any" else "SUM"
    what = "e.value" if agg == "sum" else "1"
    return f"CAST(COALESCE({fn}(CASE WHEN {cond} THEN {what} END), 0) AS DOUBLE)"


def value_end(m):
    if m["window_days"]:
        end = int(m.get("window_start_days") or 0) + int(m["window_days"])
        return f"LEAST(u.day_end, u.first_ts + INTERVAL {end} DAY)"
    return "u.day_end"


def value_start(m):
    start = int(m.get("window_start_days") or 0)
    return f"u.first_ts + INTERVAL {start} DAY" if start else "u.first_ts"


def mature(m):
    """The condition on a per_unit row for the metric to count the unit (its window has ended),
    or None when every unit counts (no window, or include_maturing)."""
    if not m.get("maturity_days"):
        return None
    return f"first_ts + INTERVAL {int(m['maturity_days'])} DAY <= day_end"


def metric_columns(m):
    """(num, den, pre_num, pre_den) expressions of one metric over the joined rows."""
    post = f"e.ts >= {value_start(m)} AND e.ts < {value_end(m)}"
    pre = "e.ts < u.first_ts"
    if m["kind"] == "ratio":
        n, d = m["num"], m["den"]
        return (
            aggregate(n["agg"], f"{matches(n)} AND {post}"),
            aggregate(d["agg"], f"{matches(d)} AND {post}"),
            aggregate(n["agg"], f"{matches(n)} AND {pre}"),
            aggregate(d["agg"], f"{matches(d)} AND {pre}"),
        )
    return (
        aggregate(m["agg"], f"{matches(m)} AND {post}"),
        "1.0",
        aggregate(m["agg"], f"{matches(m)} AND {pre}"),
        "1.0",
    )


def experiment_sql(x):
    events = sorted(
        {
            s["event"]
            for m in x["metrics"]
            for s in ([m["num"], m["den"]] if m["kind"] == "ratio" else [m])
        }
    )
    cols = []
    for i, m in enumerate(x["metrics"]):
        for name, expr in zip(("num", "den", "pre_num", "pre_den"), metric_columns(m), strict=True):
            cols.append(f"{expr} AS m{i}_{name}")
    per_unit = f"""
    CREATE OR REPLACE TEMP TABLE per_unit AS
    WITH x AS (
        SELECT user_id AS unit, variant, ts
        FROM exposures
        WHERE experiment_id = {lit(x["id"])}
          AND arrival_date <= DATE {lit(x["last_arrival"])}
          AND ts < TIMESTAMPTZ {lit(x["day_end_ts"])}
          AND ts >= TIMESTAMPTZ {lit(x["start_ts"])} AND ts < TIMESTAMPTZ {lit(x["cutoff_ts"])}
    ),
    units AS (
        SELECT unit, MIN(variant) AS variant, MIN(ts) AS first_ts,
               TIMESTAMPTZ {lit(x["day_end_ts"])} AS day_end
        FROM x GROUP BY unit HAVING COUNT(DISTINCT variant) = 1
    ),
    ev AS (
        SELECT user_id, event, value, ts, properties
        FROM events
        WHERE arrival_date <= DATE {lit(x["last_arrival"])}
          AND ts < TIMESTAMPTZ {lit(x["day_end_ts"])}
          AND event IN ({", ".join(lit(e) for e in events)})
    )
    SELECT u.unit, u.variant, MIN(u.first_ts) AS first_ts, MIN(u.day_end) AS day_end,
           {", ".join(cols)}
    FROM units AS u
    LEFT JOIN ev AS e
      ON e.user_id = u.unit
     AND e.ts >= u.first_ts - INTERVAL {int(x["lookback_days"])} DAY
     AND e.ts < u.day_end
    GROUP BY u.unit, u.variant
    """
    selects = []
    for i, m in enumerate(x["metrics"]):
        num, pre_num = f"m{i}_num", f"m{i}_pre_num"
        where = f" WHERE {mature(m)}" if mature(m) else ""
        if m.get("winsorize") is not None and m["kind"] != "proportion":
            p = float(m["winsorize"])
            num = f"LEAST(m{i}_num, (SELECT quantile_cont(m{i}_num, {p}) FROM per_unit{where}))"
            pre_num = (
                f"LEAST(m{i}_pre_num, "
                f"(SELECT quantile_cont(m{i}_pre_num, {p}) FROM per_unit{where}))"
            )
        values = {"num": num, "den": f"m{i}_den", "pre_num": pre_num, "pre_den": f"m{i}_pre_den"}
        sums = ", ".join(
            f"SUM({values[a]}{' * ' + values[b] if b else ''}) AS {f}"
            for f, (a, b) in PAIRS.items()
        )
        selects.append(
            f"SELECT {lit(m['id'])} AS metric, variant, COUNT(*) AS n, {sums} "
            f"FROM per_unit{where} GROUP BY variant"
        )
    return per_unit, " UNION ALL ".join(selects)


def run(data):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    files = lambda k: "[" + ", ".join(lit(f) for f in data[k]) + "]"  # noqa: E731
    con.execute(
        f"CREATE VIEW exposures AS SELECT * FROM read_parquet({files('exposures')}, hive_partitioning = true)"
    )
    con.execute(
        f"CREATE VIEW events AS SELECT * FROM read_parquet({files('events')}, hive_partitioning = true)"
    )
    rows = []
    for x in data["experiments"]:
        per_unit, sums = experiment_sql(x)
        con.execute(per_unit)
        cur = con.execute(sums)
        names = [d[0] for d in cur.description]
        for r in cur.fetchall():
            row = dict(zip(names, r, strict=True))
            row["experiment_id"] = x["id"]
            row["n"] = int(row["n"])
            rows.append(row)
    con.close()
    return rows


data = json.load(sys.stdin)
seconds, rows = [], None
for _ in range(data["reps"]):
    t0 = time.perf_counter()
    rows = run(data)
    seconds.append(time.perf_counter() - t0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
json.dump(
    {"seconds": seconds, "rows": rows, "peak_rss_mb": peak, "version": duckdb.__version__},
    sys.stdout,
)
