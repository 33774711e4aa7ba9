"""The HTTP contract of DESIGN §2 and §5, in process: what each request is answered."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest
from aiohttp import ClientResponse
from conftest import (
    NUMBER_PATTERN,
    SAMPLE_QUERY,
    TEST_WORKER_ID,
    AppClient,
    FakeClock,
    MakeClient,
)
from yarl import URL

from snowflake_tracker.config import Config
from snowflake_tracker.ids.codec import parse, render
from snowflake_tracker.ids.generator import SnowflakeGenerator
from snowflake_tracker.ids.layout import IDS_PER_MS, compose, decompose
from snowflake_tracker.validation import FIELDS
from snowflake_tracker.web.app import BODY_BYTES_PER_PARCEL

SINGLE_PATHS = ["/api/next-tracking-number", "/next-tracking-number"]
BATCH_PATH = "/api/tracking-numbers"
DECODE_PATH = "/api/tracking-numbers/"
MISSING = "All parameters are required"
CREATED_AT_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
CLOCK_SLACK = timedelta(seconds=1)

# A number whose body holds both 0 and 1, so reading O and I for them can be shown.
READABLE_NUMBER = "MY003Q6PA0004015"
assert render(compose(1_000_000_000, 1, 1), "MY") == READABLE_NUMBER

single_paths = pytest.mark.parametrize("path", SINGLE_PATHS)


async def body_of(response: ClientResponse) -> Any:
    """The JSON body, after checking the response declares it."""
    assert response.content_type == "application/json"
    return orjson.loads(await response.read())


async def decode(client: AppClient, number: str) -> dict[str, Any]:
    """The decode view of a number that must be valid."""
    response = await client.get(DECODE_PATH + number)
    assert response.status == 200
    body: dict[str, Any] = await body_of(response)
    return body


def parcel(**overrides: str) -> dict[str, str]:
    """The sample parcel with some fields replaced."""
    return {**SAMPLE_QUERY, **overrides}


def without(*names: str) -> dict[str, str]:
    """The sample parcel without some fields."""
    return {key: value for key, value in SAMPLE_QUERY.items() if key not in names}


def snowflake_of(number: str) -> int:
    """The Snowflake ID a key-version-0 number carries."""
    parsed = parse(number)
    assert parsed.key_version == 0
    return parsed.snowflake_id


class FailingGenerator(SnowflakeGenerator):
    """A generator with a bug: every call raises, with a detail that must never be answered."""

    __slots__ = ()

    def next_id(self) -> int:
        raise RuntimeError("secret detail")

    def next_ids(self, count: int) -> list[range]:
        raise RuntimeError("secret detail")


# --- The seed's examples -----------------------------------------------------------------------


async def test_sample_request_answers_201_with_a_tracking_number(app_client: AppClient) -> None:
    """The DESIGN §1 sample request answers 201 with a tracking number."""
    response = await app_client.get("/api/next-tracking-number", params=SAMPLE_QUERY)
    assert response.status == 201
    body = await body_of(response)
    assert isinstance(body["tracking_number"], str)


async def test_missing_origin_answers_400_all_parameters_required(app_client: AppClient) -> None:
    """A request without origin_country_id answers 400 with the contract's exact sentence."""
    response = await app_client.get(
        "/api/next-tracking-number", params=without("origin_country_id")
    )
    assert response.status == 400
    body = await body_of(response)
    assert body["error"] == "All parameters are required"
    assert body["missing"] == ["origin_country_id"]


async def test_invalid_weight_answers_400(app_client: AppClient) -> None:
    """weight=invalid_weight answers 400 naming the weight."""
    response = await app_client.get(
        "/api/next-tracking-number", params=parcel(weight="invalid_weight")
    )
    assert response.status == 400
    body = await body_of(response)
    assert list(body["errors"]) == ["weight"]


# --- One number --------------------------------------------------------------------------------


@single_paths
async def test_number_is_well_formed_and_starts_with_its_origin(
    app_client: AppClient, path: str
) -> None:
    """The number is 16 upper-case letters and digits, starts with the origin, and parses."""
    for origin in ("MY", "ID", "US", "ZW", "AD"):
        response = await app_client.get(path, params=parcel(origin_country_id=origin))
        assert response.status == 201
        number = (await body_of(response))["tracking_number"]
        assert re.fullmatch(NUMBER_PATTERN, number)
        assert number.startswith(origin)
        assert parse(number).origin == origin


