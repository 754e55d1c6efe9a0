"""The benchmark report: a run of some benchmarks (``--only``) keeps the others' sections."""

from __future__ import annotations

from benchmarks.report import Benchmark, Row, render


def _bench(title: str, value: str) -> Benchmark:
    return Benchmark(title, [Row("a measure", value, "1.0", "x", "≤ 2", True)], notes=["a note"])


def test_a_partial_run_replaces_its_sections_and_keeps_the_others():
    full = render([("a", _bench("A: one", "1.5")), ("b", _bench("B: two", "2.5"))], {}, 9.0, [])
    assert full.count("_measured ") == 2 and "| a measure | 1.5 |" in full
    again = render([("b", _bench("B: two", "7.5"))], {}, 1.0, [], previous=full)
    assert again.split("<!-- benchmark: b -->")[0] == full.split("<!-- benchmark: b -->")[0]
    assert "| a measure | 1.5 |" in again and "| a measure | 7.5 |" in again
    assert "| a measure | 2.5 |" not in again and again.count("## B: two") == 1
    added = render([("c", _bench("C: three", "3.5"))], {}, 1.0, [], previous=again)
    assert added.startswith(again.rstrip("\n")) and added.count("## ") == 3


def test_a_report_written_before_the_markers_is_matched_by_title():
    old = "# Benchmarks\n\n- date: then\n\n## A: one\n\n| old |\n\n## B: two\n\n| old b |\n"
    got = render([("b", _bench("B: two", "7.5"))], {}, 1.0, [], previous=old)
    assert got.startswith("# Benchmarks\n\n- date: then\n\n## A: one\n\n| old |\n\n")
    assert "| old b |" not in got and "<!-- benchmark: b -->\n## B: two" in got
