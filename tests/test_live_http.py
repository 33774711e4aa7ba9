"""A real node under load over real sockets: every answer a new, well-formed tracking number.

The node is ``snowflake-tracker serve`` itself (one process, 127.0.0.1, a free port), driven by
64 aiohttp client tasks over keep-alive connections.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from conftest import NUMBER_PATTERN
from livenode import SAMPLE_PATH, LiveNode, decode_answers, duplicates, run_load

from snowflake_tracker.ids.codec import is_valid

pytestmark = [pytest.mark.live, pytest.mark.slow]

REQUESTS = 20_000
CONCURRENCY = 64
# Far above what the run takes on a laptop (a few seconds): a hang fails, a slow machine passes.
LOAD_TIMEOUT_S = 90.0


async def test_every_answer_under_load_is_a_new_well_formed_number(live_node: LiveNode) -> None:
    """20,000 requests from 64 keep-alive clients all answer 201 with distinct, valid numbers."""
    async with asyncio.timeout(LOAD_TIMEOUT_S):
        result = await run_load(
            [live_node.url(SAMPLE_PATH)], concurrency=CONCURRENCY, total=REQUESTS
        )

    assert result.failures == []
    assert len(result.answers) == REQUESTS
    numbers = [answer.tracking_number for answer in result.answers]
    assert all(re.fullmatch(NUMBER_PATTERN, number) for number in numbers)
    assert all(is_valid(number) for number in numbers)
    # Parses each with the codec (check symbol included), and ties created_at to its ID.
    decoded = decode_answers(result.answers)
    assert duplicates(numbers) == []
    assert len({item.snowflake_id for item in decoded}) == REQUESTS
    assert len({item.worker_id for item in decoded}) == 1