@single_paths
async def test_location_names_the_decode_resource_of_the_number(
    app_client: AppClient, path: str
) -> None:
    """Location names the number's decode resource, and decoding it gives back the origin."""
    response = await app_client.get(path, params=parcel(origin_country_id="ID"))
    assert response.status == 201
    number = (await body_of(response))["tracking_number"]
    location = response.headers["Location"]
    assert location == DECODE_PATH + number
    decoded = await app_client.get(location)
    assert decoded.status == 200
    view = await body_of(decoded)
    assert view["tracking_number"] == number
    assert view["origin_country_id"] == "ID"
    assert view["worker_id"] == TEST_WORKER_ID


@single_paths
async def test_created_at_is_utc_milliseconds_and_the_decoded_mint_time(
    app_client: AppClient, path: str
) -> None:
    """created_at is RFC 3339 UTC with milliseconds, near now, and equals the decoded minted_at."""
    before = datetime.now(UTC)
    response = await app_client.get(path, params=SAMPLE_QUERY)
    after = datetime.now(UTC)
    body = await body_of(response)
    created_at = body["created_at"]
    assert re.fullmatch(CREATED_AT_PATTERN, created_at)
    moment = datetime.fromisoformat(created_at)
    assert moment.utcoffset() == timedelta(0)
    # The generator's clock is anchored to the wall clock once, so allow it a little drift.
    assert before - CLOCK_SLACK <= moment <= after + CLOCK_SLACK
    view = await decode(app_client, body["tracking_number"])
    assert view["minted_at"] == created_at


@single_paths
async def test_lower_case_countries_are_answered_upper_case(
    app_client: AppClient, path: str
) -> None:
    """Countries in lower or mixed case are accepted, and the number carries them upper-case."""
    response = await app_client.get(
        path, params=parcel(origin_country_id="my", destination_country_id="iD")
    )
    assert response.status == 201
    number = (await body_of(response))["tracking_number"]
    assert number.startswith("MY")
    assert (await decode(app_client, number))["origin_country_id"] == "MY"


@single_paths
async def test_missing_parameters_are_listed_in_contract_order(
    app_client: AppClient, path: str
) -> None:
    """Every missing parameter is listed, in the order of the contract, whatever the query."""
    response = await app_client.get(path)
    assert response.status == 400
    body = await body_of(response)
    assert body == {"error": MISSING, "missing": list(FIELDS)}

    response = await app_client.get(
        path, params=without("customer_slug", "weight", "origin_country_id")
    )
    body = await body_of(response)
    assert body["missing"] == ["origin_country_id", "weight", "customer_slug"]


@single_paths
@pytest.mark.parametrize("empty", ["", " ", "\t", "   \u3000"])
async def test_empty_parameters_count_as_missing(
    app_client: AppClient, path: str, empty: str
) -> None:
    """A parameter that is empty or only whitespace is missing, not invalid."""
    response = await app_client.get(path, params=parcel(customer_name=empty, weight=empty))
    assert response.status == 400
    body = await body_of(response)
    assert body == {"error": MISSING, "missing": ["weight", "customer_name"]}


@single_paths
async def test_every_bad_field_is_reported_at_once(app_client: AppClient, path: str) -> None:
    """With every parameter invalid, the answer names all seven, each with a reason."""
    bad = {
        "origin_country_id": "XX",
        "destination_country_id": "MYS",
        "weight": "1.2345",
        "created_at": "2018-11-20T19:29:32",
        "customer_id": "{de619854-b59b-425e-9db4-943979e1bd49}",
        "customer_name": "Red\x00Box",
        "customer_slug": "RedBox_Logistics",
    }
    response = await app_client.get(path, params=bad)
    assert response.status == 400
    body = await body_of(response)
    assert isinstance(body["error"], str)
    assert body["error"]
    assert set(body["errors"]) == set(FIELDS)
    assert all(isinstance(reason, str) and reason for reason in body["errors"].values())


