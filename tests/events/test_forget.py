"""Issue 9, part 7: `abp forget USER_ID` leaves nothing of the user but the audit entry."""

from __future__ import annotations

import gzip

import orjson
import pyarrow.parquet as pq
import pytest

from ab_pipelines.events import envelope, write_dump
from ab_pipelines.events.forget import forget_user, line_holds_user, rows_mentioning
from ab_pipelines.events.landing import land_day, ledger_summary
from ab_pipelines.events.parse import read_lines
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import BRONZE_EXPOSURES, OPS_AUDIT_LOG
from ab_pipelines.settings import paths
from tests.events.test_landing import D1, D2, D3, KNOWN, exposure, snapshot, write_three_days

pytestmark = pytest.mark.spark

WHO = "user-3"


def _everything_on_disk_mentioning(home, needle: str) -> list[str]:
    """Every raw line, Delta log line and parquet value (live or not) that holds ``needle``."""
    hits = []
    for f in home.raw.rglob("*"):
        if f.is_file():
            lines, corrupt = read_lines(f.read_bytes(), f.name.endswith(".gz"))
            hits += [f"{f}:{i}" for i, ln in enumerate(lines, 1) if needle.encode() in ln]
            if corrupt is not None and needle.encode() in corrupt.tail:
                hits.append(f"{f}:tail")
    for f in home.lake.rglob("*"):
        if f.suffix == ".json" and needle.encode() in f.read_bytes():
            hits.append(str(f))
        if f.suffix == ".parquet":
            table = pq.read_table(f)
            for name in table.column_names:
                if any(needle in str(v) for v in table.column(name).to_pylist()):
                    hits.append(f"{f}:{name}")
    return hits


def test_line_holds_user_matches_ids_not_substrings():
    line = envelope("exposures", 0, 1, 1, "k", exposure(3, D1))
    assert line_holds_user(orjson.dumps(line), "user-3")
    assert not line_holds_user(orjson.dumps(line), "user-")  # a prefix is someone else
    assert line_holds_user(b'{broken "user-3" json', "user-3")
    assert not line_holds_user(b'{broken "user-33" json', "user-3")
    kcat = {**line, "value": orjson.dumps(exposure(3, D1)).decode()}
    assert line_holds_user(orjson.dumps(kcat), "user-3")


def test_forget_removes_the_user_everywhere_but_the_audit_entry(spark, tmp_path):
    home = paths(tmp_path / "abp")
    write_three_days(home.raw)
    # the user also in a quarantined line and in a truncated gzip
    write_dump(home.raw, "exposures", D3, 1, 0, [b'{"user_id": "user-3", oops'])
    lines = [
        orjson.dumps(envelope("exposures", 1, 10 + i, 3, f"user-{i}", exposure(i, D3, f"z{i}")))
        for i in range(2, 5)
    ]
    path = write_dump(home.raw, "exposures", D3, 1, 10, [], gzipped=True)
    path.write_bytes(gzip.compress(b"".join(ln + b"\n" for ln in lines))[:-12])
    lake = Lake(home)
    for day in (D1, D2, D3):
        land_day(spark, lake, home.raw, day, KNOWN)
    assert rows_mentioning(lake, WHO)  # the user is there before
    others_before = [
        r for r in lake.read_arrow(BRONZE_EXPOSURES).to_pylist() if r["user_id"] != WHO
    ]
    assert _everything_on_disk_mentioning(home, WHO)

    report = forget_user(spark, lake, home.raw, WHO, "dpo@example.com", KNOWN)
    assert report.lines >= 4 and report.days == [D1, D2, D3]

    left = _everything_on_disk_mentioning(home, WHO)
    assert left == [h for h in left if "/ops/audit_log/" in h]
    assert rows_mentioning(lake, WHO) == {OPS_AUDIT_LOG.qualified: 1}
    (audit,) = lake.read_arrow(OPS_AUDIT_LOG).to_pylist()
    assert audit["action"] == "forget" and audit["actor"] == "dpo@example.com"
    assert WHO in audit["detail"]
    # everyone else is untouched, and every day still balances
    others_after = lake.read_arrow(BRONZE_EXPOSURES).to_pylist()
    key = lambda r: (r["event_id"], r["arrival_date"])  # noqa: E731
    assert sorted(map(key, others_after)) == sorted(map(key, others_before))
    for row in ledger_summary(lake, [D1, D2, D3]):
        assert row["read"] == row["landed"] + row["quarantined"] + row["duplicates"]
    # a second forget finds nothing and a re-landing changes nothing
    before = snapshot(lake)
    again = forget_user(spark, lake, home.raw, WHO, "dpo@example.com", KNOWN)
    assert again.lines == 0 and again.days == []
    land_day(spark, lake, home.raw, D2, KNOWN)
    assert snapshot(lake) == before


def test_abp_forget_command(spark, home):
    from click.testing import CliRunner

    from ab_pipelines.cli import main

    write_three_days(home.raw)
    runner = CliRunner()
    out = runner.invoke(main, ["forget", " ", "--by", "dpo@example.com", "--yes"])
    assert out.exit_code == 2 and "the user id is empty" in out.output
    out = runner.invoke(main, ["forget", WHO, "--by", "dpo@example.com"], input="n\n")
    assert out.exit_code != 0 and "Aborted" in out.output
    assert not Lake(home).exists(OPS_AUDIT_LOG)  # nothing done without a yes
    out = runner.invoke(main, ["forget", WHO, "--by", "dpo@example.com", "--yes"])
    assert out.exit_code == 0, out.output
    assert "forgot 'user-3': " in out.output and "recorded in ops.audit_log" in out.output
    assert rows_mentioning(Lake(home), WHO) == {OPS_AUDIT_LOG.qualified: 1}
