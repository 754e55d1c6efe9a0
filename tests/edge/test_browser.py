"""The sticky cookie in a real browser: a page served by another origin calls the edge's
``/assign`` with credentials (CORS), in headless Chromium. Two browser sessions that keep the
cookie see the same anonymous id and the same variants; a cleared cookie gives a new id."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from tests.assignment import experiment, payload
from tests.edge import start_edge, write_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAGE = """<!doctype html>
<html><head><title>shop</title></head><body><pre id="out">waiting</pre>
<script>
fetch("{edge}/assign", {{
  method: "POST",
  credentials: "include",
  headers: {{"Content-Type": "application/json"}},
  body: JSON.stringify({{attributes: {{country: "US"}}}}),
}})
  .then(r => r.ok ? r.json() : r.text().then(t => ({{error: r.status + " " + t}})))
  .then(j => {{ document.getElementById("out").textContent = JSON.stringify(j); }})
  .catch(e => {{ document.getElementById("out").textContent = JSON.stringify({{error: String(e)}}); }});
</script></body></html>
"""


class _Page(http.server.BaseHTTPRequestHandler):
    html = b""

    def do_GET(self):  # noqa: N802 - the http.server name
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.html)))
        self.end_headers()
        self.wfile.write(self.html)

    def log_message(self, *args):
        pass


@pytest.fixture
def page_server():
    """The shop's page on a loopback port of its own (another origin than the edge's)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _assign_in(context, url: str) -> dict:
    page = context.new_page()
    page.goto(url)
    page.wait_for_function(
        "document.getElementById('out').textContent !== 'waiting'", timeout=20_000
    )
    out = json.loads(page.inner_text("#out"))
    page.close()
    assert "error" not in out, out
    return out


def test_the_cookie_keeps_the_variants_across_browser_sessions(tmp_path, page_server, browser):
    experiments = {
        f"exp_{i}": experiment(f"exp_{i}", unit="anonymous_id" if i % 2 else "user_id")
        for i in range(6)
    }
    write_config(tmp_path, payload(experiments, 1))
    server, origin = page_server
    with start_edge(tmp_path, ABP_EDGE_CORS_ORIGINS=origin, ABP_EDGE_EXPOSURES="none") as (
        edge_url,
        _,
    ):
        _Page.html = PAGE.format(edge=edge_url).encode()
        first = browser.new_context()
        one = _assign_in(first, origin)
        cookies = [c for c in first.cookies() if c["name"] == "abp_id"]
        assert len(cookies) == 1 and cookies[0]["value"] == one["anonymous_id"]
        assert cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Lax"
        state = first.storage_state()
        first.close()

        # a second session with the cookie kept: the same id and the same variants
        second = browser.new_context(storage_state=state)
        two = _assign_in(second, origin)
        second.close()
        assert two["anonymous_id"] == one["anonymous_id"]
        assert two["assignments"] == one["assignments"]
        assert {a["reason"] for a in one["assignments"].values()} == {"hash"}
        assert set(one["assignments"]) == set(experiments)

        # cookie cleared: a new anonymous id (and its own variants)
        third = browser.new_context()
        three = _assign_in(third, origin)
        third.close()
        assert three["anonymous_id"] != one["anonymous_id"]