@single_paths
async def test_a_repeated_parameter_is_an_error(app_client: AppClient, path: str) -> None:
    """A parameter given twice is invalid, even with the same value twice."""
    for second in ("ID", "MY"):
        query = [*SAMPLE_QUERY.items(), ("origin_country_id", second)]
        response = await app_client.get(path, params=query)
        assert response.status == 400
        body = await body_of(response)
        assert list(body["errors"]) == ["origin_country_id"]


@single_paths
async def test_unknown_parameters_are_ignored(app_client: AppClient, path: str) -> None:
    """Parameters outside the contract do not change the answer."""
    response = await app_client.get(path, params=parcel(service="express", ORIGIN_COUNTRY_ID="ZZ"))
    assert response.status == 201


async def test_an_unencoded_plus_in_created_at_is_read_as_plus(app_client: AppClient) -> None:
    """created_at=...+08:00 sent without percent-encoding the + is accepted."""
    query = "&".join(f"{key}={value}" for key, value in parcel(customer_name="RedBox").items())
    response = await app_client.get(URL("/api/next-tracking-number?" + query, encoded=True))
    assert "+08:00" in query
    assert response.status == 201


async def test_messages_never_echo_more_than_a_short_prefix(app_client: AppClient) -> None:
    """A long bad value is echoed, if at all, by a short prefix only."""
    long_value = "Q" * 5000
    response = await app_client.get(
        "/api/next-tracking-number",
        params=parcel(customer_slug=long_value, weight=long_value, customer_id=long_value),
    )
    assert response.status == 400
    text = (await response.read()).decode()
    assert "Q" * 50 not in text
    assert len(text) < 2000


# --- Batches -----------------------------------------------------------------------------------


async def test_batch_numbers_come_back_in_order_with_each_origin(app_client: AppClient) -> None:
    """A batch answers one number per parcel, in order, each with its own origin."""
    origins = ["MY", "MY", "ID", "SG", "SG", "SG", "MY", "th"]
    response = await app_client.post(
        BATCH_PATH, json=[parcel(origin_country_id=origin) for origin in origins]
    )
    assert response.status == 201
    minted = (await body_of(response))["tracking_numbers"]
    assert len(minted) == len(origins)
    numbers = [item["tracking_number"] for item in minted]
    assert [number[:2] for number in numbers] == [origin.upper() for origin in origins]
    assert all(re.fullmatch(NUMBER_PATTERN, number) for number in numbers)
    assert all(re.fullmatch(CREATED_AT_PATTERN, item["created_at"]) for item in minted)
    ids = [snowflake_of(number) for number in numbers]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


async def test_batch_weight_may_be_a_json_number(app_client: AppClient) -> None:
    """In a batch, weight may be a JSON number as well as a decimal string."""
    response = await app_client.post(
        BATCH_PATH, json=[{**SAMPLE_QUERY, "weight": 1.234}, {**SAMPLE_QUERY, "weight": 2}]
    )
    assert response.status == 201


async def test_a_rejected_batch_consumes_no_numbers(make_client: MakeClient) -> None:
    """A batch with one bad parcel is refused whole: the next number follows the last one."""
    clock = FakeClock()
    client = await make_client(generator=SnowflakeGenerator(TEST_WORKER_ID, clock=clock))
    first = await client.get("/api/next-tracking-number", params=SAMPLE_QUERY)
    before = snowflake_of((await body_of(first))["tracking_number"])

    parcels = [parcel(), parcel(), parcel(weight="0"), parcel()]
    response = await client.post(BATCH_PATH, json=parcels)
    assert response.status == 400
    assert "tracking_numbers" not in await body_of(response)

    after_response = await client.get("/api/next-tracking-number", params=SAMPLE_QUERY)
    after = snowflake_of((await body_of(after_response))["tracking_number"])
    assert after == before + 1
    assert decompose(after).sequence == decompose(before).sequence + 1


async def test_a_good_batch_takes_consecutive_ids(make_client: MakeClient) -> None:
    """A batch's IDs follow the previous number and precede the next one, with no gap."""
    clock = FakeClock()
    client = await make_client(generator=SnowflakeGenerator(TEST_WORKER_ID, clock=clock))
    first = await client.get("/api/next-tracking-number", params=SAMPLE_QUERY)
    before = snowflake_of((await body_of(first))["tracking_number"])
    response = await client.post(BATCH_PATH, json=[parcel()] * 5)
    ids = [
        snowflake_of(item["tracking_number"])
        for item in (await body_of(response))["tracking_numbers"]
    ]
    assert ids == list(range(before + 1, before + 6))


