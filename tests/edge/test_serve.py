"""`abp serve` as a real process over HTTP: the config with ETag/304, the event stream (push to
every subscriber, Last-Event-ID, heartbeats), /assign against the SDK, the sticky cookie,
readiness, two workers sharing one port and one /metrics."""

from __future__ import annotations

import copy
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ab_pipelines.assignment import Client
from tests.assignment import corpus, experiment, payload
from tests.edge import Subscriber, metric_value, request, start_edge, write_config

pytestmark = [pytest.mark.xdist_group("edge-serve")]

ATTRS = {"country": "US", "platform": "ios", "device_id": "d-7"}


def _corpus_payload(version: int) -> dict:
    p = copy.deepcopy(corpus()["payload"])
    p["version"] = version
    return p


def _anonymous_payload(version: int, checkout_status: str = "running") -> dict:
    return payload(
        {
            "anon_banner": experiment("anon_banner", unit="anonymous_id"),
            "checkout": experiment("checkout", status=checkout_status),
        },
        version,
    )


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    home = tmp_path_factory.mktemp("edge-home")
    write_config(home, _corpus_payload(1))
    with start_edge(home, ABP_EDGE_HEARTBEAT_SECONDS="0.2", ABP_EDGE_EXPOSURES="none") as (
        url,
        proc,
    ):
        yield home, url, proc


def test_config_etag_and_304(edge):
    home, url, _ = edge
    status, headers, body = request(url, "GET", "/config")
    assert status == 200
    raw = (home / "edge" / "config.json").read_bytes()
    assert body == raw  # the file exactly as verified
    sha = json.loads(json.loads(raw)["payload"])["content_sha"]
    version = headers["X-ABP-Config-Version"]
    etag = headers["ETag"]
    assert etag == f'"{version}-{sha[:16]}"'
    assert headers["Cache-Control"] == "public, max-age=5"
    assert headers["Content-Type"] == "application/json"
    for match in (etag, f"W/{etag}", "*", f'"0-nothing", {etag}'):
        status, h304, body = request(url, "GET", "/config", headers={"If-None-Match": match})
        assert (status, body, h304["ETag"]) == (304, b"", etag)
    status, _, body = request(url, "GET", "/config", headers={"If-None-Match": '"1-0000"'})
    assert status == 200 and body == raw


def test_stream_pushes_a_new_version_to_every_subscriber_within_a_second(edge):
    home, url, _ = edge
    held = int(request(url, "GET", "/config")[1]["X-ABP-Config-Version"])
    subs = [Subscriber(url), Subscriber(url)]
    try:
        for s in subs:
            assert s.response.status == 200
            assert s.response.headers["Content-Type"] == "text/event-stream"
            assert s.response.headers["Cache-Control"] == "no-cache"
            assert s.response.headers["X-Accel-Buffering"] == "no"
            s.wait_for(held)
            assert s.lines[0][1] == "retry: 1000"
        written = time.monotonic()
        write_config(home, _corpus_payload(held + 1))
        delays = [s.wait_for(held + 1, timeout=2) - written for s in subs]
        assert max(delays) < 1.0, delays
        for s in subs:
            at, version, envelope = s.events()[-1]
            assert version == held + 1
            assert Client.from_payload(envelope).config_version == held + 1  # verifies
    finally:
        for s in subs:
            s.close()


def test_last_event_id_and_heartbeats(edge):
    home, url, _ = edge
    held = int(request(url, "GET", "/config")[1]["X-ABP-Config-Version"])
    current = Subscriber(url, headers={"Last-Event-ID": str(held)})
    by_query = Subscriber(url, query=f"?last_event_id={held}")
    behind = Subscriber(url, headers={"Last-Event-ID": str(held - 1)})
    try:
        behind.wait_for(held, timeout=2)  # missed a version: gets the current one at once
        time.sleep(0.7)
        for s in (current, by_query):
            assert s.events() == []  # already has it: nothing until the next version
            beats = [at for at, line in s.lines if line.startswith(": heartbeat ")]
            assert len(beats) >= 2, s.lines
            gaps = [b - a for a, b in zip(beats, beats[1:], strict=False)]
            assert all(0.1 < g < 0.5 for g in gaps), gaps
        write_config(home, _corpus_payload(held + 1))
        for s in (current, by_query, behind):
            s.wait_for(held + 1, timeout=2)
    finally:
        for s in (current, by_query, behind):
            s.close()


