"""The one factory that builds the web application, for production and tests alike."""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

from aiohttp import hdrs, web

from snowflake_tracker.config import Config
from snowflake_tracker.countries import ASSIGNED
from snowflake_tracker.ids.generator import SnowflakeGenerator
from snowflake_tracker.minting import KeyedEncoder, Minter
from snowflake_tracker.web import handlers
from snowflake_tracker.web.errors import (
    Handler,
    Recorder,
    guard,
    make_method_not_allowed,
    make_not_found,
)
from snowflake_tracker.web.handlers import Decoder, Readiness
from snowflake_tracker.web.metrics import Metrics

CONFIG = web.AppKey("config", Config)
MINTER = web.AppKey("minter", Minter)
# Present only when metrics are on (``Config.metrics``).
METRICS = web.AppKey("metrics", Metrics)

# The routes that mint one number: the hot path, which counts its own requests (handlers.py).
NEXT_NUMBER_PATHS = ("/api/next-tracking-number", "/next-tracking-number")
METRICS_PATH = "/metrics"
# The last route: any path no other route matched, answered 404 in JSON. [\s\S], not ".":
# a decoded path may hold a newline, which "." does not match.
CATCH_ALL_PATH = r"/{unmatched_path:[\s\S]*}"

# Room for the largest batch: a valid parcel is up to ~2.8 KB of JSON when its 200-character
# name is escaped (\uXXXX, 6 bytes a character, 12 for an emoji). Anything larger is
# refused with 413 before it is read into memory.
BODY_BYTES_PER_PARCEL = 4096


def load_openapi() -> bytes:
    """The OpenAPI document shipped as package data."""
    return resources.files("snowflake_tracker.web").joinpath("openapi.json").read_bytes()


def make_static_readiness(generator: SnowflakeGenerator) -> Readiness:
    """Readiness for an app with no supervisor around it (tests, embedding): the clock only."""

    def readiness() -> tuple[bool, dict[str, Any]]:
        return True, {
            "worker_ids": [generator.worker_id],
            "clock": {
                "state": "ok",
                "now_ms": generator.now_ms(),
                "wall_ms": time.time_ns() // 1_000_000,
            },
        }

    return readiness


def create_app(
    config: Config,
    *,
    generator: SnowflakeGenerator | None = None,
    keyring: KeyedEncoder | None = None,
    decode_key: Decoder | None = None,
    readiness: Readiness | None = None,
    metrics: Metrics | None = None,
) -> web.Application:
    """Build the application. Dependencies are keyword-only, with production defaults.

    With ``config.metrics`` on and no ``metrics`` given, the app counts into a registry of its
    own (this process alone); the worker passes the node-wide :class:`Metrics` instead. With
    it off, nothing is counted and there is no ``/metrics``.
    """
    if generator is None:
        if config.worker_id is None:
            raise ValueError("create_app needs a generator or config.worker_id")
        generator = SnowflakeGenerator(config.worker_id, max_lead_ms=config.max_lead_ms)
    if not config.metrics:
        metrics = None
    elif metrics is None:
        metrics = Metrics()
    minter = Minter(generator, keyring=keyring)
    # No middlewares: each route is wrapped once, at start (errors.guard), so aiohttp calls
    # handlers directly instead of building a middleware chain per request.
    app = web.Application(client_max_size=config.max_batch * BODY_BYTES_PER_PARCEL)
    app[CONFIG] = config
    app[MINTER] = minter
    record = None if metrics is None else metrics.recorder()

    def add(method: str, path: str, handler: Handler, *, allow_head: bool = False) -> None:
        app.router.add_route(method, path, guard(handler, record))
        if allow_head:
            app.router.add_route("HEAD", path, guard(handler, record))

    for path in NEXT_NUMBER_PATHS:
        # The hot route answers its own errors and counts itself: no wrapper at all.
        app.router.add_get(
            path,
            handlers.make_next_number(
                minter,
                config.max_weight_kg,
                None if metrics is None else metrics.minting_route(path, generator.worker_id),
            ),
            allow_head=False,
        )
    add(
        "POST",
        "/api/tracking-numbers",
        handlers.make_batch(
            minter,
            config.max_weight_kg,
            config.max_batch,
            count_issued=None if metrics is None else metrics.count_issued(generator.worker_id),
        ),
    )
    add(
        "GET",
        "/api/tracking-numbers/{tracking_number}",
        handlers.make_decode(ASSIGNED, decode_key, reveal=config.reveal_keyed),
    )
    add("GET", "/healthz", handlers.healthz, allow_head=True)
    add(
        "GET",
        "/readyz",
        handlers.make_readyz(readiness or make_static_readiness(generator)),
        allow_head=True,
    )
    add("GET", "/openapi.json", handlers.make_openapi(load_openapi()))
    if metrics is not None:
        app[METRICS] = metrics
        metrics.watch_generator(generator)
        app.cleanup_ctx.append(metrics.keep_synced)
        if not config.separate_metrics:
            add("GET", METRICS_PATH, metrics.make_handler(), allow_head=True)
    add_json_fallbacks(app, record)
    return app


def add_json_fallbacks(app: web.Application, record: Recorder | None) -> None:
    """Answer unknown paths (404) and unserved methods (405) as JSON, like everything else.

    Without a middleware, aiohttp would answer these in plain text; instead each resource
    gets a route for any other method, and a last route catches every other path.
    """
    for resource in list(app.router.resources()):
        if not isinstance(resource, web.Resource):
            continue
        allowed = {route.method for route in resource}
        resource.add_route(hdrs.METH_ANY, guard(make_method_not_allowed(allowed), record))
    app.router.add_route(hdrs.METH_ANY, CATCH_ALL_PATH, guard(make_not_found(), record))


def create_metrics_app(metrics: Metrics) -> web.Application:
    """The app of the separate metrics listener (``--metrics-port``): ``/metrics`` alone."""
    app = web.Application()
    app.router.add_route("GET", METRICS_PATH, guard(metrics.make_handler()))
    app.router.add_route("HEAD", METRICS_PATH, guard(metrics.make_handler()))
    add_json_fallbacks(app, None)
    return app
