"""Every error the service answers, in one place: domain errors and HTTP errors become JSON.

Handlers raise; :func:`error_response` decides the answer. The middleware applies it to every
route, and the hot route calls it directly (it skips the middleware chain for speed), so the
two can never disagree.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from snowflake_tracker.ids.codec import InvalidTrackingNumber
from snowflake_tracker.ids.generator import MustWait
from snowflake_tracker.validation import MissingFields, ValidationError

log = logging.getLogger("snowflake_tracker.web")

JSON = "application/json"
NO_STORE = {"Cache-Control": "no-store"}
MISSING_MESSAGE = "All parameters are required"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(ValueError):
    """A request the client can fix: a sentence, and optionally more JSON fields."""

    def __init__(self, message: str, status: int = 400, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """An orjson body with ``Cache-Control: no-store``."""
    all_headers = NO_STORE if headers is None else {**NO_STORE, **headers}
    return web.Response(
        body=orjson.dumps(payload), status=status, content_type=JSON, headers=all_headers
    )


def _http_error_message(exc: web.HTTPException) -> str:
    if isinstance(exc, web.HTTPNotFound):
        return "No such resource; see /openapi.json for the endpoints."
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"Method {exc.method} is not allowed here; allowed: {allowed}."
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return "The request body is too large."
    return exc.reason


def error_response(exc: BaseException) -> web.StreamResponse:
    """The JSON answer for an exception raised while handling a request."""
    if isinstance(exc, MissingFields):
        return json_response({"error": MISSING_MESSAGE, "missing": exc.missing}, 400)
    if isinstance(exc, ValidationError):
        return json_response({"error": str(exc), "errors": exc.errors}, 400)
    if isinstance(exc, InvalidTrackingNumber):
        return json_response(
            {
                "error": "This is not a valid tracking number.",
                "errors": {"tracking_number": str(exc)},
            },
            400,
        )
    if isinstance(exc, BadRequest):
        return json_response({"error": str(exc), **exc.extra}, exc.status)
    if isinstance(exc, MustWait):
        retry = max(1, math.ceil(exc.seconds))
        return json_response(
            {
                "error": "Tracking numbers are briefly unavailable; retry shortly.",
                "retry_after": retry,
            },
            503,
            {"Retry-After": str(retry)},
        )
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        headers = {
            k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After", "Location")
        }
        return json_response({"error": _http_error_message(exc)}, exc.status, headers)
    log.exception("unexpected fault while handling a request", exc_info=exc)
    return json_response({"error": "Internal error; it has been logged."}, 500)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn any exception a handler raises into its JSON answer."""
    try:
        return await handler(request)
    except Exception as exc:
        return error_response(exc)