def test_assign_gives_the_sdks_variants_for_many_users(edge):
    home, url, _ = edge
    reference = Client.from_file(home / "edge" / "config.json")
    for i in range(200):
        user = f"user-{i}"
        status, _, body = request(url, "POST", "/assign", {"user_id": user, "attributes": ATTRS})
        assert status == 200, body
        answer = json.loads(body)
        assert answer["user_id"] == user
        attrs = {**ATTRS, "anonymous_id": answer["anonymous_id"]}
        assert answer["config_version"] == reference.config_version
        assert set(answer["assignments"]) == set(reference.experiment_ids)
        for exp_id, got in answer["assignments"].items():
            assert got["variant"] == reference.assign(user, exp_id, attrs), (user, exp_id)
    reasons = {
        e: a["reason"]
        for e, a in json.loads(
            request(url, "POST", "/assign", {"user_id": "qa-user-1", "attributes": ATTRS})[2]
        )["assignments"].items()
    }
    assert reasons["checkout_cta"] == "override"
    assert reasons["recs_widget"] == "killed"
    assert reasons["free_shipping"] == "stopped"
    status, _, body = request(url, "POST", "/assign", {"user_id": "u", "experiments": ["nope"]})
    assert status == 200
    assert json.loads(body)["assignments"] == {
        "nope": {"variant": None, "reason": "not in payload"}
    }


def test_the_cookie_is_set_once_and_keeps_the_variants(edge):
    _, url, _ = edge
    status, headers, body = request(url, "POST", "/assign", {"attributes": ATTRS})
    assert status == 200
    first = json.loads(body)
    cookie = headers["Set-Cookie"]
    parts = [p.strip() for p in cookie.split(";")]
    assert parts[0] == f"abp_id={first['anonymous_id']}"
    assert len(first["anonymous_id"]) == 22
    assert {"HttpOnly", "SameSite=Lax", "Path=/", f"Max-Age={400 * 86400}"} <= set(parts)
    assert "Secure" not in parts  # ABP_ENV is dev
    assert first["user_id"] is None
    again_status, again_headers, again = request(
        url, "POST", "/assign", {"attributes": ATTRS}, headers={"Cookie": parts[0]}
    )
    assert again_status == 200 and "Set-Cookie" not in again_headers
    assert json.loads(again) == first  # same anonymous id, same variants
    # an id the client keeps itself (mobile): no cookie
    status, headers, body = request(url, "POST", "/assign", {"anonymous_id": "device-1"})
    assert json.loads(body)["anonymous_id"] == "device-1" and "Set-Cookie" not in headers
    # a cookie that is not one of ours is replaced
    status, headers, _ = request(url, "POST", "/assign", {}, headers={"Cookie": "abp_id=a b;"})
    assert status == 200 and "Set-Cookie" in headers


def test_an_anonymous_id_experiment_stays_after_login(tmp_path):
    write_config(tmp_path, _anonymous_payload(1))
    with start_edge(tmp_path, ABP_EDGE_EXPOSURES="none") as (url, _):
        changed_by_login = 0
        for i in range(60):
            _, headers, body = request(url, "POST", "/assign", {})
            before = json.loads(body)
            cookie = headers["Set-Cookie"].split(";")[0]
            _, _, body = request(
                url, "POST", "/assign", {"user_id": f"member-{i}"}, headers={"Cookie": cookie}
            )
            after = json.loads(body)
            assert after["anonymous_id"] == before["anonymous_id"]
            assert after["assignments"]["anon_banner"] == before["assignments"]["anon_banner"]
            changed_by_login += (
                after["assignments"]["checkout"] != before["assignments"]["checkout"]
            )
        assert changed_by_login > 0  # a user_id experiment may move at login (documented)


