"""The one factory that builds the web application, for production and tests alike."""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

from aiohttp import web

from snowflake_tracker.config import Config
from snowflake_tracker.countries import ASSIGNED
from snowflake_tracker.ids.generator import SnowflakeGenerator
from snowflake_tracker.minting import KeyedEncoder, Minter
from snowflake_tracker.web import handlers
from snowflake_tracker.web.errors import error_middleware
from snowflake_tracker.web.handlers import Decoder, Readiness

CONFIG = web.AppKey("config", Config)
MINTER = web.AppKey("minter", Minter)

# Room for the largest batch (1,000 parcels of ~400 bytes each) with a wide margin; anything
# larger is refused with 413 before it is read into memory.
BODY_BYTES_PER_PARCEL = 1024


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
) -> web.Application:
    """Build the application. Dependencies are keyword-only, with production defaults."""
    if generator is None:
        if config.worker_id is None:
            raise ValueError("create_app needs a generator or config.worker_id")
        generator = SnowflakeGenerator(config.worker_id, max_lead_ms=config.max_lead_ms)
    minter = Minter(generator, keyring=keyring)
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=config.max_batch * BODY_BYTES_PER_PARCEL,
    )
    app[CONFIG] = config
    app[MINTER] = minter

    next_number = handlers.make_next_number(minter, config.max_weight_kg)
    app.router.add_get("/api/next-tracking-number", next_number, allow_head=False)
    app.router.add_get("/next-tracking-number", next_number, allow_head=False)
    app.router.add_post(
        "/api/tracking-numbers",
        handlers.make_batch(minter, config.max_weight_kg, config.max_batch),
    )
    app.router.add_get(
        "/api/tracking-numbers/{tracking_number}",
        handlers.make_decode(ASSIGNED, decode_key, reveal=True),
        allow_head=False,
    )
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get(
        "/readyz", handlers.make_readyz(readiness or make_static_readiness(generator))
    )
    app.router.add_get("/openapi.json", handlers.make_openapi(load_openapi()), allow_head=False)
    return app
