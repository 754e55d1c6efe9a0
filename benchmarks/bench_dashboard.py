"""The analysts' dashboard: a warm render of every page (target: under 2 s each).

Streamlit's AppTest runs the app script in this process on demo-like tables (the dashboard tests'
``tests/streamlit_app/demo_data.py``: every experiment of the registry over 4 days, no Spark);
each page is rendered once to fill the cache, then timed on a rerun (what an analyst waits for
after clicking). The floor in the peer column is the same rerun of a page that only draws the
sidebar (the framework's own cost of a rerun here), so the ratio shows what the pages add. A
speed target belongs here, not in a timed unit test (the machine is shared and noisy).

``python -m benchmarks --only dashboard``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.report import Benchmark, Row

TARGET_SECONDS = 2.0


def _renders(reps: int) -> tuple[dict[str, list[float]], list[float]]:
    from streamlit.testing.v1 import AppTest

    from streamlit_app.launch import APP
    from tests.streamlit_app.demo_data import build_demo

    with tempfile.TemporaryDirectory() as tmp:
        demo = build_demo(Path(tmp))
        saved = {k: os.environ.get(k) for k in ("ABP_HOME", "ABP_REGISTRY")}
        os.environ["ABP_HOME"] = str(demo.home.home)
        os.environ["ABP_REGISTRY"] = str(demo.registry_root)
        try:
            at = AppTest.from_file(str(APP), default_timeout=120)
            at.run()
            floor = []
            for _ in range(reps):
                t0 = time.perf_counter()
                at.run()  # the landing page: the sidebar and a redirect, no tables
                floor.append(time.perf_counter() - t0)
            timings: dict[str, list[float]] = {}
            pages = sorted((APP.parent / "views").glob("*.py"))  # every page script
            for name, path in ((p.stem, f"views/{p.name}") for p in pages):
                at.switch_page(path).run()  # fills the cache
                assert not at.exception, (name, at.exception)
                for _ in range(reps):
                    t0 = time.perf_counter()
                    at.run()
                    timings.setdefault(name, []).append(time.perf_counter() - t0)
                    assert not at.exception, (name, at.exception)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return timings, floor


def run(reps: int = 5) -> Benchmark:
    timings, floor = _renders(max(1, reps))
    base = statistics.median(floor)
    rows = []
    for name, runs in timings.items():
        median = statistics.median(runs)
        rows.append(
            Row(
                f"warm render of the {name} page (s)",
                f"{median:.2f}",
                f"{base:.2f}",
                f"{median / base:.1f}x",
                f"< {TARGET_SECONDS:g} s",
                median < TARGET_SECONDS,
            )
        )
    notes = [
        "AppTest in this process on the dashboard tests' demo tables (every experiment of the "
        "registry, 4 days); the peer column is the floor: a rerun of the app's landing page.",
        "Runs (s): "
        + "; ".join(f"{n} {', '.join(f'{x:.2f}' for x in r)}" for n, r in timings.items())
        + f"; floor {', '.join(f'{x:.2f}' for x in floor)}.",
    ]
    return Benchmark(title="Dashboard: warm page renders", rows=rows, notes=notes)


if __name__ == "__main__":  # pragma: no cover
    for row in run(3).rows:
        print(row)