def test_with_a_sticky_db_a_bandit_s_units_keep_their_arm_when_the_weights_change(tmp_path):
    """ABP_EDGE_STICKY_DB: the edge's SDK keeps each unit's first arm, so a bandit's new weights
    reach only new units (issue 26, bandits); without it the hash moves units between arms."""
    arms = ("a", "b", "c")

    def bandit(weights, version):
        return payload({"promo": experiment("promo", variants=arms, weights=weights)}, version)

    write_config(tmp_path, bandit((0.34, 0.33, 0.33), 1))
    sticky = tmp_path / "edge" / "sticky.sqlite"
    with start_edge(tmp_path, ABP_EDGE_EXPOSURES="none", ABP_EDGE_STICKY_DB=str(sticky)) as (
        url,
        _,
    ):

        def arm(user: str) -> str:
            body = request(url, "POST", "/assign", {"user_id": user})[2]
            return json.loads(body)["assignments"]["promo"]["variant"]

        before = {f"old-{i}": arm(f"old-{i}") for i in range(150)}
        assert set(before.values()) == set(arms)
        write_config(tmp_path, bandit((0.01, 0.01, 0.98), 2))
        deadline = time.monotonic() + 2
        while json.loads(request(url, "GET", "/readyz")[2])["config_version"] != 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert {u: arm(u) for u in before} == before  # every earlier unit keeps its arm
        new = [arm(f"new-{i}") for i in range(150)]
        assert new.count("c") > 130  # new units see the new weights
        moved = Client.from_file(tmp_path / "edge" / "config.json")
        assert sum(moved.assign(u, "promo") != a for u, a in before.items()) > 50  # hash alone


def test_readyz_is_503_until_a_config_exists(tmp_path):
    with start_edge(tmp_path, ABP_EDGE_EXPOSURES="none") as (url, _):
        status, _, body = request(url, "GET", "/readyz")
        assert status == 503 and json.loads(body)["error"] == "no_config"
        status, _, body = request(url, "GET", "/config")
        assert status == 503 and json.loads(body)["error"] == "no_config"
        assert request(url, "GET", "/healthz")[0] == 200
        write_config(tmp_path, _anonymous_payload(4))
        deadline = time.monotonic() + 2
        while request(url, "GET", "/readyz")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert json.loads(request(url, "GET", "/readyz")[2])["config_version"] == 4


@pytest.mark.slow
def test_two_workers_share_the_port_push_a_kill_and_aggregate_metrics(tmp_path):
    write_config(tmp_path, _anonymous_payload(1))
    with start_edge(tmp_path, workers=2, ABP_ENV="staging", ABP_EDGE_EXPOSURES="none") as (
        url,
        proc,
    ):
        # the kernel hands each connection to one of the workers accepting on the socket:
        # concurrent connections reach both (one at a time may keep reaching the same one)
        pids: set[int] = set()
        deadline = time.monotonic() + 10
        with ThreadPoolExecutor(8) as pool:
            while len(pids) < 2 and time.monotonic() < deadline:
                answers = pool.map(lambda _: request(url, "GET", "/healthz")[2], range(40))
                pids |= {json.loads(a)["pid"] for a in answers}
        assert len(pids) == 2 and proc.pid not in pids
        _, headers, _ = request(url, "POST", "/assign", {})
        assert "Secure" in [p.strip() for p in headers["Set-Cookie"].split(";")]
        subs = [Subscriber(url) for _ in range(6)]  # spread over both workers
        try:
            for s in subs:
                s.wait_for(1)
            written = time.monotonic()
            write_config(tmp_path, _anonymous_payload(2, checkout_status="killed"))
            delays = [s.wait_for(2, timeout=2) - written for s in subs]
            assert max(delays) < 1.0, delays
            for _ in range(10):
                assert request(url, "GET", "/config")[1]["X-ABP-Config-Version"] == "2"
            text = request(url, "GET", "/metrics")[2].decode()
            # every worker's requests are in the one answer, whichever worker gave it
            assert metric_value(text, "abp_edge_requests_total", route="/healthz") >= 40
            assert metric_value(text, "abp_edge_requests_total", route="/config") >= 10
            assert metric_value(text, "abp_edge_sse_subscribers") == 6
            versions = [
                line for line in text.splitlines() if line.startswith("abp_edge_config_version{")
            ]
            assert len(versions) == 2 and all(v.endswith(" 2.0") for v in versions), versions
        finally:
            for s in subs:
                s.close()