async def test_batch_errors_are_listed_by_index(app_client: AppClient) -> None:
    """Each invalid parcel is reported under its index, with its bad or missing fields."""
    parcels: list[object] = [
        parcel(),
        parcel(weight="-1", customer_slug="Not A Slug"),
        parcel(),
        without("customer_id"),
        "not an object",
    ]
    response = await app_client.post(BATCH_PATH, json=parcels)
    assert response.status == 400
    body = await body_of(response)
    assert isinstance(body["error"], str)
    errors = body["errors"]
    assert set(errors) == {"1", "3", "4"}
    assert set(errors["1"]) == {"weight", "customer_slug"}
    assert set(errors["3"]) == {"customer_id"}
    assert len(errors["4"]) == 1


@pytest.mark.parametrize(
    "raw",
    [b"", b"[", b"{'a': 1}", b"[1,]", b"NaN", b"\xff\xfe", b'[{"a": 1}] trailing'],
    ids=["empty", "unclosed", "single-quotes", "trailing-comma", "nan", "not-utf8", "trailing"],
)
async def test_malformed_json_answers_400(app_client: AppClient, raw: bytes) -> None:
    """A body that is not JSON answers 400."""
    response = await app_client.post(
        BATCH_PATH, data=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert isinstance((await body_of(response))["error"], str)


@pytest.mark.parametrize("payload", [{}, SAMPLE_QUERY, "parcels", 3, None, True])
async def test_a_body_that_is_not_an_array_answers_400(
    app_client: AppClient, payload: object
) -> None:
    """A JSON body that is not an array of parcels answers 400."""
    response = await app_client.post(BATCH_PATH, data=orjson.dumps(payload))
    assert response.status == 400
    assert isinstance((await body_of(response))["error"], str)


async def test_an_empty_batch_answers_400(app_client: AppClient) -> None:
    """An empty array answers 400: there is nothing to number."""
    response = await app_client.post(BATCH_PATH, json=[])
    assert response.status == 400
    assert isinstance((await body_of(response))["error"], str)


async def test_more_parcels_than_allowed_answer_413(make_client: MakeClient) -> None:
    """More parcels than the configured batch size answer 413; the size itself is fine."""
    client = await make_client(config=Config(max_batch=5))
    response = await client.post(BATCH_PATH, json=[parcel()] * 5)
    assert response.status == 201
    response = await client.post(BATCH_PATH, json=[parcel()] * 6)
    assert response.status == 413
    assert isinstance((await body_of(response))["error"], str)


async def test_an_oversize_body_answers_413(make_client: MakeClient) -> None:
    """A body larger than the batch size allows answers 413 without being parsed."""
    client = await make_client(config=Config(max_batch=5))
    padded = b"[" + b" " * 5 * BODY_BYTES_PER_PARCEL + orjson.dumps(parcel()) + b"]"
    response = await client.post(
        BATCH_PATH, data=padded, headers={"Content-Type": "application/json"}
    )
    assert response.status == 413
    assert isinstance((await body_of(response))["error"], str)


async def test_a_full_batch_of_valid_parcels_is_never_too_large(make_client: MakeClient) -> None:
    """A batch of max_batch valid parcels is accepted, however its JSON encodes the text."""
    client = await make_client(config=Config(max_batch=5))
    longest = parcel(customer_name="\u7269\u6d41" * 100, customer_slug="a" * 100)
    body = json.dumps([longest] * 5).encode()  # ensure_ascii: each CJK character is 6 bytes
    response = await client.post(
        BATCH_PATH, data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 201


@pytest.mark.parametrize("depth", [5, 50, 5_000])
async def test_deeply_nested_json_answers_400(app_client: AppClient, depth: int) -> None:
    """Nesting deeper than a flat parcel answers 400, however deep it goes."""
    nested = b"[" * depth + b"]" * depth
    body = b'[{"customer_name": ' + nested + b"}]"
    response = await app_client.post(
        BATCH_PATH, data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert isinstance((await body_of(response))["error"], str)


# --- Decoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        READABLE_NUMBER,
        READABLE_NUMBER.lower(),
        "MY-003Q-6PA0-0040-15",
        "my 003q 6pa0 0040 15",
        " MY003Q6PA0004015 ",
        "MYOO3Q6PAOOO4O15",
        "MY003Q6PA00040I5",
        "myoo3q6paooo4oi5",
    ],
)
async def test_decode_accepts_what_a_person_types(app_client: AppClient, typed: str) -> None:
    """Lower case, hyphens, spaces, O for 0 and I for 1 decode to the canonical number."""
    view = await decode(app_client, typed)
    assert view["tracking_number"] == READABLE_NUMBER
    assert view["valid"] is True
    assert view["origin_country_id"] == "MY"
    assert view["key_version"] == 0
    assert view["worker_id"] == 1
    assert view["sequence"] == 1
    assert view["snowflake_id"] == str(compose(1_000_000_000, 1, 1))
    assert re.fullmatch(CREATED_AT_PATTERN, view["minted_at"])


async def test_decode_of_a_minted_number_shows_its_parts(app_client: AppClient) -> None:
    """A freshly minted number decodes to this worker, a sequence and its ID as a string."""
    response = await app_client.get("/api/next-tracking-number", params=SAMPLE_QUERY)
    number = (await body_of(response))["tracking_number"]
    view = await decode(app_client, number)
    parts = decompose(int(view["snowflake_id"]))
    assert view["worker_id"] == parts.worker_id == TEST_WORKER_ID
    assert view["sequence"] == parts.sequence
    assert isinstance(view["snowflake_id"], str)


def _with_wrong_check(number: str) -> str:
    wrong = "0" if number[-1] != "0" else "1"
    return number[:-1] + wrong


def _with_neighbours_swapped(number: str, index: int) -> str:
    assert number[index] != number[index + 1]
    return number[:index] + number[index + 1] + number[index] + number[index + 2 :]


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        (_with_wrong_check(READABLE_NUMBER), "check"),
        (_with_neighbours_swapped(READABLE_NUMBER, 4), "check"),
        (READABLE_NUMBER[:-1], "length"),
        (READABLE_NUMBER + "7", "length"),
        ("MY", "length"),
        (render(compose(1_000_000_000, 1, 1), "XX"), "origin"),
        (render(compose(1_000_000_000, 1, 1), "ZZ"), "origin"),
        ("MY003Q6PA0004U15", "not allowed"),
        ("12003Q6PA0004015", "not allowed"),
        ("MY003Q6PA0004015%", "not allowed"),
        ("M" * 65, "too long"),
    ],
    ids=[
        "check",
        "swap",
        "short",
        "long",
        "prefix-only",
        "user-assigned-XX",
        "user-assigned-ZZ",
        "U-in-body",
        "digits-in-prefix",
        "percent",
        "over-64",
    ],
)
async def test_decode_refuses_a_bad_number_with_a_reason(
    app_client: AppClient, typed: str, reason: str
) -> None:
    """A mistyped or malformed number answers 400 with a reason for the tracking_number field."""
    response = await app_client.get(DECODE_PATH + typed.replace("%", "%25"))
    assert response.status == 400
    body = await body_of(response)
    assert isinstance(body["error"], str)
    assert reason in body["errors"]["tracking_number"]


