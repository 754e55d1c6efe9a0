"""Peer side of the landing benchmark, run in the duckdb venv: the dump files into parquet.

stdin: {"files": [jsonl paths], "out": folder, "reps": N}; stdout: {"seconds": [per rep],
"rows": records written in the last rep, "peak_rss_mb": this process's peak RSS}. One parquet file
per topic folder (``read_json``, newline-delimited, schema detected), as DuckDB users would do it.
"""

import json
import os
import resource
import shutil
import sys
import time

import duckdb

data = json.load(sys.stdin)
by_topic = {}
for f in data["files"]:
    by_topic.setdefault(os.path.basename(os.path.dirname(os.path.dirname(f))), []).append(f)
seconds, rows = [], 0
for _ in range(data["reps"]):
    shutil.rmtree(data["out"], ignore_errors=True)
    os.makedirs(data["out"])
    t0 = time.perf_counter()
    con = duckdb.connect()
    rows = 0
    for topic, files in sorted(by_topic.items()):
        listed = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
        target = os.path.join(data["out"], f"{topic}.parquet")
        con.execute(
            f"COPY (SELECT * FROM read_json({listed}, format = 'newline_delimited')) "
            f"TO '{target}' (FORMAT parquet)"
        )
        rows += con.execute(f"SELECT count(*) FROM '{target}'").fetchone()[0]
    con.close()
    seconds.append(time.perf_counter() - t0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
json.dump({"seconds": seconds, "rows": rows, "peak_rss_mb": peak}, sys.stdout)
