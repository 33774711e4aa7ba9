"""The edge before the app: what a client may send and hold, and the JSON answers past it.

aiohttp leaves four gaps that a hostile or broken client can use; each is closed here, in the
low-level server that sits under the application (the app and its handlers are unchanged):

* **Parser errors.** aiohttp's HTTP parser refuses an over-long request line, an over-long
  header, too many headers or plain garbage before any middleware runs, answers ``text/plain``
  400 whatever the cause, and logs each at error level with a traceback ("Error handling
  request", logger ``aiohttp.server``): anyone can flood the logs. A middleware cannot catch
  these (https://github.com/aio-libs/aiohttp/issues/3287), and aiohttp quiets only a bad
  method on a connection's first request (https://github.com/aio-libs/aiohttp/pull/10055).
  :class:`ProtectedHandler` overrides ``RequestHandler.handle_error`` to answer 400, 414 or
  431 as JSON, with one throttled log line and no traceback.
* **Long and mis-encoded queries.** The seven parameters fit in under 3 KiB; a query over 4 KiB
  is refused with 414, and a percent-encoded query that is not UTF-8 with 400 (yarl
  would silently turn the bad bytes into U+FFFD, so ``customer_name`` would not be what the
  client sent).
* **Slow clients.** aiohttp has no timeout on reading a request's headers, so a client that
  trickles header bytes (slowloris) holds its connection for as long as it likes.
  :class:`ProtectedHandler` starts a timer at the first byte of a request head and answers
  408 and closes when the head is not complete in time. Idle keep-alive connections are
  closed by aiohttp's own ``keepalive_timeout``.
* **Too many connections.** aiohttp accepts every connection the kernel hands it. Past
  ``max_connections`` a worker answers 503 with ``Retry-After`` at once and closes, rather
  than hold connections without bound.

:func:`make_runner` builds an ``AppRunner`` with all of this; the worker serves through it.
What aiohttp does here was read from aiohttp 3.14 (``web_protocol.py``, ``web_server.py``,
``_http_parser.pyx``); tests/test_protection.py pins every behaviour relied on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote_to_bytes

import orjson
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong

from snowflake_tracker.web.errors import JSON, json_response

if TYPE_CHECKING:
    from snowflake_tracker.config import Config

log = logging.getLogger("snowflake_tracker.web")

RequestHandlerFn = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

# The request target (path and query) may be 8 KiB; longer is 414 URI Too Long.
MAX_TARGET_BYTES = 8 * 1024
# A header field, name and value together, may be 8 KiB less a CRLF (aiohttp's own default).
# It must differ from MAX_TARGET_BYTES: aiohttp raises the same LineTooLong for both, naming
# only the limit that was passed, and that is how the answer tells 414 from 431.
MAX_FIELD_BYTES = MAX_TARGET_BYTES - 2
# aiohttp's client sends 5, browsers about 15, proxies add a few; 64 leaves room for all.
MAX_HEADERS = 64
# The longest valid query is about 2.7 KiB: a 200-character name of 4-byte characters, each
# byte percent-encoded (2,400 bytes), and every other field at its longest. 4 KiB leaves room
# for the blanks a name may be padded with and for parameters the service ignores.
MAX_QUERY_BYTES = 4 * 1024

DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_KEEPALIVE_TIMEOUT_S = 15.0
# File descriptors a worker needs besides its client connections: the listening sockets, the
# lease and lock files, metrics files, and a refused connection's while it is answered.
FD_RESERVE = 64
# A refused connection stays open this long after its 503, reading and dropping whatever the
# client had already sent: closing a socket with unread input sends a reset, which can
# destroy the answer in the client's receive buffer before it is read.
REFUSAL_LINGER_S = 1.0
REFUSAL_RETRY_AFTER_S = 1
# At most one log line per kind of event per interval; the next says how many were left out.
LOG_INTERVAL_S = 1.0

_BAD_REQUEST = "The request could not be read as HTTP/1.1."
_ENCODED_NON_ASCII = re.compile(r"%[89a-fA-F][0-9a-fA-F]")


def _raw_answer(status: int, reason: str, payload: dict[str, Any], **headers: str) -> bytes:
    """A complete HTTP/1.1 answer that closes the connection, for writing to a transport."""
    body = orjson.dumps(payload)
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Type: {JSON}",
        "Cache-Control: no-store",
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
        "Connection: close",
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


_REFUSAL = _raw_answer(
    503,
    "Service Unavailable",
    {
        "error": "This server is at its connection limit; retry shortly.",
        "retry_after": REFUSAL_RETRY_AFTER_S,
    },
    Retry_After=str(REFUSAL_RETRY_AFTER_S),
)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one worker lets a client send and hold."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT_S
    max_target_bytes: int = MAX_TARGET_BYTES
    max_field_bytes: int = MAX_FIELD_BYTES
    max_headers: int = MAX_HEADERS
    max_query_bytes: int = MAX_QUERY_BYTES

    def __post_init__(self) -> None:
        if self.max_target_bytes == self.max_field_bytes:
            raise ValueError(
                "max_target_bytes and max_field_bytes must differ: aiohttp's LineTooLong "
                "names only the limit, which is how 414 is told from 431"
            )
        if self.max_connections < 1 or self.header_timeout <= 0 or self.keepalive_timeout <= 0:
            raise ValueError(f"limits must be positive: {self}")

    @classmethod
    def from_config(cls, config: Config) -> Limits:
        """The limits the node's settings ask for."""
        return cls(
            max_connections=config.max_connections,
            header_timeout=config.header_timeout,
            keepalive_timeout=config.keepalive_timeout,
        )


