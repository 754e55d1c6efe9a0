"""The edge's settings: every ``ABP_EDGE_*`` variable of docs/edge.md, read once at start.

A bad value stops the server before it binds, with one sentence naming the variable. With
``ABP_ENV=prod`` the edge refuses to start without client keys: an open ``/assign`` and
``/events`` on a production host would take anyone's traffic.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ab_pipelines.settings import SetupError, env_number

__all__ = ["EXPOSURE_MODES", "EdgeSettings", "EdgeSettingsError"]

EXPOSURE_MODES = ("kafka", "none")
MAX_COOKIE_DAYS = 400  # browsers cap a cookie's lifetime at 400 days (RFC 6265bis)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # an HTTP token: a cookie name
_ORIGIN = re.compile(r"^https?://[^/\s,]+$")  # scheme://host[:port], no path


class EdgeSettingsError(SetupError):
    """An ``ABP_EDGE_*`` variable with a value the edge cannot use, named in the message."""


@dataclass(frozen=True)
class EdgeSettings:
    """What docs/edge.md's table says, with its defaults.

    ``client_keys`` maps each key to its name (``ABP_EDGE_CLIENT_KEYS=web=k1,ios=k2`` gives
    ``{"k1": "web", "k2": "ios"}``); empty means no key is needed. ``rate_limit`` 0 turns the
    limit off.
    """

    host: str = "127.0.0.1"
    port: int = 8088
    workers: int = 1
    watch_seconds: float = 0.05
    heartbeat_seconds: float = 15.0
    cache_seconds: int = 5
    cookie_name: str = "abp_id"
    cookie_domain: str | None = None
    cookie_days: int = 400
    client_keys: Mapping[str, str] = field(default_factory=dict)
    rate_limit: float = 200.0
    max_body_bytes: int = 65536
    cors_origins: tuple[str, ...] = ()
    exposures: str = "kafka"
    secure_cookie: bool = False  # True unless ABP_ENV is dev
    # A SQLite file for the SDK's sticky store (a unit keeps its first variant whatever later
    # weights say: what a bandit needs); None: no store, the hash decides every time.
    sticky_db: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EdgeSettings:
        """Read the variables; EdgeSettingsError naming the first bad one."""
        env = os.environ if env is None else env

        def number(var, default, kind=int, least=1):
            return env_number(env, var, default, kind, least, EdgeSettingsError)

        def text(var: str) -> str | None:
            return env.get(var, "").strip() or None

        deployment = (env.get("ABP_ENV", "dev").strip() or "dev").lower()
        cookie_name = text("ABP_EDGE_COOKIE_NAME") or "abp_id"
        if not _TOKEN.match(cookie_name):
            raise EdgeSettingsError(
                f"ABP_EDGE_COOKIE_NAME={cookie_name!r} is not a cookie name (letters, digits "
                "and !#$%&'*+-.^_`|~ only)."
            )
        cookie_days = number("ABP_EDGE_COOKIE_DAYS", 400)
        if cookie_days > MAX_COOKIE_DAYS:
            raise EdgeSettingsError(
                f"ABP_EDGE_COOKIE_DAYS={cookie_days} is over {MAX_COOKIE_DAYS}, the longest "
                "lifetime browsers keep a cookie."
            )
        domain = text("ABP_EDGE_COOKIE_DOMAIN")
        if domain is not None and not re.match(r"^\.?[A-Za-z0-9.-]+$", domain):
            raise EdgeSettingsError(f"ABP_EDGE_COOKIE_DOMAIN={domain!r} is not a domain name.")
        exposures = (text("ABP_EDGE_EXPOSURES") or "kafka").lower()
        if exposures not in EXPOSURE_MODES:
            raise EdgeSettingsError(
                f"ABP_EDGE_EXPOSURES={exposures!r} is not one of {', '.join(EXPOSURE_MODES)}."
            )
        keys = _client_keys(text("ABP_EDGE_CLIENT_KEYS"))
        if deployment == "prod" and not keys:
            raise EdgeSettingsError(
                "ABP_ENV=prod needs ABP_EDGE_CLIENT_KEYS (name=key,name2=key2): the edge does "
                "not serve /assign and /events to anyone in production."
            )
        port = number("ABP_EDGE_PORT", 8088, least=0)
        if port > 65535:
            raise EdgeSettingsError(f"ABP_EDGE_PORT={port} is not a port (0 to 65535).")
        return cls(
            host=text("ABP_EDGE_HOST") or "127.0.0.1",
            port=port,
            workers=number("ABP_EDGE_WORKERS", 1),
            watch_seconds=number("ABP_EDGE_WATCH_SECONDS", 0.05, float, 0.001),
            heartbeat_seconds=number("ABP_EDGE_HEARTBEAT_SECONDS", 15.0, float, 0.01),
            cache_seconds=number("ABP_EDGE_CACHE_SECONDS", 5, least=0),
            cookie_name=cookie_name,
            cookie_domain=domain,
            cookie_days=cookie_days,
            client_keys=keys,
            rate_limit=number("ABP_EDGE_RATE_LIMIT", 200.0, float, 0),
            max_body_bytes=number("ABP_EDGE_MAX_BODY_BYTES", 65536),
            cors_origins=_origins(text("ABP_EDGE_CORS_ORIGINS")),
            exposures=exposures,
            secure_cookie=deployment != "dev",
            sticky_db=text("ABP_EDGE_STICKY_DB"),
        )


def _client_keys(raw: str | None) -> dict[str, str]:
    if raw is None:
        return {}
    keys: dict[str, str] = {}
    names: set[str] = set()
    for i, entry in enumerate(raw.split(",")):
        name, sep, key = (s.strip() for s in entry.partition("="))
        if not sep or not name or not key:
            raise EdgeSettingsError(
                f"ABP_EDGE_CLIENT_KEYS entry {i + 1} ({entry.strip()!r}) is not name=key."
            )
        if name in names or key in keys:
            raise EdgeSettingsError(
                f"ABP_EDGE_CLIENT_KEYS repeats the {'name' if name in names else 'key'} of "
                f"entry {i + 1} ({name!r})."
            )
        names.add(name)
        keys[key] = name
    return keys


def _origins(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    out = []
    for origin in (o.strip().rstrip("/") for o in raw.split(",")):
        if not origin:
            continue
        if not _ORIGIN.match(origin):
            raise EdgeSettingsError(
                f"ABP_EDGE_CORS_ORIGINS holds {origin!r}, which is not an origin like "
                "https://shop.example.com ('*' is refused: the edge's CORS carries credentials)."
            )
        out.append(origin)
    return tuple(out)
