"""The protected server, in process over real sockets: limits, timeouts and the connection cap.

Each test starts the real app behind :func:`make_runner` on 127.0.0.1 and a free port, talks
to it with raw bytes (no HTTP client would send most of these), and stops it afterwards. The
raw-socket helpers here are shared with tests/test_hardening_live.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

import orjson
import pytest
from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
)
from conftest import TEST_WORKER_ID
from livenode import HOST, SAMPLE_PARCEL, SAMPLE_PATH

from snowflake_tracker.config import Config
from snowflake_tracker.ids.generator import SnowflakeGenerator
from snowflake_tracker.validation import MAX_NAME_LENGTH, MAX_SLUG_LENGTH
from snowflake_tracker.web.app import create_app
from snowflake_tracker.web.protection import (
    FD_RESERVE,
    MAX_FIELD_BYTES,
    MAX_HEADERS,
    MAX_QUERY_BYTES,
    MAX_TARGET_BYTES,
    Limits,
    LogThrottle,
    ProtectedHandler,
    ProtectedRunner,
    ProtectedServer,
    classify_parse_error,
    fit_open_files,
    make_runner,
    query_refusal,
)

IO_TIMEOUT_S = 5.0

# --- Raw HTTP over a socket (shared with tests/test_hardening_live.py) -------------------------


class RawAnswer(NamedTuple):
    """One HTTP answer read off a socket; header names in lower case."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body, after checking the answer says it is JSON."""
        assert self.headers.get("content-type", "").startswith("application/json"), self
        return orjson.loads(self.body)


