"""The edge's ASGI app (docs/edge.md): the signed config with ETag and Server-Sent Events, remote
assignment with a sticky anonymous id, the metric-event collector, and Prometheus metrics.

    from ab_pipelines.edge import EdgeSettings, create_app
    app = create_app(EdgeSettings.from_env(), paths())      # run it with uvicorn

Each worker process holds its own serving ``Client`` (fed by its ``ConfigWatcher``), its own
Kafka producers (exposures, metric events) and its own rate-limit buckets; nothing else is kept,
so workers and replicas are interchangeable. The sinks never block a request: they append to a
bounded queue that a producer thread drains.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
import os
import re
import secrets
import signal
import threading
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ab_pipelines.assignment import Client, KafkaExposureSink, signing
from ab_pipelines.assignment.sticky import SqliteStickyStore
from ab_pipelines.edge import metrics
from ab_pipelines.edge.bodies import assign_request, events_request, parse_json
from ab_pipelines.edge.errors import JSONBody, Refusal, http_error, refusal, server_error
from ab_pipelines.edge.ratelimit import TokenBuckets, retry_after
from ab_pipelines.edge.settings import EdgeSettings
from ab_pipelines.edge.watcher import ConfigWatcher
from ab_pipelines.events.producer import Tracker
from ab_pipelines.settings import Paths, paths

__all__ = ["KEY_HEADER", "app_from_env", "create_app"]

log = logging.getLogger("ab_pipelines.edge")

KEY_HEADER = "X-ABP-Client-Key"
KEY_PARAM = "client_key"  # the same key as a query parameter (navigator.sendBeacon sets no header)
EXPOSURE_MEMORY = 1_000_000  # (unit, experiment) pairs a worker remembers as exposed
CLOSE_SECONDS = 5.0  # how long a stopping worker waits for Kafka to take what is queued
_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # ours are 22 base64url characters
ROUTES = ("/config", "/config/stream", "/assign", "/events", "/metrics", "/healthz", "/readyz")


def new_anonymous_id() -> str:
    """16 random bytes, base64url without padding (22 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()


def _etag_matches(header: str, etag: str) -> bool:
    """``If-None-Match`` holds ``*``, or a list with ``etag`` (weak ``W/`` accepted)."""
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


class Edge:
    """One worker's state and endpoints."""

    def __init__(self, settings: EdgeSettings, home: Paths) -> None:
        self.settings = settings
        self.home = home
        self.buckets = TokenBuckets(settings.rate_limit)
        self.watcher: ConfigWatcher | None = None
        self.client: Client | None = None
        self.exposure_sink: KafkaExposureSink | None = None
        self.tracker: Tracker | None = None
        self._cookie_tail = "; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}{}".format(
            settings.cookie_days * 86400,
            f"; Domain={settings.cookie_domain}" if settings.cookie_domain else "",
            "; Secure" if settings.secure_cookie else "",
        )

    # ---- lifespan ------------------------------------------------------------------------------
    async def start(self) -> None:
        key = signing.public_key()
        if self.settings.exposures == "kafka":
            self.exposure_sink = KafkaExposureSink(home=self.home.home)
        self.tracker = Tracker(home=self.home.home)
        # A bandit's units keep the arm they got first: the sticky store answers before the hash.
        sticky = SqliteStickyStore(self.settings.sticky_db) if self.settings.sticky_db else None
        self.client = Client(
            public_key=key,
            exposure_sink=self.exposure_sink,
            exposure_memory=EXPOSURE_MEMORY,
            sticky=sticky,
        )
        self.watcher = ConfigWatcher(
            self.home.edge / "config.json", self.client, self.settings.watch_seconds
        )
        self.watcher.start()
        self._end_streams_on_signal()

    def _end_streams_on_signal(self) -> None:
        """On SIGTERM or SIGINT, end the open event streams at once, so the server's graceful
        shutdown does not wait on them; uvicorn's own handler runs after ours."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        watcher = self.watcher
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def handler(signum, frame, previous=previous):
                loop.call_soon_threadsafe(watcher.stop)
                previous(signum, frame)

            signal.signal(sig, handler)

    async def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        # Both at once. Without a known broker there is nothing to wait for: what is queued is
        # lost (and counted as failed), as the stopping producer logs.
        await asyncio.gather(
            *(
                asyncio.to_thread(p.close, CLOSE_SECONDS if p.producer.bootstrap else 0.0)
                for p in (self.exposure_sink, self.tracker)
                if p is not None
            )
        )
        metrics.worker_stopped()

    # ---- shared checks ------------------------------------------------------------------------
    def _key_name(self, key: str) -> str | None:
        found = None
        for known, name in self.settings.client_keys.items():
            if hmac.compare_digest(known.encode(), key.encode()):  # constant time per key
                found = name
        return found

    def _admit(self, request: Request, need_key: bool) -> None:
        """The rate limit (per client key, else per client IP), then the client key."""
        key = request.headers.get(KEY_HEADER) or request.query_params.get(KEY_PARAM)
        name = self._key_name(key) if key else None
        caller = (
            f"client key {name!r}"
            if name
            else f"client IP {request.client.host if request.client else 'unknown'}"
        )
        wait = self.buckets.take(caller)
        if wait:
            raise Refusal(
                429,
                "rate_limited",
                f"more than {self.settings.rate_limit:g} requests/s from {caller} "
                "(ABP_EDGE_RATE_LIMIT); retry later",
                {"Retry-After": retry_after(wait)},
            )
        if need_key and self.settings.client_keys:
            if not key:
                raise Refusal(
                    401,
                    "missing_client_key",
                    f"the {KEY_HEADER} header (or the {KEY_PARAM} query parameter) is required",
                )
            if name is None:
                raise Refusal(403, "bad_client_key", f"the {KEY_HEADER} is not a known client key")

    async def _body(self, request: Request) -> object:
        """The JSON body, refused with 413 past the limit: on Content-Length before reading,
        and while reading a body without one (chunked)."""
        limit = self.settings.max_body_bytes
        too_large = Refusal(
            413,
            "too_large",
            f"the body is over {limit} bytes (ABP_EDGE_MAX_BODY_BYTES)",
        )
        length = request.headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                raise Refusal(400, "bad_header", f"Content-Length {length!r} is not a number")
            if int(length) > limit:
                raise too_large
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
        except ClientDisconnect:
            raise Refusal(
                400, "bad_request", "the client went away before its body ended"
            ) from None
        if not size:
            raise Refusal(400, "bad_json", "the body is empty; a JSON object is expected")
        return parse_json(b"".join(chunks))

    def _served(self):
        current = self.watcher.current if self.watcher else None
        if current is None:
            raise Refusal(
                503,
                "no_config",
                f"no verified config yet at {self.home.edge / 'config.json'}; run 'abp publish'",
            )
        return current

    def _identity(self, request: Request, given: str | None) -> tuple[str, str | None]:
        """The anonymous id, and the Set-Cookie value when it is new (docs/edge.md, Identity)."""
        if given is not None:
            return given, None
        cookie = request.cookies.get(self.settings.cookie_name)
        if cookie and _COOKIE_VALUE.match(cookie):
            return cookie, None
        anonymous_id = new_anonymous_id()
        return anonymous_id, f"{self.settings.cookie_name}={anonymous_id}{self._cookie_tail}"

    # ---- endpoints ------------------------------------------------------------------------------
    async def config(self, request: Request) -> Response:
        self._admit(request, need_key=False)
        current = self._served()
        headers = {
            "ETag": current.etag,
            "Cache-Control": f"public, max-age={self.settings.cache_seconds}",
            "X-ABP-Config-Version": str(current.version),
        }
        match = request.headers.get("if-none-match")
        if match and _etag_matches(match, current.etag):
            return Response(status_code=304, headers=headers)
        return Response(current.raw, headers=headers, media_type="application/json")

    async def stream(self, request: Request) -> Response:
        self._admit(request, need_key=False)
        last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        try:
            seen = int(last.strip()) if last else None
        except ValueError:
            seen = None  # not one of our ids: send the current version
        return StreamingResponse(
            self._events(seen),
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )

    async def _events(self, seen: int | None):
        """``retry``, then every version the subscriber has not seen, with a heartbeat comment
        after each ``heartbeat_seconds`` without anything sent."""
        watcher, beat = self.watcher, self.settings.heartbeat_seconds
        metrics.SUBSCRIBERS.inc()
        try:
            yield b"retry: 1000\n\n"
            last_sent = time.monotonic()
            while not watcher.stopping:
                waiter = watcher.changed  # taken before reading current: no version is missed
                current = watcher.current
                if current is not None and current.version != seen:
                    yield current.sse_event
                    seen, last_sent = current.version, time.monotonic()
                    continue
                left = beat - (time.monotonic() - last_sent)
                if left <= 0:
                    yield f": heartbeat {int(time.time())}\n\n".encode()
                    last_sent = time.monotonic()
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wait(), left)
        finally:
            metrics.SUBSCRIBERS.dec()

    async def assign(self, request: Request) -> Response:
        self._admit(request, need_key=True)
        self._served()
        req = assign_request(await self._body(request))
        anonymous_id, set_cookie = self._identity(request, req.anonymous_id)
        attributes = req.attributes
        if "anonymous_id" not in attributes:
            attributes = {**attributes, "anonymous_id": anonymous_id}
        client = self.client
        version = client.config_version
        result = client.evaluate(req.user_id or anonymous_id, attributes, req.experiments)
        metrics.ASSIGNMENTS.inc(len(result))
        body = {
            "config_version": version,
            "user_id": req.user_id,
            "anonymous_id": anonymous_id,
            "assignments": {e: {"variant": v, "reason": why} for e, (v, why) in result.items()},
        }
        response = JSONBody(body)
        if set_cookie:
            response.headers.append("Set-Cookie", set_cookie)
        return response

    async def events(self, request: Request) -> Response:
        self._admit(request, need_key=True)
        given, events = events_request(await self._body(request))
        anonymous_id = set_cookie = None
        if any(e.user_id is None for e in events):
            anonymous_id, set_cookie = self._identity(request, given)
        queued = 0
        track = self.tracker.track
        for e in events:
            queued += track(e.user_id or anonymous_id, e.event, e.value, e.properties, e.ts)
        dropped = len(events) - queued
        metrics.EVENTS.labels("queued").inc(queued)
        body = {"accepted": queued}
        if dropped:
            metrics.EVENTS.labels("dropped").inc(dropped)
            body["dropped"] = dropped  # the producer's queue was full (Kafka away too long)
        response = JSONBody(body, status_code=202)
        if set_cookie:
            response.headers.append("Set-Cookie", set_cookie)
        return response

    async def prometheus(self, request: Request) -> Response:
        text = await asyncio.to_thread(metrics.metrics_text)  # multiprocess: reads files
        return Response(text, headers={"Content-Type": metrics.CONTENT_TYPE_LATEST})

    async def healthz(self, request: Request) -> Response:
        return JSONBody({"status": "ok", "pid": os.getpid()})

    async def readyz(self, request: Request) -> Response:
        current = self._served()
        return JSONBody({"status": "ready", "config_version": current.version})


class _RequestMetrics:
    """Counts every response by route and status, and times it (not the event streams)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in ROUTES else "other"
        status = ["500"]
        started = time.perf_counter()

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            metrics.REQUESTS.labels(route, status[0]).inc()
            if route != "/config/stream":
                metrics.LATENCY.labels(route, status[0]).observe(time.perf_counter() - started)


def create_app(settings: EdgeSettings, home: Paths | str | os.PathLike | None = None) -> Starlette:
    """The edge as an ASGI app; ``home`` is ABP_HOME (a Paths, a folder, or None: $ABP_HOME)."""
    home = home if isinstance(home, Paths) else paths(Path(home) if home is not None else None)
    edge = Edge(settings, home)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await edge.start()
        try:
            yield
        finally:
            await edge.stop()

    middleware = [Middleware(_RequestMetrics)]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_credentials=True,
                allow_methods=["GET", "POST"],
                allow_headers=["Content-Type", KEY_HEADER, "Last-Event-ID"],
                expose_headers=["ETag", "X-ABP-Config-Version", "Retry-After"],
                max_age=600,
            )
        )
    app = Starlette(
        routes=[
            Route("/config", edge.config, methods=["GET"]),
            Route("/config/stream", edge.stream, methods=["GET"]),
            Route("/assign", edge.assign, methods=["POST"]),
            Route("/events", edge.events, methods=["POST"]),
            Route("/metrics", edge.prometheus, methods=["GET"]),
            Route("/healthz", edge.healthz, methods=["GET"]),
            Route("/readyz", edge.readyz, methods=["GET"]),
        ],
        middleware=middleware,
        exception_handlers={
            Refusal: refusal,
            HTTPException: http_error,
            Exception: server_error,
        },
        lifespan=lifespan,
    )
    app.state.edge = edge
    return app


PARENT_ENV = "ABP_EDGE_PARENT_PID"  # set by `abp serve` for its worker processes


def app_from_env() -> Starlette:
    """uvicorn's factory in each worker of ``abp serve``: the settings from the environment; a
    worker of a supervising parent dies with it (even when the parent is SIGKILLed)."""
    parent = os.environ.get(PARENT_ENV)
    if parent and parent == str(os.getppid()):
        from ab_pipelines.processes import die_with_parent

        die_with_parent()
    return create_app(EdgeSettings.from_env(), paths())