def fit_open_files(limits: Limits) -> Limits:
    """Make room for ``max_connections`` sockets: raise the soft open-file limit, or cap.

    Past the limit, ``accept()`` fails with EMFILE and asyncio stops accepting for a second
    and logs an error each time: refusing with a 503 is better. Many systems start processes
    at a soft limit of 1,024 with a far higher hard limit, which any process may raise to.
    """
    need = limits.max_connections + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return limits
    wanted = need if hard == resource.RLIM_INFINITY else min(need, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    except (ValueError, OSError):
        pass
    if soft >= need:
        return limits
    fitted = max(1, soft - FD_RESERVE)
    log.warning(
        "the open-file limit caps connections below --max-connections",
        extra={
            "event": "max_connections_capped",
            "max_connections": limits.max_connections,
            "open_file_limit": soft,
            "capped_to": fitted,
        },
    )
    return replace(limits, max_connections=fitted)


class LogThrottle:
    """Logs at most one line per event name per interval; the next line counts the rest.

    Every refused request would otherwise be a log line that an attacker writes for free.
    """

    __slots__ = ("_clock", "_interval", "_state")

    def __init__(
        self, interval: float = LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._state: dict[str, tuple[float, int]] = {}

    def log(
        self,
        level: int,
        message: str,
        event: str,
        exc_info: BaseException | None = None,
        **fields: Any,
    ) -> bool:
        """Log unless a line of this event went out within the interval; True if logged."""
        now = self._clock()
        last, skipped = self._state.get(event, (-math.inf, 0))
        if now - last < self._interval:
            self._state[event] = (last, skipped + 1)
            return False
        self._state[event] = (now, 0)
        if skipped:
            fields["suppressed"] = skipped
        log.log(level, message, extra={"event": event, **fields}, exc_info=exc_info)
        return True


def classify_parse_error(exc: HttpProcessingError, limits: Limits) -> tuple[int, str]:
    """The status and sentence for a request aiohttp's parser refused."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else None
        if limit == limits.max_target_bytes:
            return 414, f"The request target is longer than {limits.max_target_bytes} bytes."
        return 431, f"A request header is longer than {limits.max_field_bytes} bytes."
    # Both of aiohttp's parsers (C and Python) raise this, with this text, past max_headers.
    if isinstance(exc, BadHttpMessage) and exc.message.startswith("Too many headers"):
        return 431, f"The request has more than {limits.max_headers} headers."
    return 400, _BAD_REQUEST


def query_refusal(query: str, max_bytes: int) -> tuple[int, str] | None:
    """Why a raw (still percent-encoded) query string is refused, or None to let it through."""
    if len(query) > max_bytes:
        return 414, f"The query string is longer than {max_bytes} bytes."
    if _ENCODED_NON_ASCII.search(query) is not None:
        try:
            unquote_to_bytes(query).decode("utf-8")
        except UnicodeDecodeError:
            return 400, "The query string is not UTF-8 once percent-decoded."
    return None


def guard_queries(
    handler: RequestHandlerFn, limits: Limits, throttle: LogThrottle
) -> RequestHandlerFn:
    """Wrap ``handler`` so that an over-long or mis-encoded query never reaches the app.

    The wrapper is a plain function that returns the app's own coroutine: the common request
    costs a string search and no extra coroutine frame.
    """
    max_query = limits.max_query_bytes

    async def refuse(request: web.BaseRequest, status: int, text: str) -> web.StreamResponse:
        throttle.log(
            logging.INFO,
            "request refused",
            "request_refused",
            status=status,
            reason=text,
            peer=request.remote,
        )
        return json_response({"error": text}, status)

    def guarded(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        target = request.raw_path
        mark = target.find("?")
        if mark >= 0 and (
            len(target) - mark - 1 > max_query
            or _ENCODED_NON_ASCII.search(target, mark) is not None
        ):
            refusal = query_refusal(target[mark + 1 :], max_query)
            if refusal is not None:
                return refuse(request, *refusal)
        return handler(request)

    return guarded


class ProtectedHandler(web.RequestHandler):
    """aiohttp's per-connection protocol, with JSON parser errors, a header timeout and a cap.

    Relies on these internals of ``aiohttp.web_protocol.RequestHandler`` (3.14): ``_waiter``
    is a pending future exactly while the connection waits for its next request (aiohttp's
    own keep-alive timer reads it the same way), ``_request_count`` counts the requests the
    parser completed, and ``_force_close`` makes ``data_received`` ignore further input.
    """

    __slots__ = (
        "_admitted",
        "_gate",
        "_head_since",
        "_head_timer",
        "_limits",
        "_linger",
        "_refused_transport",
    )

    def __init__(self, manager: ProtectedServer, *, loop: asyncio.AbstractEventLoop, **kwargs: Any):
        super().__init__(manager, loop=loop, **kwargs)
        self._gate = manager
        self._limits = manager.limits
        self._admitted = False
        # When the current request head began (loop time), None while no head is being read.
        self._head_since: float | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._refused_transport: asyncio.Transport | None = None

    # -- the connection cap -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        gate = self._gate
        if gate.open_connections >= self._limits.max_connections:
            self._refuse(cast(asyncio.Transport, transport))
            return
        gate.open_connections += 1
        self._admitted = True
        super().connection_made(transport)

    def _refuse(self, transport: asyncio.Transport) -> None:
        """Answer 503 at once, then half-close and drop input until the client hangs up."""
        self._force_close = True
        self._refused_transport = transport
        self._gate.refused.add(self)
        transport.write(_REFUSAL)
        if transport.can_write_eof():
            transport.write_eof()
        self._linger = self._loop.call_later(REFUSAL_LINGER_S, transport.close)
        self._gate.throttle.log(
            logging.WARNING,
            "connection refused: this worker is at its connection limit",
            "connection_refused",
            max_connections=self._limits.max_connections,
            peer=_peer(transport),
        )

    def close_refused(self) -> None:
        """Close a refused connection now (the server is shutting down)."""
        if self._refused_transport is not None:
            self._refused_transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if not self._admitted:
            if self._linger is not None:
                self._linger.cancel()
            self._gate.refused.discard(self)
            self._refused_transport = None
            return
        self._admitted = False
        self._gate.open_connections -= 1
        super().connection_lost(exc)

    # -- the header-read timeout ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        if self._head_since is None and data:
            waiter = self._waiter
            # Idle (waiting for a request) or not yet past the first: these bytes start a head.
            if (waiter is not None and not waiter.done()) or self._request_count == 0:
                self._head_since = since = self._loop.time()
                if self._head_timer is None:
                    self._head_timer = self._loop.call_at(
                        since + self._limits.header_timeout, self._check_head
                    )
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            self._head_since = None

    def _check_head(self) -> None:
        """At a head's deadline: answer 408 and close if it is still not complete.

        One timer per connection, moved on rather than made anew for each request (as
        aiohttp's keep-alive timer does): a timer per request costs more than the check.
        """
        self._head_timer = None
        since = self._head_since
        transport = self.transport
        if since is None or transport is None or self._force_close:
            return
        deadline = since + self._limits.header_timeout
        if self._loop.time() < deadline:
            self._head_timer = self._loop.call_at(deadline, self._check_head)
            return
        timeout = self._limits.header_timeout
        transport.write(
            _raw_answer(
                408,
                "Request Timeout",
                {"error": f"The request headers did not arrive within {timeout:g} seconds."},
            )
        )
        self._gate.throttle.log(
            logging.INFO,
            "request headers timed out",
            "header_timeout",
            header_timeout_s=timeout,
            peer=_peer(transport),
        )
        self.force_close()

    # -- parser errors ----------------------------------------------------------------------

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The JSON answer for a request aiohttp could not hand to the app, or a fault in it.

        Replaces aiohttp's text/plain answer and its error-level traceback per request.
        """
        # As aiohttp: once part of an answer is written, no other can be sent.
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was partly sent; cannot send an error answer")
        throttle = self._gate.throttle
        if isinstance(exc, HttpProcessingError):
            status, text = classify_parse_error(exc, self._limits)
            throttle.log(
                logging.INFO,
                "request refused by the HTTP parser",
                "bad_request",
                status=status,
                reason=text,
                error=type(exc).__name__,
                detail=exc.message[:120],
                peer=request.remote,
            )
        elif exc is not None or status == 500:
            text = "Internal error; it has been logged."
            throttle.log(
                logging.ERROR,
                "unexpected fault while handling a request",
                "request_fault",
                exc_info=exc,
                status=status,
            )
        else:
            # aiohttp's other call: 504 when a handler let asyncio.TimeoutError escape.
            text = message or f"{HTTPStatus(status).phrase}."
        response = json_response({"error": text}, status)
        response.force_close()
        return response


def _peer(transport: asyncio.BaseTransport) -> str | None:
    peer = transport.get_extra_info("peername")
    return None if not peer else str(peer[0])


class ProtectedServer(web.Server):
    """aiohttp's low-level server, making :class:`ProtectedHandler` protocols."""

    def __init__(
        self,
        handler: RequestHandlerFn,
        *,
        limits: Limits,
        throttle: LogThrottle | None = None,
        request_factory: Any = None,
        handler_cancellation: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        **kwargs: Any,
    ) -> None:
        self.limits = limits
        self.throttle = throttle if throttle is not None else LogThrottle()
        self.open_connections = 0
        self.refused: set[ProtectedHandler] = set()
        self._protocol_loop = loop or asyncio.get_running_loop()
        self._protocol_kwargs = {
            **kwargs,
            "keepalive_timeout": limits.keepalive_timeout,
            "max_line_size": limits.max_target_bytes,
            "max_field_size": limits.max_field_bytes,
            "max_headers": limits.max_headers,
        }
        super().__init__(
            guard_queries(handler, limits, self.throttle),
            request_factory=request_factory,
            handler_cancellation=handler_cancellation,
            loop=self._protocol_loop,
            **self._protocol_kwargs,
        )

    def __call__(self) -> ProtectedHandler:
        return ProtectedHandler(self, loop=self._protocol_loop, **self._protocol_kwargs)

    def pre_shutdown(self) -> None:
        super().pre_shutdown()
        for handler in list(self.refused):
            handler.close_refused()


class ProtectedRunner(web.AppRunner):
    """An ``AppRunner`` whose server is a :class:`ProtectedServer`."""

    __slots__ = ("_limits", "_throttle")

    def __init__(
        self,
        app: web.Application,
        limits: Limits,
        *,
        throttle: LogThrottle | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits
        self._throttle = throttle

    async def _make_server(self) -> web.Server:
        # AppRunner runs the app's start-up and builds aiohttp's plain Server around the app's
        # handler; the protected one takes over that handler and those settings.
        plain = await super()._make_server()
        return ProtectedServer(
            plain.request_handler,
            limits=self._limits,
            throttle=self._throttle,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            **plain._kwargs,
        )


def make_runner(app: web.Application, limits: Limits, **kwargs: Any) -> ProtectedRunner:
    """An ``AppRunner`` for ``app`` that enforces ``limits``; ``kwargs`` as for AppRunner."""
    return ProtectedRunner(app, limits, **kwargs)
