"""Every refusal of the edge is a JSON 4xx: ``{"error": "<code>", "detail": "<sentence>"}``.

The detail names the field or header at fault; an unexpected error is a JSON 500 that says only
that, the stack trace going to the server's log, never to the client.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["JSONBody", "Refusal", "http_error", "json_response", "refusal", "server_error"]

_CODES = {
    400: "bad_request",
    401: "missing_client_key",
    403: "bad_client_key",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    429: "rate_limited",
}


class Refusal(Exception):
    """A request the edge refuses: ``status`` 4xx, a short ``code`` and a ``detail`` sentence."""

    def __init__(
        self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers = dict(headers or {})


class JSONBody(Response):
    media_type = "application/json"

    def render(self, content) -> bytes:
        return orjson.dumps(content)


def json_response(status: int, code: str, detail: str, headers=None) -> Response:
    return JSONBody({"error": code, "detail": detail}, status, headers=headers)


async def refusal(request: Request, exc: Refusal) -> Response:
    return json_response(exc.status, exc.code, exc.detail, exc.headers)


async def http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own refusals (404, 405) as JSON, with their headers (``Allow``)."""
    status = exc.status_code
    code = _CODES.get(status, "bad_request" if status < 500 else "internal")
    if status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
        allow = (exc.headers or {}).get("Allow")
        detail += f"; use {allow}" if allow else ""
    elif status == 404:
        detail = f"no endpoint at {request.url.path}"
    else:
        detail = str(exc.detail)
    return json_response(status, code, detail, exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    """A bug, answered with a JSON 500 that reveals nothing (Starlette re-raises it after
    this answer, so the server logs it with its trace)."""
    return json_response(500, "internal", "the edge failed to answer; the error is in its log")
