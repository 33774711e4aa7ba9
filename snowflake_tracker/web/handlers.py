"""Thin handlers: parse, validate, mint, serialise. Errors are raised, answered in errors.py.

Each ``make_*`` factory closes over what its handler needs, so the handler itself touches no
application state by key on the hot path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Mapping
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web
from multidict import MultiMapping

from snowflake_tracker.ids.codec import parse as parse_number
from snowflake_tracker.ids.layout import decompose
from snowflake_tracker.minting import Minter
from snowflake_tracker.validation import (
    MissingFields,
    Parcel,
    ValidationError,
    validate_parcel,
)
from snowflake_tracker.web.errors import (
    JSON,
    NO_STORE,
    BadRequest,
    Handler,
    error_response,
    json_response,
)
from snowflake_tracker.web.metrics import MintingRoute

DECODE_PATH = "/api/tracking-numbers/"
# How far past the wall clock a genuine mint time can be: the lead the generator may borrow,
# plus a clock anchored at a lease after a restart with the clock set back. A day is ample.
FUTURE_TOLERANCE_MS = 86_400_000
MAX_JSON_DEPTH = 4

Readiness = Callable[[], tuple[bool, dict[str, Any]]]
Decoder = Callable[[int, int], int]


def query_params(query: MultiMapping[str]) -> Mapping[str, object]:
    """The query as a mapping; a parameter given more than once maps to the list of values.

    The common case (every parameter once) returns the proxy itself: no copy.
    """
    if len(set(query.keys())) == len(query):
        return query
    params: dict[str, object] = {}
    for key in query:
        if key not in params:
            values = query.getall(key)
            params[key] = values[0] if len(values) == 1 else values
    return params


def make_next_number(
    minter: Minter, max_weight_kg: Decimal, instruments: MintingRoute | None = None
) -> Handler:
    """GET /api/next-tracking-number: validate the seven parameters, mint one number.

    With ``instruments`` the handler counts its own requests (it has no errors.guard wrapper
    to do it) and the numbers it issues; without, it runs no metrics code at all.
    """
    mint = minter.mint

    async def next_tracking_number(request: web.Request) -> web.StreamResponse:
        # Errors are answered here, inline, rather than by a wrapper (errors.guard): one call
        # less on the route every request takes.
        try:
            parcel = validate_parcel(query_params(request.query), max_weight_kg=max_weight_kg)
            number, created_at = mint(parcel.origin_country_id)
        except Exception as exc:
            return error_response(exc)
        return _created(number, created_at)

    if instruments is None:
        return next_tracking_number

    record = instruments.record
    count_issued = instruments.count_issued
    perf_counter = time.perf_counter

    async def counted_next_tracking_number(request: web.Request) -> web.StreamResponse:
        start = perf_counter()
        try:
            parcel = validate_parcel(query_params(request.query), max_weight_kg=max_weight_kg)
            number, created_at = mint(parcel.origin_country_id)
        except Exception as exc:
            response = error_response(exc)
            record(response.status, perf_counter() - start)
            return response
        count_issued(1)
        response = _created(number, created_at)
        record(201, perf_counter() - start)
        return response

    return counted_next_tracking_number


def _created(number: str, created_at: str) -> web.Response:
    """The 201 answer for one minted number."""
    return web.Response(
        body=orjson.dumps({"tracking_number": number, "created_at": created_at}),
        status=201,
        content_type=JSON,
        headers={"Cache-Control": "no-store", "Location": DECODE_PATH + number},
    )


def _json_depth_ok(value: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
    return True


def make_batch(
    minter: Minter,
    max_weight_kg: Decimal,
    max_batch: int,
    *,
    count_issued: Callable[[int], None] | None = None,
) -> Handler:
    """POST /api/tracking-numbers: numbers for a print run, all or nothing, in order."""

    async def batch(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            items = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRequest("The body must be a JSON array of parcels.") from None
        if not isinstance(items, list) or not items:
            raise BadRequest("The body must be a non-empty JSON array of parcels.")
        if len(items) > max_batch:
            raise BadRequest(
                f"At most {max_batch} parcels in one request; this one has {len(items)}.",
                status=413,
            )
        if not _json_depth_ok(items, MAX_JSON_DEPTH):
            raise BadRequest("Parcels must be flat JSON objects of strings.")
        parcels: list[Parcel] = []
        errors: dict[str, dict[str, str]] = {}
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                errors[str(index)] = {"parcel": "must be a JSON object with the seven fields"}
                continue
            try:
                parcels.append(validate_parcel(item, max_weight_kg=max_weight_kg))
            except MissingFields as exc:
                errors[str(index)] = {field: "is required" for field in exc.missing}
            except ValidationError as exc:
                errors[str(index)] = exc.errors
        if errors:
            raise BadRequest(
                f"{len(errors)} of {len(items)} parcels are invalid; none were numbered.",
                errors=errors,
            )
        minted = minter.mint_many([parcel.origin_country_id for parcel in parcels])
        if count_issued is not None:
            count_issued(len(minted))
        return json_response(
            {
                "tracking_numbers": [
                    {"tracking_number": number, "created_at": created_at}
                    for number, created_at in minted
                ]
            },
            201,
        )

    return batch


def make_decode(origins: Container[str], decode_key: Decoder | None, reveal: bool) -> Handler:
    """GET /api/tracking-numbers/{tracking_number}: check a number and say what it holds."""

    async def decode(request: web.Request) -> web.StreamResponse:
        return json_response(
            describe(request.match_info["tracking_number"], origins, decode_key, reveal)
        )

    return decode


def describe(
    text: str, origins: Container[str], decode_key: Decoder | None, reveal: bool = True
) -> dict[str, Any]:
    """What a number holds, as the decode endpoint and ``snowflake-tracker decode`` show it."""
    number = parse_number(text, origins=origins)
    answer: dict[str, Any] = {
        "tracking_number": number.text,
        "origin_country_id": number.origin,
        "key_version": number.key_version,
        "valid": True,
    }
    if number.key_version == 0:
        snowflake_id = number.snowflake_id
    elif decode_key is None:
        raise BadRequest(
            f"Key version {number.key_version} is not configured on this server.",
            errors={"tracking_number": "made under a key this server does not hold"},
        )
    else:
        snowflake_id = decode_key(number.key_version, number.snowflake_id)
    parts = decompose(snowflake_id)
    # The check character catches typing errors, not forgeries. A made-up number decodes to a
    # time spread over the 69-year ID lifetime, so most claim a future no worker has reached.
    if parts.unix_ms > time.time_ns() // 1_000_000 + FUTURE_TOLERANCE_MS:
        raise BadRequest(
            "This is not a tracking number this service issued.",
            errors={"tracking_number": "its mint time is in the future"},
        )
    if number.key_version and not reveal:
        # What the key hides (mint time, worker, sequence) stays hidden on this listener.
        return answer
    answer.update(
        minted_at=parts.minted_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        worker_id=parts.worker_id,
        sequence=parts.sequence,
        snowflake_id=str(snowflake_id),
    )
    return answer


async def healthz(request: web.Request) -> web.StreamResponse:
    """GET /healthz: the process is alive and its event loop answers."""
    return json_response({"status": "ok"})


def make_readyz(readiness: Readiness) -> Handler:
    """GET /readyz: 200 while the worker can issue numbers, else 503, with the reasons."""

    async def readyz(request: web.Request) -> web.StreamResponse:
        ready, details = readiness()
        return json_response(
            {"status": "ready" if ready else "not ready", **details}, 200 if ready else 503
        )

    return readyz


def make_openapi(document: bytes) -> Handler:
    """GET /openapi.json: the OpenAPI 3.1 description, shipped with the package."""

    async def openapi(request: web.Request) -> web.StreamResponse:
        return web.Response(body=document, content_type=JSON, headers=NO_STORE)

    return openapi
