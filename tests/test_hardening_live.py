"""Hostile clients against a real node: limits, slowloris, too many connections, a burst.

Every node here is ``snowflake-tracker serve`` itself, one worker process on 127.0.0.1 and a
free port, started through tests/livenode.py and killed with its process group afterwards.
Each test checks the answer it provokes (a 4xx or 503 JSON, never another 5xx), that the node
still answers the sample request afterwards, and that the worker logged no error or traceback
for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from livenode import (
    HOST,
    SAMPLE_PARCEL,
    Answer,
    LiveNode,
    decode_answers,
    duplicates,
    find_libfaketime,
    wait_until,
)
from test_protection import (
    HOSTILE_REQUESTS,
    SAMPLE_REQUEST,
    Connection,
    RawAnswer,
    assert_refused_as_json,
    closed_by_peer,
    exchange_once,
    request_bytes,
)

from snowflake_tracker.web.app import BODY_BYTES_PER_PARCEL
from snowflake_tracker.web.protection import LOG_INTERVAL_S

pytestmark = [pytest.mark.live]

MAX_BATCH = 1000
HEADER_TIMEOUT_S = 2.0
# Far above what a loaded CI machine needs; a hang fails, a slow machine passes.
SLACK_S = 3.0


def json_request(body: bytes) -> bytes:
    """A batch POST carrying ``body``."""
    return (
        request_bytes(
            "/api/tracking-numbers",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            method=b"POST",
        )
        + body
    )


# The requests only the whole node can be asked: the body limit and the batch rules.
BODY_LIMIT = MAX_BATCH * BODY_BYTES_PER_PARCEL
LIVE_HOSTILE_REQUESTS: dict[str, tuple[bytes, int]] = {
    **HOSTILE_REQUESTS,
    "body over the limit": (json_request(b" " * (BODY_LIMIT + 1)), 413),
    "JSON nested 10,000 deep": (json_request(b"[" * 10_000 + b"]" * 10_000), 400),
    "a batch of max_batch + 1": (
        json_request(orjson.dumps([SAMPLE_PARCEL] * (MAX_BATCH + 1))),
        413,
    ),
}


def worker_pid(node: LiveNode) -> int:
    return node.workers()[0].pid


def rss_kib(pid: int) -> int:
    """The resident set size of process ``pid``, in KiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


@dataclass(frozen=True)
class LogMark:
    """Where a node's log stood: its stderr lines and its JSON events so far."""

    lines: int
    events: int


def log_mark(node: LiveNode) -> LogMark:
    return LogMark(len(node.stderr_text.splitlines()), len(node.events))


def events_since(node: LiveNode, mark: LogMark) -> list[dict[str, Any]]:
    return node.events[mark.events :]


def settle(node: LiveNode, quiet_s: float = 0.2, timeout: float = SLACK_S) -> None:
    """Wait until the node's stderr has been quiet for ``quiet_s``: its reader has caught up."""
    deadline = time.monotonic() + timeout
    seen = len(node.stderr_text)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = len(node.stderr_text)
        if now == seen:
            return
        seen = now


def assert_no_errors_logged(node: LiveNode, mark: LogMark) -> None:
    """Nothing the node wrote since ``mark`` is an error or carries a traceback."""
    settle(node)
    lines = node.stderr_text.splitlines()[mark.lines :]
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines[-20:])
    errors = [
        event
        for event in events_since(node, mark)
        if event.get("level") in ("error", "critical") or "exception" in event
    ]
    assert errors == []


async def assert_serves_the_sample(node: LiveNode) -> None:
    """A new connection is answered 201 for the sample request."""
    answer = await exchange_once(node.port, SAMPLE_REQUEST)
    assert answer.status == 201, answer


@pytest.fixture(scope="module")
def hardened_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A one-process node with a 2 s header timeout, shared by the module's tests."""
    node = LiveNode(
        tmp_path_factory.mktemp("hardened") / "state",
        processes=1,
        args=["--header-timeout", str(HEADER_TIMEOUT_S), "--max-batch", str(MAX_BATCH)],
    )
    with node:
        node.wait_ready()
        yield node


