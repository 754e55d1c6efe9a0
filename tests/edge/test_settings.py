"""EdgeSettings from the environment, the body rules that need no server, and `abp serve`
refusing to start without client keys in prod."""

from __future__ import annotations

import subprocess

import pytest

from ab_pipelines.edge import EdgeSettings, EdgeSettingsError
from ab_pipelines.edge.bodies import events_request
from ab_pipelines.edge.errors import Refusal
from tests.edge import ABP


def test_defaults_and_values():
    s = EdgeSettings.from_env({})
    assert (s.host, s.port, s.workers, s.watch_seconds, s.heartbeat_seconds) == (
        "127.0.0.1",
        8088,
        1,
        0.05,
        15.0,
    )
    assert (s.cookie_name, s.cookie_days, s.client_keys, s.secure_cookie) == (
        "abp_id",
        400,
        {},
        False,
    )
    s = EdgeSettings.from_env(
        {
            "ABP_ENV": "prod",
            "ABP_EDGE_CLIENT_KEYS": "web=k1, ios=k2",
            "ABP_EDGE_CORS_ORIGINS": "https://shop.example.com, http://localhost:3000/",
            "ABP_EDGE_EXPOSURES": "none",
        }
    )
    assert s.client_keys == {"k1": "web", "k2": "ios"} and s.secure_cookie
    assert s.cors_origins == ("https://shop.example.com", "http://localhost:3000")
    assert s.exposures == "none"


@pytest.mark.parametrize(
    "env, named",
    [
        ({"ABP_EDGE_PORT": "http"}, "ABP_EDGE_PORT"),
        ({"ABP_EDGE_PORT": "70000"}, "ABP_EDGE_PORT"),
        ({"ABP_EDGE_WORKERS": "0"}, "ABP_EDGE_WORKERS"),
        ({"ABP_EDGE_WATCH_SECONDS": "nan"}, "ABP_EDGE_WATCH_SECONDS"),
        ({"ABP_EDGE_COOKIE_DAYS": "401"}, "ABP_EDGE_COOKIE_DAYS"),
        ({"ABP_EDGE_COOKIE_NAME": "a b"}, "ABP_EDGE_COOKIE_NAME"),
        ({"ABP_EDGE_CLIENT_KEYS": "web"}, "ABP_EDGE_CLIENT_KEYS"),
        ({"ABP_EDGE_CLIENT_KEYS": "a=k,b=k"}, "ABP_EDGE_CLIENT_KEYS"),
        ({"ABP_EDGE_CORS_ORIGINS": "*"}, "ABP_EDGE_CORS_ORIGINS"),
        ({"ABP_EDGE_EXPOSURES": "files"}, "ABP_EDGE_EXPOSURES"),
        ({"ABP_EDGE_MAX_BODY_BYTES": "-1"}, "ABP_EDGE_MAX_BODY_BYTES"),
        ({"ABP_ENV": "prod"}, "ABP_EDGE_CLIENT_KEYS"),
    ],
)
def test_a_bad_value_names_its_variable(env, named):
    with pytest.raises(EdgeSettingsError, match=named):
        EdgeSettings.from_env(env)


def test_at_most_500_events_a_request():
    with pytest.raises(Refusal, match="1 to 500"):
        events_request({"events": [{"event": "a"}] * 501})
    assert len(events_request({"events": [{"event": "a"}] * 500})[1]) == 500


def test_serve_refuses_prod_without_client_keys(tmp_path):
    env = {"ABP_HOME": str(tmp_path), "ABP_ENV": "prod", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [ABP, "serve", "--port", "0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "ABP_EDGE_CLIENT_KEYS" in done.stderr and "Traceback" not in done.stderr
