"""Every error the service answers, in one place: domain errors and HTTP errors become JSON.

Handlers raise; :func:`error_response` decides the answer. :func:`guard` applies it to every
route, and the hot route calls it inline, so the two can never disagree. Paths and methods no
route serves reach the catch-all handlers below rather than aiohttp's plain-text answers.
"""

from __future__ import annotations

import logging
import math
import time
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


Recorder = Callable[[web.Request, int, float], None]


def guard(handler: Handler, record: Recorder | None = None) -> Handler:
    """Wrap a handler so any exception becomes its JSON answer, and the request is counted.

    A wrapper per route rather than a middleware: aiohttp builds the middleware chain for
    every request, which cost the hot route about 9 us of its ~80 (benchmarks/README.md), and
    a route cannot opt out of a middleware.
    """
    perf_counter = time.perf_counter

    async def guarded(request: web.Request) -> web.StreamResponse:
        start = perf_counter()
        try:
            response = await handler(request)
        except Exception as exc:
            response = error_response(exc)
        if record is not None:
            record(request, response.status, perf_counter() - start)
        return response

    guarded.__name__ = getattr(handler, "__name__", "guarded")
    return guarded


def make_not_found() -> Handler:
    """The catch-all route's handler: any path no other route matched."""

    async def not_found(request: web.Request) -> web.StreamResponse:
        raise web.HTTPNotFound()

    return not_found


def make_method_not_allowed(allowed: set[str]) -> Handler:
    """The handler for a known path asked with a method it does not serve."""
    methods = sorted(allowed)

    async def method_not_allowed(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMethodNotAllowed(request.method, methods)

    return method_not_allowed