# --- Limits and hostile input ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LIVE_HOSTILE_REQUESTS))
async def test_a_hostile_request_gets_its_4xx_json_and_the_node_goes_on(
    hardened_node: LiveNode, name: str
) -> None:
    """Each hostile request is answered with its 4xx as JSON, logged quietly, and then the
    node serves the sample request on a new connection."""
    data, status = LIVE_HOSTILE_REQUESTS[name]
    mark = log_mark(hardened_node)
    answer = await exchange_once(hardened_node.port, data)
    assert_refused_as_json(answer, status)
    await assert_serves_the_sample(hardened_node)
    assert_no_errors_logged(hardened_node, mark)


async def test_parser_refusals_are_logged_as_throttled_info_lines(hardened_node: LiveNode) -> None:
    """A flood of 50 malformed requests leaves one info line, and the next line counts the
    rest, rather than an error with a traceback per request."""
    await asyncio.sleep(LOG_INTERVAL_S)
    mark = log_mark(hardened_node)
    for _ in range(50):
        answer = await exchange_once(hardened_node.port, b"GARBAGE\r\n\r\n")
        assert answer.status == 400
    await asyncio.sleep(LOG_INTERVAL_S)
    assert (await exchange_once(hardened_node.port, b"GARBAGE\r\n\r\n")).status == 400
    await assert_serves_the_sample(hardened_node)

    def refusals() -> list[dict[str, Any]]:
        events = events_since(hardened_node, mark)
        return [event for event in events if event.get("event") == "bad_request"]

    await wait_until(lambda: len(refusals()) >= 2, "the second refusal line", SLACK_S)
    lines = refusals()
    assert len(lines) == 2, lines
    assert {event["level"] for event in lines} == {"info"}
    assert lines[1].get("suppressed", 0) >= 40
    assert_no_errors_logged(hardened_node, mark)


# --- Slow clients ------------------------------------------------------------------------------

SLOWLORIS_CONNECTIONS = 50


async def slowloris(port: int, stop: asyncio.Event) -> tuple[float, bytes]:
    """Open a connection, send a partial head, then one header byte a second until cut off.

    Returns when the server closes the connection: after how long, and what it answered.
    """
    reader, writer = await asyncio.open_connection(HOST, port)
    started = time.monotonic()
    received = b""
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    chunk = await reader.read(4096)
                    received += chunk
                    if not chunk:
                        break
                    continue
            writer.write(b"X")
            await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return time.monotonic() - started, received


async def test_slowloris_connections_are_cut_off_and_others_are_served(
    hardened_node: LiveNode,
) -> None:
    """50 connections trickling header bytes are answered 408 and closed at the 2 s header
    timeout, while a normal client gets its 201s promptly throughout."""
    mark = log_mark(hardened_node)
    stop = asyncio.Event()
    deadline = HEADER_TIMEOUT_S + SLACK_S
    attackers = [
        asyncio.create_task(slowloris(hardened_node.port, stop))
        for _ in range(SLOWLORIS_CONNECTIONS)
    ]
    latencies: list[float] = []
    try:
        async with asyncio.timeout(deadline + SLACK_S):
            while not all(task.done() for task in attackers):
                started = time.monotonic()
                await assert_serves_the_sample(hardened_node)
                latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.1)
            results = [task.result() for task in attackers]
    finally:
        stop.set()
        await asyncio.gather(*attackers, return_exceptions=True)
    held = [seconds for seconds, _ in results]
    assert max(held) < deadline, held
    assert min(held) >= HEADER_TIMEOUT_S * 0.9, held
    for _, received in results:
        assert received.startswith(b"HTTP/1.1 408 "), received[:100]
        assert b"application/json" in received
    assert len(latencies) >= 10
    assert max(latencies) < 1.0, latencies
    assert_no_errors_logged(hardened_node, mark)


# --- Too many connections ----------------------------------------------------------------------

MAX_CONNECTIONS = 20
# Growth of the worker's resident memory allowed through a wave of refused connections.
RSS_GROWTH_LIMIT_KIB = 32 * 1024


@pytest.fixture
def capped_node(tmp_path: Path) -> Iterator[LiveNode]:
    """A one-process node taking at most 20 connections at once."""
    node = LiveNode(
        tmp_path / "state", processes=1, args=["--max-connections", str(MAX_CONNECTIONS)]
    )
    with node:
        node.wait_ready()
        yield node


async def answer_or_none(conn: Connection, timeout: float) -> RawAnswer | None:
    """The answer the server sends unasked within ``timeout``, or None if it sends none."""
    try:
        return await conn.answer(timeout)
    except TimeoutError:
        return None