def request_bytes(target: str | bytes, *headers: str | bytes, method: bytes = b"GET") -> bytes:
    """A request head with a Host header, the given header lines, and no body."""
    raw_target = target.encode() if isinstance(target, str) else target
    lines = [method + b" " + raw_target + b" HTTP/1.1", b"Host: " + HOST.encode()]
    lines += [line.encode() if isinstance(line, str) else line for line in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


SAMPLE_REQUEST = request_bytes(SAMPLE_PATH)


async def read_answer(reader: asyncio.StreamReader) -> RawAnswer:
    """Read one answer: status line, headers and a Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawAnswer(int(status_line.split(" ", 2)[1]), headers, body)


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = IO_TIMEOUT_S) -> bool:
    """True when the other side closes the connection within ``timeout`` (no more bytes)."""
    try:
        async with asyncio.timeout(timeout):
            return await reader.read(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


class Connection:
    """A raw client connection; closed by the ``async with`` that opens it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def __aenter__(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await close_writer(self.writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, timeout: float = IO_TIMEOUT_S) -> RawAnswer:
        async with asyncio.timeout(timeout):
            return await read_answer(self.reader)

    async def exchange(self, data: bytes, timeout: float = IO_TIMEOUT_S) -> RawAnswer:
        await self.send(data)
        return await self.answer(timeout)


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def exchange_once(port: int, data: bytes) -> RawAnswer:
    """Send ``data`` on a new connection and read the answer; the connection is then closed."""
    async with Connection(port) as conn:
        return await conn.exchange(data)


# Hostile requests, each with the status it must be answered with. Shared with the live tests.
HOSTILE_REQUESTS: dict[str, tuple[bytes, int]] = {
    "9 KiB target": (request_bytes("/" + "a" * 9 * 1024), 414),
    "20 KiB query": (request_bytes(SAMPLE_PATH + "&pad=" + "a" * 20 * 1024), 414),
    "100 headers": (request_bytes("/healthz", *(f"X-Pad-{i}: y" for i in range(100))), 431),
    "10 KiB header": (request_bytes("/healthz", "X-Pad: " + "a" * 10 * 1024), 431),
    "malformed request line": (b"GARBAGE\r\n\r\n", 400),
    "unknown HTTP version": (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    "TLS on the HTTP port": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32, 400),
    "no Host header": (b"GET /healthz HTTP/1.1\r\n\r\n", 400),
    "raw non-UTF-8 byte in the query": (
        request_bytes(SAMPLE_PATH.replace("RedBox", "Red\xffBox").encode("latin-1")),
        400,
    ),
    "percent-encoded non-UTF-8 in the query": (
        request_bytes(SAMPLE_PATH.replace("RedBox", "Red%FFBox")),
        400,
    ),
    "raw NUL in the query": (request_bytes(SAMPLE_PATH.replace("RedBox", "Red\0Box")), 400),
    "percent-encoded NUL in the query": (
        request_bytes(SAMPLE_PATH.replace("RedBox", "Red%00Box")),
        400,
    ),
    "NUL in a header": (request_bytes("/healthz", b"X-Pad: a\0b"), 400),
    "conflicting Content-Length": (
        request_bytes(
            "/api/tracking-numbers", "Content-Length: 1", "Content-Length: 2", method=b"POST"
        )
        + b"ab",
        400,
    ),
    "bad chunk size": (
        request_bytes("/api/tracking-numbers", "Transfer-Encoding: chunked", method=b"POST")
        + b"zz\r\n",
        400,
    ),
}


# --- A protected server in this process --------------------------------------------------------


@dataclass
class Served:
    """A protected runner serving on 127.0.0.1."""

    runner: ProtectedRunner
    port: int

    @property
    def server(self) -> ProtectedServer:
        server = self.runner.server
        assert isinstance(server, ProtectedServer)
        return server


Serve = Callable[..., Awaitable[Served]]


def make_app() -> web.Application:
    return create_app(Config(), generator=SnowflakeGenerator(TEST_WORKER_ID))


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """A factory: ``await serve(limits)`` starts the app behind a protected runner."""
    runners: list[ProtectedRunner] = []

    async def start(limits: Limits | None = None, app: web.Application | None = None) -> Served:
        runner = make_runner(app or make_app(), limits or Limits(), access_log=None)
        runners.append(runner)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        return Served(runner, runner.addresses[0][1])

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def quiet_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Captures every log record; the test asserts none is an error or carries a traceback."""
    with caplog.at_level(logging.DEBUG):
        yield caplog


def assert_no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [f"{r.name}: {r.getMessage()}" for r in bad]


def assert_refused_as_json(answer: RawAnswer, status: int) -> None:
    assert answer.status == status, answer
    assert answer.headers.get("cache-control") == "no-store", answer
    body = answer.json()
    assert isinstance(body["error"], str) and body["error"], body


# --- Pure parts --------------------------------------------------------------------------------


def test_target_and_field_limits_must_differ() -> None:
    """Equal request-target and header-field limits are refused: 414 and 431 would blur."""
    with pytest.raises(ValueError, match="differ"):
        Limits(max_target_bytes=8192, max_field_bytes=8192)


def test_default_limits_are_the_documented_ones() -> None:
    """The defaults: 8 KiB target, 8 KiB header field, 64 headers, 4 KiB query."""
    limits = Limits()
    assert (limits.max_target_bytes, limits.max_headers, limits.max_query_bytes) == (
        MAX_TARGET_BYTES,
        MAX_HEADERS,
        MAX_QUERY_BYTES,
    )
    assert MAX_TARGET_BYTES == 8192 and 8 * 1024 - 2 <= MAX_FIELD_BYTES < 8192
    assert MAX_QUERY_BYTES == 4096


def test_the_node_settings_default_to_the_same_limits() -> None:
    """A node's default settings give the limits a protected runner defaults to."""
    assert Limits.from_config(Config()) == Limits()
    config = Config(max_connections=20, header_timeout=2.0, keepalive_timeout=5.0)
    limits = Limits.from_config(config)
    assert (limits.max_connections, limits.header_timeout, limits.keepalive_timeout) == (
        20,
        2.0,
        5.0,
    )


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (LineTooLong(b"/aaa...", MAX_TARGET_BYTES), 414),
        (LineTooLong(b"X-Pad...", MAX_FIELD_BYTES), 431),
        (BadHttpMessage("Too many headers received"), 431),
        (BadStatusLine("GET / HTTP/9.9"), 400),
        (BadHttpMethod("GARBAGE"), 400),
        (InvalidURLError("http://[::1"), 400),
        (InvalidHeader(b"X-A"), 400),
        (BadHttpMessage("Missing 'Host' header in request."), 400),
        (HttpProcessingError(code=400, message="other"), 400),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_parser_errors_map_to_their_status(exc: HttpProcessingError, status: int) -> None:
    """Each parser refusal has its status: 414 for the target, 431 for headers, else 400."""
    code, text = classify_parse_error(exc, Limits())
    assert code == status
    assert text.endswith(".") and "aaa" not in text


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("a=" + "b" * (MAX_QUERY_BYTES - 2), None),
        ("a=" + "b" * (MAX_QUERY_BYTES - 1), 414),
        ("name=Red%FFBox", 400),
        ("name=%C3", 400),
        ("name=%E9t%C3%A9", 400),
        ("name=%C3%A9t%C3%A9", None),
        ("created_at=2018-11-20T19:29:32%2B08:00&name=Red%20Box", None),
        ("name=%f0%9f%93%a6", None),
        ("name=%zz%8", None),
    ],
)
def test_query_refusal(query: str, status: int | None) -> None:
    """A query past the byte limit is 414; one whose escapes are not UTF-8 is 400."""
    refusal = query_refusal(query, MAX_QUERY_BYTES)
    assert (None if refusal is None else refusal[0]) == status