# --- Waiting, faults, and every answer's headers -----------------------------------------------


async def test_an_exhausted_generator_answers_503_with_retry_after(
    make_client: MakeClient,
) -> None:
    """When the generator must wait, one number and batches answer 503 with Retry-After."""
    clock = FakeClock()
    generator = SnowflakeGenerator(TEST_WORKER_ID, clock=clock, max_lead_ms=0)
    client = await make_client(generator=generator)
    generator.next_ids(IDS_PER_MS)  # the stalled clock's millisecond is spent

    for path in SINGLE_PATHS:
        response = await client.get(path, params=SAMPLE_QUERY)
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert response.headers["Cache-Control"] == "no-store"
        body = await body_of(response)
        assert body["retry_after"] == 1
        assert isinstance(body["error"], str)
    response = await client.post(BATCH_PATH, json=[parcel()])
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"

    clock.ms += 1
    response = await client.get("/api/next-tracking-number", params=SAMPLE_QUERY)
    assert response.status == 201
    number = (await body_of(response))["tracking_number"]
    assert decompose(snowflake_of(number)).sequence == 0


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("GET", "/api/next-tracking-number", None),
        ("GET", "/next-tracking-number", None),
        ("POST", BATCH_PATH, [SAMPLE_QUERY]),
    ],
)
async def test_a_handler_fault_answers_json_500_naming_no_internals(
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    payload: object,
) -> None:
    """An unexpected exception answers a JSON 500 without its detail, and is logged."""
    client = await make_client(generator=FailingGenerator(TEST_WORKER_ID))
    with caplog.at_level(logging.ERROR):
        response = await client.request(
            method, path, params=SAMPLE_QUERY if payload is None else None, json=payload
        )
    assert response.status == 500
    assert response.headers["Cache-Control"] == "no-store"
    text = (await response.read()).decode()
    for internal in ("secret detail", "Traceback", "RuntimeError", "FailingGenerator"):
        assert internal not in text
    assert isinstance((await body_of(response))["error"], str)
    assert any(record.exc_info for record in caplog.records)


