"""Decoding numbers made under a key, and refusing numbers no worker could have minted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import SAMPLE_QUERY

from snowflake_tracker.config import Config
from snowflake_tracker.ids.codec import render
from snowflake_tracker.ids.generator import SnowflakeGenerator
from snowflake_tracker.ids.layout import EPOCH_MS, MAX_TIMESTAMP, compose, decompose
from snowflake_tracker.secrets import KeyRing, parse_secret_text
from snowflake_tracker.web.app import create_app

AppClient = TestClient[web.Request, web.Application]
Factory = Callable[[web.Application], Awaitable[AppClient]]
KEYS = parse_secret_text("1 correct-horse-battery-staple-1\n2 correct-horse-battery-staple-2\n")


async def keyed_client(aiohttp_client: Factory, keys: KeyRing, reveal: bool) -> AppClient:
    app = create_app(
        Config(reveal_keyed=reveal),
        generator=SnowflakeGenerator(9),
        keyring=keys,
        decode_key=keys.decode,
    )
    return await aiohttp_client(app)


async def mint(client: AppClient) -> str:
    response = await client.get("/api/next-tracking-number", params=SAMPLE_QUERY)
    assert response.status == 201
    number: str = (await response.json())["tracking_number"]
    return number


@pytest.mark.parametrize("reveal", [False, True])
async def test_a_keyed_number_hides_its_time_unless_the_listener_reveals_it(
    aiohttp_client: Factory, reveal: bool
) -> None:
    """A keyed number decodes as valid under its version; time, worker and sequence are shown
    only where --reveal-keyed allows it."""
    client = await keyed_client(aiohttp_client, KEYS, reveal)
    number = await mint(client)
    response = await client.get(f"/api/tracking-numbers/{number}")
    assert response.status == 200
    answer = await response.json()
    assert answer["valid"] is True
    assert answer["key_version"] == 2
    assert ("worker_id" in answer) is reveal
    assert ("minted_at" in answer) is reveal
    if reveal:
        assert answer["worker_id"] == 9


async def test_consecutive_keyed_numbers_share_no_visible_sequence(aiohttp_client: Factory) -> None:
    """Two numbers minted one after the other differ well before their last symbols."""
    client = await keyed_client(aiohttp_client, KEYS, reveal=False)
    first, second = await mint(client), await mint(client)
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b)
    assert shared < 8, (first, second)


async def test_a_number_claiming_a_future_mint_time_is_refused(aiohttp_client: Factory) -> None:
    """A well-formed number whose time no worker has reached is not one this service issued."""
    client = await keyed_client(aiohttp_client, KEYS, reveal=True)
    forged = render(compose(MAX_TIMESTAMP - 1, 3, 7), "MY")
    response = await client.get(f"/api/tracking-numbers/{forged}")
    assert response.status == 400
    assert "not a tracking number this service issued" in (await response.json())["error"]
    genuine = render(compose(10, 3, 7), "MY")
    assert (await client.get(f"/api/tracking-numbers/{genuine}")).status == 200


async def test_most_made_up_keyed_numbers_are_refused(aiohttp_client: Factory) -> None:
    """Under a key, most arbitrary bodies decode to a future time and are refused."""
    client = await keyed_client(aiohttp_client, KEYS, reveal=False)
    refused = 0
    for value in range(0, 1 << 63, (1 << 63) // 50):
        number = render(value, "MY", 2)
        response = await client.get(f"/api/tracking-numbers/{number}")
        assert response.status in (200, 400)
        refused += response.status == 400
        if response.status == 200:
            ms = decompose(KEYS.decode(2, value)).timestamp + EPOCH_MS
            assert ms < EPOCH_MS + (MAX_TIMESTAMP // 10)
    assert refused >= 40