async def test_connections_past_the_cap_are_refused_with_503_and_memory_stays_bounded(
    capped_node: LiveNode,
) -> None:
    """With --max-connections 20, of 40 idle connections 20 are answered 503 with Retry-After
    and closed; after a wave of 500 more the worker's RSS has barely grown, and once the
    connections go it serves normally."""
    node = capped_node
    mark = log_mark(node)
    pid = worker_pid(node)
    await assert_serves_the_sample(node)
    rss_before = rss_kib(pid)

    held: list[Connection] = []
    try:
        for _ in range(2 * MAX_CONNECTIONS):
            held.append(await Connection(node.port).__aenter__())
        answers = await asyncio.gather(*(answer_or_none(conn, 1.0) for conn in held))
        refused = [(c, a) for c, a in zip(held, answers, strict=True) if a is not None]
        assert len(refused) == MAX_CONNECTIONS
        for conn, answer in refused:
            assert_refused_as_json(answer, 503)
            assert answer.headers["retry-after"] == "1"
            assert await closed_by_peer(conn.reader)
        # At the cap, a newcomer is refused too, at once.
        answer = await exchange_once(node.port, SAMPLE_REQUEST)
        assert_refused_as_json(answer, 503)

        for _ in range(10):
            wave = [await Connection(node.port).__aenter__() for _ in range(50)]
            for conn in wave:
                assert (await conn.answer()).status == 503
                await conn.__aexit__()
        assert rss_kib(pid) - rss_before < RSS_GROWTH_LIMIT_KIB
    finally:
        for conn in held:
            await conn.__aexit__()

    async with asyncio.timeout(SLACK_S * 2):
        while (await exchange_once(node.port, SAMPLE_REQUEST)).status != 201:
            await asyncio.sleep(0.1)
    assert rss_kib(pid) - rss_before < RSS_GROWTH_LIMIT_KIB
    assert_no_errors_logged(node, mark)
    assert node.events_named("connection_refused")


# --- A burst past the lead bound ---------------------------------------------------------------

BURST_BATCHES = 20
# libfaketime's clock runs a thousand times slower than real time in the node, monotonic
# clock included: one generator millisecond lasts a real second.
SLOW_CLOCK = "+0 x0.001"


@pytest.mark.skipif(
    find_libfaketime() is None,
    reason="the faketime package (libfaketime) is not installed: the clock cannot be slowed",
)
async def test_a_burst_past_the_lead_bound_answers_503_with_retry_after(tmp_path: Path) -> None:
    """With --max-lead-ms 0, a burst of 1,000-parcel batches gets 201s until the millisecond's
    4,096 IDs are spent, then 503 with Retry-After; nothing else, and no number twice."""
    # Validating 1,000 parcels takes milliseconds on a real clock, so no burst of batches
    # spends a millisecond's IDs; the node's clock is slowed instead, which the generator sees
    # as the same thing: more asked for within one millisecond than it holds.
    library = find_libfaketime()
    assert library is not None
    env = {"LD_PRELOAD": library, "FAKETIME": SLOW_CLOCK, "FAKETIME_DONT_RESET": "1"}
    with LiveNode(tmp_path / "state", processes=1, args=["--max-lead-ms", "0"], env=env) as node:
        node.wait_ready()
        mark = log_mark(node)
        body = orjson.dumps([SAMPLE_PARCEL] * MAX_BATCH)
        url = node.url("/api/tracking-numbers")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

            async def post() -> tuple[int, dict[str, str], Any]:
                headers = {"Content-Type": "application/json"}
                async with session.post(url, data=body, headers=headers) as response:
                    return response.status, dict(response.headers), await response.json()

            results = await asyncio.gather(*(post() for _ in range(BURST_BATCHES)))
        statuses = sorted(status for status, _, _ in results)
        assert set(statuses) == {201, 503}, statuses
        numbers: list[Answer] = []
        for status, headers, payload in results:
            if status == 503:
                assert headers["Retry-After"] == "1"
                assert payload["retry_after"] == 1
                continue
            assert len(payload["tracking_numbers"]) == MAX_BATCH
            numbers += [Answer.from_body(item) for item in payload["tracking_numbers"]]
        decode_answers(numbers)
        assert duplicates(answer.tracking_number for answer in numbers) == []
        # One generator millisecond (a real second) on, the node numbers parcels again.
        async with asyncio.timeout(SLACK_S):
            while (await exchange_once(node.port, SAMPLE_REQUEST)).status != 201:
                await asyncio.sleep(0.1)
        assert_no_errors_logged(node, mark)