def test_log_throttle_logs_one_line_per_interval_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Within an interval only the first line of an event is logged; the next counts the rest."""
    now = [100.0]
    throttle = LogThrottle(interval=1.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="snowflake_tracker.web"):
        assert throttle.log(logging.INFO, "refused", "bad_request", status=400)
        assert not throttle.log(logging.INFO, "refused", "bad_request", status=400)
        assert not throttle.log(logging.INFO, "refused", "bad_request", status=414)
        assert throttle.log(logging.INFO, "timed out", "header_timeout")
        now[0] += 1.0
        assert throttle.log(logging.INFO, "refused", "bad_request", status=431)
    records = [(r.getMessage(), getattr(r, "suppressed", 0)) for r in caplog.records]
    assert records == [("refused", 0), ("timed out", 0), ("refused", 2)]
    assert [getattr(r, "event", None) for r in caplog.records] == [
        "bad_request",
        "header_timeout",
        "bad_request",
    ]


@pytest.fixture
def restore_open_files() -> Iterator[tuple[int, int]]:
    """The open-file limits, restored after the test."""
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield limits
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def test_open_file_limit_is_raised_for_the_connection_cap(
    restore_open_files: tuple[int, int],
) -> None:
    """A soft open-file limit below the cap is raised toward the hard limit to make room."""
    _, hard = restore_open_files
    if hard != resource.RLIM_INFINITY and hard < 2 * FD_RESERVE + 10:
        pytest.skip(f"the hard open-file limit ({hard}) leaves no room to test")
    wanted = 10 if hard == resource.RLIM_INFINITY else min(hard - FD_RESERVE, 4096)
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_RESERVE, hard))
    limits = Limits(max_connections=wanted)
    assert fit_open_files(limits) == limits
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= wanted + FD_RESERVE


def test_connection_cap_is_lowered_to_what_the_open_file_limit_allows(
    restore_open_files: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    """Past the hard open-file limit the cap is lowered, and a warning says so."""
    _, hard = restore_open_files
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard open-file limit to run into")
    with caplog.at_level(logging.WARNING, logger="snowflake_tracker.web"):
        fitted = fit_open_files(Limits(max_connections=hard + 1))
    assert fitted.max_connections == max(1, hard - FD_RESERVE)
    assert [getattr(r, "event", None) for r in caplog.records] == ["max_connections_capped"]


# --- Hostile requests over a socket ------------------------------------------------------------


@pytest.mark.parametrize("name", list(HOSTILE_REQUESTS))
async def test_a_hostile_request_is_answered_json_and_the_next_is_served(
    serve: Serve, quiet_log: pytest.LogCaptureFixture, name: str
) -> None:
    """A request past a limit or not HTTP at all gets its 4xx JSON answer, no error log line."""
    data, status = HOSTILE_REQUESTS[name]
    served = await serve()
    answer = await exchange_once(served.port, data)
    assert_refused_as_json(answer, status)
    sample = await exchange_once(served.port, SAMPLE_REQUEST)
    assert sample.status == 201, sample
    assert_no_error_logged(quiet_log)
    assert "aiohttp.server" not in {record.name for record in quiet_log.records}


async def test_a_parser_refusal_closes_its_connection(serve: Serve) -> None:
    """After a request the parser refused, the connection is closed: its framing is lost."""
    served = await serve()
    async with Connection(served.port) as conn:
        answer = await conn.exchange(HOSTILE_REQUESTS["10 KiB header"][0])
        assert answer.status == 431
        assert await closed_by_peer(conn.reader)


async def test_a_long_query_is_414_and_the_connection_goes_on(serve: Serve) -> None:
    """A query over 4 KiB but within the target limit is 414, and keep-alive continues."""
    served = await serve()
    async with Connection(served.port) as conn:
        answer = await conn.exchange(request_bytes(SAMPLE_PATH + "&pad=" + "a" * 5000))
        assert_refused_as_json(answer, 414)
        assert str(MAX_QUERY_BYTES) in answer.json()["error"]
        assert (await conn.exchange(SAMPLE_REQUEST)).status == 201


def longest_valid_query() -> str:
    """The sample parcel with every field at its longest valid spelling, percent-encoded."""
    parcel = {
        **SAMPLE_PARCEL,
        "weight": "1000.000",
        "created_at": "2018-11-20T19:29:32.123456789+08:00",
        "customer_name": "\U0001f4e6" * MAX_NAME_LENGTH,
        "customer_slug": "-".join(["a"] * 50),
    }
    assert len(parcel["customer_slug"]) <= MAX_SLUG_LENGTH
    return urlencode(parcel, quote_via=quote)


async def test_the_longest_valid_parcel_fits_the_query_limit(serve: Serve) -> None:
    """A parcel with every field at its longest is within the query limit and numbered."""
    query = longest_valid_query()
    assert len(query) > 2500
    assert query_refusal(query, MAX_QUERY_BYTES) is None
    served = await serve()
    answer = await exchange_once(
        served.port, request_bytes(SAMPLE_PATH.split("?")[0] + "?" + query)
    )
    assert answer.status == 201, answer


async def test_a_target_at_the_limit_reaches_the_app(serve: Serve) -> None:
    """A request target of exactly 8 KiB is parsed and routed (here: 404), not refused."""
    served = await serve()
    target = "/" + "a" * (MAX_TARGET_BYTES - 1)
    answer = await exchange_once(served.port, request_bytes(target))
    assert_refused_as_json(answer, 404)


async def test_pipelined_requests_are_all_answered(serve: Serve) -> None:
    """Two requests written at once are both answered, in order."""
    served = await serve()
    async with Connection(served.port) as conn:
        await conn.send(SAMPLE_REQUEST + request_bytes("/healthz"))
        assert (await conn.answer()).status == 201
        assert (await conn.answer()).status == 200


async def test_a_fault_outside_the_app_is_json_500_and_logged_once(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """A fault no middleware caught is a JSON 500 naming nothing, logged with its traceback."""

    async def broken(request: web.Request) -> web.StreamResponse:
        raise RuntimeError("secret detail")

    app = web.Application()
    app.router.add_get("/broken", broken)
    served = await serve(app=app)
    with caplog.at_level(logging.ERROR):
        async with Connection(served.port) as conn:
            first = await conn.exchange(request_bytes("/broken"))
            closed = await closed_by_peer(conn.reader)
        second = await exchange_once(served.port, request_bytes("/broken"))
    for answer in (first, second):
        assert_refused_as_json(answer, 500)
        assert b"secret" not in answer.body and b"RuntimeError" not in answer.body
    assert closed
    faults = [r for r in caplog.records if getattr(r, "event", None) == "request_fault"]
    assert len(faults) == 1 and faults[0].exc_info is not None


async def test_a_timeout_escaping_a_handler_is_json_504(
    serve: Serve, quiet_log: pytest.LogCaptureFixture
) -> None:
    """A TimeoutError no middleware caught is answered as aiohttp does, 504, but in JSON."""

    async def stalled(request: web.Request) -> web.StreamResponse:
        raise TimeoutError

    app = web.Application()
    app.router.add_get("/stalled", stalled)
    served = await serve(app=app)
    answer = await exchange_once(served.port, request_bytes("/stalled"))
    assert_refused_as_json(answer, 504)
    assert_no_error_logged(quiet_log)


# --- Slow clients ------------------------------------------------------------------------------

HEADER_TIMEOUT_S = 0.3
SLACK_S = 1.5


async def test_a_head_not_complete_in_time_is_answered_408_and_closed(
    serve: Serve, quiet_log: pytest.LogCaptureFixture
) -> None:
    """A client that trickles its headers is answered 408 and cut off at the header timeout."""
    served = await serve(Limits(header_timeout=HEADER_TIMEOUT_S))
    async with Connection(served.port) as conn:
        started = time.monotonic()
        await conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        trickle = asyncio.create_task(trickle_bytes(conn.writer, interval=0.05))
        try:
            answer = await conn.answer(HEADER_TIMEOUT_S + SLACK_S)
        finally:
            trickle.cancel()
        elapsed = time.monotonic() - started
        assert_refused_as_json(answer, 408)
        assert await closed_by_peer(conn.reader)
    assert HEADER_TIMEOUT_S * 0.9 <= elapsed < HEADER_TIMEOUT_S + SLACK_S
    assert await _drained(served.server)
    assert_no_error_logged(quiet_log)


async def trickle_bytes(writer: asyncio.StreamWriter, interval: float) -> None:
    """Send one header byte every ``interval`` seconds until cancelled or cut off."""
    with contextlib.suppress(OSError):
        while not writer.is_closing():
            writer.write(b"X")
            await writer.drain()
            await asyncio.sleep(interval)


async def _drained(server: ProtectedServer, timeout: float = IO_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while server.open_connections and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return server.open_connections == 0


async def test_a_head_sent_in_parts_within_the_timeout_is_served(serve: Serve) -> None:
    """A head split over several writes, all within the header timeout, is answered normally."""
    served = await serve(Limits(header_timeout=HEADER_TIMEOUT_S * 3))
    async with Connection(served.port) as conn:
        for part in (SAMPLE_REQUEST[:10], SAMPLE_REQUEST[10:200], SAMPLE_REQUEST[200:]):
            await conn.send(part)
            await asyncio.sleep(HEADER_TIMEOUT_S / 2)
        assert (await conn.answer()).status == 201
        # The timer stopped with the head: the idle connection outlives the header timeout.
        await asyncio.sleep(HEADER_TIMEOUT_S * 4)
        assert (await conn.exchange(SAMPLE_REQUEST)).status == 201


async def test_each_request_on_a_connection_gets_its_own_header_timeout(serve: Serve) -> None:
    """After an answer, the next head is timed from its own first byte."""
    served = await serve(Limits(header_timeout=HEADER_TIMEOUT_S))
    async with Connection(served.port) as conn:
        for _ in range(3):
            await asyncio.sleep(HEADER_TIMEOUT_S * 1.5)
            assert (await conn.exchange(SAMPLE_REQUEST)).status == 201
        await conn.send(b"GET /healthz HTTP/1.1\r\n")
        assert_refused_as_json(await conn.answer(), 408)


async def test_an_idle_connection_is_closed_at_the_keepalive_timeout(serve: Serve) -> None:
    """A connection that sends nothing after its answer is closed at the keep-alive timeout."""
    keepalive = 0.5
    served = await serve(Limits(header_timeout=0.2, keepalive_timeout=keepalive))
    async with Connection(served.port) as conn:
        assert (await conn.exchange(SAMPLE_REQUEST)).status == 201
        started = time.monotonic()
        assert await closed_by_peer(conn.reader, keepalive + SLACK_S)
        assert time.monotonic() - started >= keepalive * 0.9


async def test_a_slow_request_body_is_not_cut_by_the_header_timeout(serve: Serve) -> None:
    """The header timeout stops with the head: a body arriving slowly is still read."""
    served = await serve(Limits(header_timeout=HEADER_TIMEOUT_S))
    body = orjson.dumps([SAMPLE_PARCEL] * 3)
    head = request_bytes(
        "/api/tracking-numbers",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        method=b"POST",
    )
    async with Connection(served.port) as conn:
        await conn.send(head + body[:10])
        await asyncio.sleep(HEADER_TIMEOUT_S * 2)
        await conn.send(body[10:])
        answer = await conn.answer()
    assert answer.status == 201, answer
    assert len(answer.json()["tracking_numbers"]) == 3


# --- The connection cap ------------------------------------------------------------------------


async def test_connections_past_the_cap_get_503_and_are_closed(
    serve: Serve, quiet_log: pytest.LogCaptureFixture
) -> None:
    """Past max_connections a connection is answered 503 with Retry-After and closed."""
    served = await serve(Limits(max_connections=3))
    held = [await Connection(served.port).__aenter__() for _ in range(3)]
    try:
        for conn in held:
            assert (await conn.exchange(request_bytes("/healthz"))).status == 200
        assert served.server.open_connections == 3
        async with Connection(served.port) as extra:
            answer = await extra.answer()
            assert_refused_as_json(answer, 503)
            assert answer.headers["retry-after"] == "1"
            assert answer.json()["retry_after"] == 1
            assert await closed_by_peer(extra.reader)
        # The cap counts live connections: one closed frees a place.
        await held.pop().__aexit__()
        assert await _wait_for(lambda: served.server.open_connections == 2)
        async with Connection(served.port) as conn:
            assert (await conn.exchange(SAMPLE_REQUEST)).status == 201
    finally:
        for conn in held:
            await conn.__aexit__()
    assert await _drained(served.server)
    assert not served.server.refused
    assert [r for r in quiet_log.records if r.levelno >= logging.ERROR] == []


async def test_a_refused_client_that_already_sent_its_request_reads_the_503(
    serve: Serve,
) -> None:
    """A refused client whose request is already on the wire still reads the 503, not a reset."""
    served = await serve(Limits(max_connections=1))
    async with Connection(served.port) as first:
        assert (await first.exchange(SAMPLE_REQUEST)).status == 201
        for _ in range(20):
            async with Connection(served.port) as extra:
                await extra.send(SAMPLE_REQUEST * 50)
                answer = await extra.answer()
                assert answer.status == 503


async def test_shutdown_closes_refused_connections(serve: Serve) -> None:
    """Stopping the server closes connections it is still refusing; none is left open."""
    served = await serve(Limits(max_connections=1))
    async with Connection(served.port) as first, Connection(served.port) as extra:
        assert (await first.exchange(SAMPLE_REQUEST)).status == 201
        assert (await extra.answer()).status == 503
        assert await _wait_for(lambda: len(served.server.refused) == 1)
        server = served.server
        await served.runner.cleanup()
        assert not server.refused
        assert await closed_by_peer(first.reader)


async def _wait_for(condition: Callable[[], bool], timeout: float = IO_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return condition()


def test_every_connection_is_a_protected_handler() -> None:
    """The protected server makes ProtectedHandler protocols with the limits passed to aiohttp."""

    async def respond(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response()

    async def build() -> ProtectedHandler:
        return ProtectedServer(respond, limits=Limits(max_headers=7))()

    handler = asyncio.run(build())
    assert isinstance(handler, ProtectedHandler)
    assert handler.max_headers == 7
    assert handler.max_line_size == MAX_TARGET_BYTES
    assert handler.max_field_size == MAX_FIELD_BYTES
    assert handler.keepalive_timeout == Limits().keepalive_timeout