# Requests that between them reach every kind of answer the app gives, but /metrics, which
# answers Prometheus text.
EVERY_ANSWER: list[tuple[str, str, object, int]] = [
    ("GET", "/api/next-tracking-number?" + urlencode(SAMPLE_QUERY, quote_via=quote), None, 201),
    ("GET", "/next-tracking-number", None, 400),
    ("GET", "/api/next-tracking-number?weight=x", None, 400),
    ("POST", BATCH_PATH, [SAMPLE_QUERY], 201),
    ("POST", BATCH_PATH, [{}], 400),
    ("POST", BATCH_PATH, [SAMPLE_QUERY] * 1_001, 413),
    ("GET", DECODE_PATH + READABLE_NUMBER, None, 200),
    ("GET", DECODE_PATH + "nope", None, 400),
    ("GET", "/healthz", None, 200),
    ("GET", "/readyz", None, 200),
    ("GET", "/openapi.json", None, 200),
    ("GET", "/no/such/path", None, 404),
    ("GET", DECODE_PATH, None, 404),
    ("DELETE", "/api/next-tracking-number", None, 405),
    ("GET", BATCH_PATH, None, 405),
    ("PUT", "/healthz", None, 405),
]
every_answer = pytest.mark.parametrize(
    ("method", "path", "payload", "status"),
    EVERY_ANSWER,
    ids=[f"{status}-{method}-{path.split('?')[0]}" for method, path, _, status in EVERY_ANSWER],
)


@every_answer
async def test_every_answer_is_json_and_not_stored(
    app_client: AppClient, method: str, path: str, payload: object, status: int
) -> None:
    """Success or error, every answer is JSON with Cache-Control: no-store."""
    response = await app_client.request(method, URL(path, encoded=True), json=payload)
    assert response.status == status
    assert response.headers["Cache-Control"] == "no-store"
    body = await body_of(response)
    assert isinstance(body, dict)
    if status >= 400:
        assert isinstance(body["error"], str)
        assert body["error"]


async def test_405_names_the_allowed_methods(app_client: AppClient) -> None:
    """A method a route does not allow answers 405 with an Allow header."""
    response = await app_client.delete("/api/next-tracking-number")
    assert response.status == 405
    assert response.headers["Allow"] == "GET"
    assert "GET" in (await body_of(response))["error"]


async def test_head_probes_answer_without_a_body(app_client: AppClient) -> None:
    """HEAD /healthz and /readyz answer 200 with no body, for probes that only read the status."""
    for path in ("/healthz", "/readyz"):
        response = await app_client.head(path)
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert await response.read() == b""


async def test_readyz_names_the_worker_id(app_client: AppClient) -> None:
    """/readyz of an app without a supervisor answers ready, with its worker ID and clock."""
    response = await app_client.get("/readyz")
    body = await body_of(response)
    assert body["status"] == "ready"
    assert body["worker_ids"] == [TEST_WORKER_ID]
    assert body["clock"]["state"] == "ok"
