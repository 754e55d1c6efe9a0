"""The bad-input corpus of the edge's HTTP faces: each case gets its JSON 4xx naming the field
(or, for a bad config file on disk, a refusal with the old version still served), and the
process is still alive and serving after each one."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.parse

import pytest

from ab_pipelines.assignment.signing import sign_payload
from tests.assignment import experiment, payload
from tests.edge import metric_value, request, start_edge, write_config

pytestmark = [pytest.mark.xdist_group("edge-bad-input")]

KEY = {"X-ABP-Client-Key": "key-web-123"}
LIMIT = 2048  # ABP_EDGE_MAX_BODY_BYTES of this server
VERSION = 5


def _payload(version: int) -> dict:
    return payload({"checkout": experiment("checkout")}, version)


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    home = tmp_path_factory.mktemp("edge-bad")
    write_config(home, _payload(VERSION))
    with start_edge(
        home,
        ABP_EDGE_CLIENT_KEYS="web=key-web-123,flood=key-flood-456",
        ABP_EDGE_RATE_LIMIT="50",
        ABP_EDGE_MAX_BODY_BYTES=str(LIMIT),
        ABP_EDGE_EXPOSURES="none",
    ) as (url, proc):
        yield home, url, proc


def _chunked(url: str, path: str, total: int) -> tuple[int, dict]:
    """POST ``total`` bytes as a chunked body on a raw socket (the server may answer before
    the body ends); the status and JSON answer."""
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: application/json\r\nX-ABP-Client-Key: key-web-123\r\n\r\n"
        )
        s.sendall(head.encode())
        chunk = b"[" + b" " * 1022 + b"\n"
        try:
            for _ in range(total // len(chunk)):
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed before the body ended
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            got = s.recv(65536)
            if not got:
                break
            data += got
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body[body.index(b"{") :])


def _tampered(home) -> None:
    path = home / "edge" / "config.json"
    env = json.loads(path.read_text())
    env["payload"] = env["payload"].replace('"treatment"', '"treatmenT"')  # signature kept
    tmp = path.with_name(".tampered")
    tmp.write_text(json.dumps(env))
    os.replace(tmp, path)


def _version_back(home) -> None:
    path = home / "edge" / "config.json"
    tmp = path.with_name(".older")
    tmp.write_text(json.dumps(sign_payload(_payload(VERSION - 1))))  # validly signed, but older
    os.replace(tmp, path)


def _not_json(home) -> None:
    path = home / "edge" / "config.json"
    tmp = path.with_name(".garbage")
    tmp.write_text('{"payload": "')
    os.replace(tmp, path)


A = "/assign"
E = "/events"
# (case id, method, path, body, headers, status, error code, words the detail must hold)
HTTP_CASES = [
    ("malformed_json", "POST", A, b'{"user_id": ', KEY, 400, "bad_json", "not JSON"),
    ("empty_body", "POST", A, b"", KEY, 400, "bad_json", "empty"),
    ("body_is_an_array", "POST", A, [1, 2], KEY, 400, "bad_field", "the body"),
    ("user_id_boolean", "POST", A, {"user_id": True}, KEY, 400, "bad_field", "user_id"),
    ("user_id_list", "POST", A, {"user_id": ["u"]}, KEY, 400, "bad_field", "user_id"),
    ("user_id_object", "POST", A, {"user_id": {"a": 1}}, KEY, 400, "bad_field", "user_id"),
    ("user_id_float", "POST", A, {"user_id": 4.5}, KEY, 400, "bad_field", "user_id"),
    ("user_id_empty", "POST", A, {"user_id": ""}, KEY, 400, "bad_field", "user_id"),
    ("anonymous_id_list", "POST", A, {"anonymous_id": []}, KEY, 400, "bad_field", "anonymous_id"),
    ("attributes_string", "POST", A, {"attributes": "US"}, KEY, 400, "bad_field", "attributes"),
    (
        "attributes_nested",
        "POST",
        A,
        {"attributes": {"plan": {"tier": 1}}},
        KEY,
        400,
        "bad_field",
        "attributes.plan",
    ),
    ("experiments_string", "POST", A, {"experiments": "x"}, KEY, 400, "bad_field", "experiments"),
    (
        "experiments_number",
        "POST",
        A,
        {"experiments": ["ok", 3]},
        KEY,
        400,
        "bad_field",
        "experiments[1]",
    ),
    ("no_client_key", "POST", A, {}, {}, 401, "missing_client_key", "X-ABP-Client-Key"),
    (
        "wrong_client_key",
        "POST",
        A,
        {},
        {"X-ABP-Client-Key": "guess"},
        403,
        "bad_client_key",
        "X-ABP-Client-Key",
    ),
    ("events_no_key", "POST", E, {"event": "buy"}, {}, 401, "missing_client_key", "required"),
    ("event_missing_name", "POST", E, {"value": 3}, KEY, 400, "bad_field", "event"),
    (
        "event_value_string",
        "POST",
        E,
        {"events": [{"event": "a"}, {"event": "b", "value": "9"}]},
        KEY,
        400,
        "bad_field",
        "events[1].value",
    ),
    (
        "event_value_boolean",
        "POST",
        E,
        {"event": "a", "value": True},
        KEY,
        400,
        "bad_field",
        "value",
    ),
    (
        "event_ts_naive",
        "POST",
        E,
        {"event": "a", "ts": "2026-11-05T10:00:00"},
        KEY,
        400,
        "bad_field",
        "ts",
    ),
    ("event_ts_garbage", "POST", E, {"event": "a", "ts": "yesterday"}, KEY, 400, "bad_field", "ts"),
    (
        "event_properties_list",
        "POST",
        E,
        {"events": [{"event": "a", "properties": [1]}]},
        KEY,
        400,
        "bad_field",
        "events[0].properties",
    ),
    ("events_not_a_list", "POST", E, {"events": {"event": "a"}}, KEY, 400, "bad_field", "events"),
    (
        "too_many_events",
        "POST",
        E,
        {"events": [{"event": "a"}] * 501},
        KEY,
        413,  # 501 events are over this server's 2 KiB body limit before they are counted
        "too_large",
        "ABP_EDGE_MAX_BODY_BYTES",
    ),
    (
        "huge_body_content_length",
        "POST",
        A,
        b"{" + b" " * (LIMIT + 10) + b"}",
        KEY,
        413,
        "too_large",
        "ABP_EDGE_MAX_BODY_BYTES",
    ),
    ("get_on_assign", "GET", A, None, KEY, 405, "method_not_allowed", "POST"),
    ("delete_config", "DELETE", "/config", None, {}, 405, "method_not_allowed", "GET"),
    ("put_events", "PUT", E, {"event": "a"}, KEY, 405, "method_not_allowed", "POST"),
    ("unknown_path", "GET", "/admin", None, {}, 404, "not_found", "/admin"),
]
# (case id, what the file on disk becomes)
FILE_CASES = [
    ("tampered_config", _tampered),
    ("version_back", _version_back),
    ("not_json", _not_json),
]


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c[0]) for c in HTTP_CASES]
    + [pytest.param(("chunked_huge_body",), id="chunked_huge_body")]
    + [pytest.param(("rate_limit",), id="rate_limit")]
    + [pytest.param(("ints_taken_as_strings",), id="ints_taken_as_strings")]
    + [pytest.param(("unknown_experiments",), id="unknown_experiments")]
    + [pytest.param(c, id=c[0]) for c in FILE_CASES],
)
def test_bad_input_gets_its_answer_and_the_edge_keeps_serving(edge, case):
    home, url, proc = edge
    name = case[0]
    if name == "chunked_huge_body":
        status, answer = _chunked(url, A, 50 * LIMIT)
        assert (status, answer["error"]) == (413, "too_large")
    elif name == "rate_limit":
        flood = {"X-ABP-Client-Key": "key-flood-456"}
        statuses, retry = [], None
        for _ in range(300):  # a burst of 100 at 50/s
            status, headers, body = request(url, "POST", A, {}, flood)
            statuses.append(status)
            if status == 429:
                retry = headers["Retry-After"]
                assert json.loads(body)["error"] == "rate_limited"
                assert "flood" in json.loads(body)["detail"]
        assert statuses.count(200) >= 100 and statuses.count(429) >= 50, statuses
        assert retry is not None and int(retry) >= 1
        # another key has a bucket of its own
        assert request(url, "POST", A, {}, KEY)[0] == 200
    elif name == "ints_taken_as_strings":
        status, _, body = request(url, "POST", A, {"user_id": 42}, KEY)
        assert status == 200 and json.loads(body)["user_id"] == "42"
        status, _, body = request(url, "POST", E, {"event": "buy", "user_id": 42}, KEY)
        assert (status, json.loads(body)) == (202, {"accepted": 1})
    elif name == "unknown_experiments":
        status, _, body = request(url, "POST", A, {"experiments": ["nope", "checkout"]}, KEY)
        got = json.loads(body)["assignments"]
        assert status == 200 and got["nope"] == {"variant": None, "reason": "not in payload"}
        assert got["checkout"]["reason"] == "hash"
    elif name in dict(FILE_CASES):
        before = request(url, "GET", "/config")
        refused = metric_value(
            request(url, "GET", "/metrics")[2].decode(), "abp_edge_config_refused_total"
        )
        try:
            dict(FILE_CASES)[name](home)
            deadline = time.monotonic() + 2
            while True:
                text = request(url, "GET", "/metrics")[2].decode()
                if metric_value(text, "abp_edge_config_refused_total") == refused + 1:
                    break
                assert time.monotonic() < deadline, "the bad file was not refused"
                time.sleep(0.02)
            after = request(url, "GET", "/config")
            assert after[0] == 200
            assert after[1]["ETag"] == before[1]["ETag"] and after[2] == before[2]
            assert metric_value(text, "abp_edge_config_version") == VERSION
        finally:
            write_config(home, _payload(VERSION))  # the good file again: same version, no change
    else:
        _, method, path, body, headers, status, code, words = case
        got_status, _, got = request(url, method, path, body, headers)
        answer = json.loads(got)
        assert (got_status, answer["error"]) == (status, code), answer
        assert set(answer) == {"error", "detail"}
        assert words in answer["detail"], answer
    # nothing crashed: the same process still answers, with the same config
    assert proc.poll() is None
    assert request(url, "GET", "/healthz")[0] == 200
    status, _, body = request(url, "POST", A, {"user_id": "still-here"}, KEY)
    assert status == 200 and json.loads(body)["config_version"] == VERSION
