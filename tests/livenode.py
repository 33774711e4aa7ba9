"""A live node for end-to-end tests: the real ``snowflake-tracker serve``, always cleaned up.

:class:`LiveNode` starts a node as a subprocess in a session of its own, reads its JSON log
lines from stderr on a thread, and knows the port (from ``node_start``), the worker processes
(from ``worker_spawn``: ``slot``, ``worker_id``, ``child_pid``) and when every worker is ready.
``stop()`` sends SIGTERM and waits; ``close()`` kills the whole process group whatever state
it is in, so a failing test never leaves a worker behind. :class:`NodeSet` owns several nodes
and closes them all.

A node can run with its wall clock moved (``faketime="-30s"``): libfaketime is preloaded into
the node and every process it forks, and the monotonic clock is left alone, which is what a
stepped wall clock looks like to a process. The library is preloaded through the environment
rather than by the ``faketime`` command, which would run the node as its child: the PID the
test signals would then be the wrapper's, not the supervisor's.

:func:`run_load` drives a node (or several) with an aiohttp client over keep-alive
connections and records every answer; :func:`decode_answers` checks that each 201 answer is a
well-formed tracking number and takes it apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any, NamedTuple

import aiohttp
import orjson

from snowflake_tracker.ids.codec import parse
from snowflake_tracker.ids.layout import decompose

HOST = "127.0.0.1"
SAMPLE_QUERY = (
    "origin_country_id=MY&destination_country_id=ID&weight=1.234"
    "&created_at=2018-11-20T19:29:32%2B08:00"
    "&customer_id=de619854-b59b-425e-9db4-943979e1bd49"
    "&customer_name=RedBox%20Logistics&customer_slug=redbox-logistics"
)
SAMPLE_PATH = "/api/next-tracking-number?" + SAMPLE_QUERY
SAMPLE_PARCEL = dict(urllib.parse.parse_qsl(SAMPLE_QUERY))
SAMPLE_ORIGIN = "MY"

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 5.0
_POLL_S = 0.05

# Settings a developer's shell or a CI pod may carry that would change what the node does.
_ISOLATED_ENV = ("PORT", "POD_INDEX", "KUBERNETES_SERVICE_HOST")
_ENV_PREFIX = "SNOWFLAKE_TRACKER_"

# Where Debian's libfaketime package puts the preload library (multiarch and older layouts).
_LIBFAKETIME_GLOBS = (
    "/usr/lib/*/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)

_TRACKING_NUMBER = re.compile(r"[A-Z0-9]{16}")


class NodeError(AssertionError):
    """The node did not do what the test waited for; the message carries its stderr tail."""


def find_libfaketime() -> str | None:
    """The libfaketime preload library, or None when the faketime package is not installed."""
    for pattern in _LIBFAKETIME_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


@dataclass(frozen=True, slots=True)
class WorkerSpawn:
    """One ``worker_spawn`` log line: a process forked into a slot with a worker ID."""

    slot: int
    worker_id: int
    pid: int


class LiveNode:
    """One ``snowflake-tracker serve`` process tree, started in a session of its own."""

    def __init__(
        self,
        state_dir: Path,
        *,
        processes: int = 2,
        node_id: int | None = 0,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        faketime: str | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.processes = processes
        command = [
            sys.executable,
            "-m",
            "snowflake_tracker",
            "serve",
            "--host",
            HOST,
            "--port",
            "0",
            "--state-dir",
            str(state_dir),
            "--processes",
            str(processes),
        ]
        if node_id is not None:
            command += ["--node-id", str(node_id)]
        self.command = [*command, *args]
        # Whatever the node puts under TMPDIR (its metrics directory) stays beside its state
        # directory, inside the test's own temporary tree, even when the node is killed.
        scratch = state_dir.with_name(state_dir.name + "-tmp")
        scratch.mkdir(parents=True, exist_ok=True)
        self.env = node_env({"TMPDIR": str(scratch), **(env or {})}, faketime)
        self.faketime = faketime
        self.proc: subprocess.Popen[bytes] | None = None
        self._lines: list[str] = []
        self._events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._eof = False

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> LiveNode:
        """Start the node; returns at once (see :meth:`wait_ready`)."""
        if self.proc is not None:
            raise RuntimeError("this node was already started")
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=self.env,
            start_new_session=True,
        )
        self._reader = threading.Thread(
            target=self._read_stderr, name=f"node-{self.proc.pid}-stderr", daemon=True
        )
        self._reader.start()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM the supervisor and wait for it to exit; return its exit status."""
        proc = self._started()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Wait for the supervisor to exit on its own; return its exit status."""
        proc = self._started()
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self._error(f"the node did not exit within {timeout} s") from None
        self._join_reader(timeout)
        return code

    def close(self) -> None:
        """Kill the whole process group, whatever state the node is in, and reap it."""
        proc = self.proc
        if proc is None:
            return
        # The group outlives its leader while any worker is alive, so it is killed even when
        # the supervisor has exited: an orphaned worker would keep its port and lock.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT_S)
        self._join_reader(STOP_TIMEOUT_S)
        if proc.stderr is not None:
            proc.stderr.close()

    def __enter__(self) -> LiveNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pid(self) -> int:
        """The supervisor's PID."""
        return self._started().pid

    @property
    def returncode(self) -> int | None:
        return self._started().poll()

    @property
    def stderr_text(self) -> str:
        """Everything the node wrote to stderr so far."""
        with self._cond:
            return "\n".join(self._lines)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines so far, in order (a copy)."""
        with self._cond:
            return list(self._events)

    # -- log lines --------------------------------------------------------------------------

    def wait_for_event(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = START_TIMEOUT_S,
    ) -> dict[str, Any]:
        """The first log event that satisfies ``predicate``, waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self._events:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.5))
        reason = "the node exited" if self._eof else f"nothing within {timeout} s"
        raise self._error(f"waited for {what}: {reason}")

    def events_named(self, name: str) -> list[dict[str, Any]]:
        """Every log event whose ``event`` field is ``name``, in order."""
        with self._cond:
            return [event for event in self._events if event.get("event") == name]

    def wait_listening(self, timeout: float = START_TIMEOUT_S) -> int:
        """The port from the ``node_start`` line."""
        event = self.wait_for_event(lambda e: e.get("event") == "node_start", "node_start", timeout)
        return int(event["port"])

    @property
    def port(self) -> int:
        return self.wait_listening()

    def spawns(self) -> list[WorkerSpawn]:
        """Every worker the supervisor forked, in order."""
        return [
            WorkerSpawn(int(e["slot"]), int(e["worker_id"]), int(e["child_pid"]))
            for e in self.events_named("worker_spawn")
        ]

    def workers(self) -> dict[int, WorkerSpawn]:
        """The latest process spawned into each slot."""
        return {spawn.slot: spawn for spawn in self.spawns()}

    def wait_spawn(
        self, slot: int, *, not_pid: int | None = None, timeout: float = START_TIMEOUT_S
    ) -> WorkerSpawn:
        """The spawn of a process into ``slot`` (other than ``not_pid``)."""
        event = self.wait_for_event(
            lambda e: (
                e.get("event") == "worker_spawn"
                and e.get("slot") == slot
                and e.get("child_pid") != not_pid
            ),
            f"a new process in slot {slot}",
            timeout,
        )
        return WorkerSpawn(int(event["slot"]), int(event["worker_id"]), int(event["child_pid"]))

    def wait_worker_started(self, pid: int, timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
        """The ``worker_start`` line of the worker process ``pid``: it holds its lease."""
        return self.wait_for_event(
            lambda e: e.get("event") == "worker_start" and e.get("pid") == pid,
            f"worker {pid} to start",
            timeout,
        )

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> Any:
        """Wait until every slot's worker has started and /readyz answers 200; its body."""
        deadline = time.monotonic() + timeout
        self.wait_listening(timeout)
        for slot in range(self.processes):
            self.wait_spawn(slot, timeout=max(deadline - time.monotonic(), 0.1))
            latest = self.workers()[slot]
            self.wait_worker_started(latest.pid, max(deadline - time.monotonic(), 0.1))
        while True:
            if self.returncode is not None:
                raise self._error("the node exited before /readyz answered 200")
            with contextlib.suppress(OSError):
                status, body, _ = self.get("/readyz", timeout=1.0)
                if status == 200:
                    return body
            if time.monotonic() >= deadline:
                raise self._error(f"/readyz did not answer 200 within {timeout} s")
            time.sleep(_POLL_S)

    # -- HTTP -------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def get(self, path: str, timeout: float = HTTP_TIMEOUT_S) -> tuple[int, Any, Mapping[str, str]]:
        """GET ``path`` on a fresh connection: (status, JSON body, headers), errors included."""
        try:
            with urllib.request.urlopen(self.url(path), timeout=timeout) as response:
                return response.status, orjson.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, orjson.loads(exc.read()), dict(exc.headers)

    # -- internals --------------------------------------------------------------------------

    def _started(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise RuntimeError("the node has not been started")
        return self.proc

    def _read_stderr(self) -> None:
        proc = self._started()
        assert proc.stderr is not None
        for raw in iter(proc.stderr.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            event: dict[str, Any] | None = None
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    parsed = json.loads(line)
                    event = parsed if isinstance(parsed, dict) else None
            with self._cond:
                self._lines.append(line)
                if event is not None:
                    self._events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _join_reader(self, timeout: float) -> None:
        if self._reader is not None:
            self._reader.join(timeout)

    def _error(self, message: str) -> NodeError:
        with self._cond:
            tail = "\n".join(self._lines[-30:])
        return NodeError(f"{message}; exit status {self.returncode}; stderr tail:\n{tail}")


def node_env(
    overrides: Mapping[str, str] | None = None, faketime: str | None = None
) -> dict[str, str]:
    """This environment without anything that would configure a node behind a test's flags."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_ENV_PREFIX) and key not in _ISOLATED_ENV
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides or {})
    if faketime is not None:
        library = find_libfaketime()
        if library is None:
            raise RuntimeError("faketime is not installed (Debian package 'faketime')")
        env["LD_PRELOAD"] = " ".join(filter(None, [library, env.get("LD_PRELOAD", "")]))
        env["FAKETIME"] = faketime
        # A stepped wall clock leaves CLOCK_MONOTONIC alone; so does this one.
        env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        env["FAKETIME_DONT_RESET"] = "1"
    return env


class NodeSet:
    """Nodes started for one test, each in its own state directory unless told otherwise."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[LiveNode] = []

    def start(
        self,
        *,
        state_dir: Path | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> LiveNode:
        """Start a node (see :class:`LiveNode`); it is closed with the set."""
        if state_dir is None:
            state_dir = self.root / (name or f"node-{len(self.nodes)}")
        node = LiveNode(state_dir, **kwargs)
        self.nodes.append(node)
        return node.start()

    def close(self) -> None:
        """Kill every node's process group."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> NodeSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- load ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """A 201 answer and when (``time.monotonic``) its request was started and completed."""

    tracking_number: str
    created_at: str
    target: int
    started: float
    finished: float

    @classmethod
    def from_body(cls, body: Mapping[str, Any], target: int = 0) -> Answer:
        """An answer read from a 201 body (or one item of a batch), with no timing."""
        return cls(body["tracking_number"], body["created_at"], target, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class Failure:
    """A request that got no HTTP answer, or an answer other than 201."""

    error: str
    target: int
    started: float
    finished: float
    # When the request line and headers were first written to the socket; None if never.
    sent_at: float | None
    status: int | None = None


@dataclass(slots=True)
class LoadResult:
    """What a load run saw."""

    answers: list[Answer] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    @property
    def elapsed(self) -> float:
        return self.finished - self.started

    @property
    def total(self) -> int:
        return len(self.answers) + len(self.failures)


@dataclass(slots=True)
class _Attempts:
    """Filled in by the client's tracing: how often, and first when, a request was written."""

    sent_at: float | None = None
    count: int = 0


def _trace_sends() -> aiohttp.TraceConfig:
    async def on_sent(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: object) -> None:
        attempts = ctx.trace_request_ctx
        if attempts.sent_at is None:
            attempts.sent_at = time.monotonic()
        attempts.count += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(on_sent)
    return trace


def _make_session(timeout: float) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=timeout),
        trace_configs=[_trace_sends()],
    )
    # aiohttp resends a GET once, over a new connection, when a kept-alive connection drops
    # (RFC 9112, 9.3.1 "Retrying Requests"): that would hide the very failures counted here.
    # aiohttp's own test client turns it off the same way (aiohttp/test_utils.py); the
    # attempt count above still catches a resend should this attribute ever stop working.
    session._retry_connection = False
    return session


async def run_load(
    urls: Sequence[str],
    *,
    concurrency: int,
    total: int | None = None,
    stop: asyncio.Event | None = None,
    reconnect_every: int = 0,
    ramp_up: bool = False,
    result: LoadResult | None = None,
    request_timeout: float = 10.0,
) -> LoadResult:
    """GET ``urls`` from ``concurrency`` tasks until ``total`` requests are made or ``stop``.

    Tasks are spread over the URLs round-robin; each URL has its own session of keep-alive
    connections, one per task. With ``reconnect_every`` a task asks the server to close its
    connection after that many requests, so the kernel hands the next one to whichever
    worker accepts first and every worker of a node gets connections. A failed request is
    recorded and the task goes on (over a new connection); nothing is retried. Pass
    ``result`` to watch the answers arrive while the load runs.
    """
    if total is None and stop is None:
        raise ValueError("run_load needs a total, a stop event, or both")
    out = result if result is not None else LoadResult()
    budget = [total if total is not None else -1]
    sessions = [_make_session(request_timeout) for _ in urls]
    close_header = {"Connection": "close"}

    def take() -> bool:
        if (stop is not None and stop.is_set()) or budget[0] == 0:
            return False
        if budget[0] > 0:
            budget[0] -= 1
        return True

    started_in_turn = [asyncio.Event() for _ in range(concurrency + 1)]
    started_in_turn[0].set()

    async def worker(index: int) -> None:
        target = index % len(urls)
        session, url = sessions[target], urls[target]
        if ramp_up:
            await started_in_turn[index].wait()
        count = 0
        while take():
            if count == 1:
                started_in_turn[index + 1].set()
            count += 1
            headers = close_header if reconnect_every and count % reconnect_every == 0 else None
            attempts = _Attempts()
            started = time.monotonic()
            status: int | None = None
            error = ""
            try:
                async with session.get(url, headers=headers, trace_request_ctx=attempts) as resp:
                    body = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            finished = time.monotonic()
            if attempts.count > 1:
                out.failures.append(
                    Failure("the client resent the request", target, started, finished, None)
                )
            if status == 201:
                data = orjson.loads(body)
                out.answers.append(
                    Answer(data["tracking_number"], data["created_at"], target, started, finished)
                )
                continue
            if status is not None:
                error = f"HTTP {status}: {body[:200]!r}"
            out.failures.append(Failure(error, target, started, finished, attempts.sent_at, status))

    out.started = time.monotonic()
    try:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        out.finished = time.monotonic()
        for session in sessions:
            await session.close()
    return out


class SlowBatch:
    """A batch POST written in two parts over a raw connection.

    After the first part (the headers and half the body) the server has started the handler,
    which is waiting for the rest: the request is in flight for as long as the test likes.
    """

    def __init__(self, port: int, parcels: int) -> None:
        self.port = port
        self.parcels = parcels
        self._body = orjson.dumps([SAMPLE_PARCEL] * parcels)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send_first_part(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(HOST, self.port)
        head = (
            f"POST /api/tracking-numbers HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(self._body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        self._writer.write(head + self._body[: len(self._body) // 2])
        await self._writer.drain()

    async def finish(self, timeout: float = HTTP_TIMEOUT_S) -> tuple[int | None, Any]:
        """Send the rest and read the answer: (status, JSON body), or (None, the error)."""
        assert self._reader is not None and self._writer is not None
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(self._body[len(self._body) // 2 :])
                await self._writer.drain()
                raw = await self._reader.read()
        except (OSError, TimeoutError) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        finally:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        head, _, body = raw.partition(b"\r\n\r\n")
        if not head:
            return None, "the connection closed without an answer"
        status = int(head.split(b" ", 2)[1])
        return status, orjson.loads(body) if body else None


# -- checking answers -----------------------------------------------------------------------


class Decoded(NamedTuple):
    """A tracking number taken apart."""

    tracking_number: str
    snowflake_id: int
    worker_id: int
    unix_ms: int


def decode_answers(answers: Iterable[Answer], origin: str = SAMPLE_ORIGIN) -> list[Decoded]:
    """Decode every answer, asserting it is well formed and its ``created_at`` is its mint time."""
    decoded: list[Decoded] = []
    for answer in answers:
        number = answer.tracking_number
        assert _TRACKING_NUMBER.fullmatch(number), f"malformed tracking number {number!r}"
        parsed = parse(number)
        assert parsed.text == number, f"{number!r} is not in canonical form"
        assert parsed.origin == origin, f"{number!r} does not start with {origin}"
        assert parsed.key_version == 0, f"{number!r} has key version {parsed.key_version}"
        parts = decompose(parsed.snowflake_id)
        minted = parts.minted_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert answer.created_at == minted, (
            f"{number!r} says created_at {answer.created_at}, but was minted at {minted}"
        )
        decoded.append(Decoded(number, parsed.snowflake_id, parts.worker_id, parts.unix_ms))
    return decoded


def duplicates(numbers: Iterable[str]) -> list[str]:
    """The numbers that occur more than once (empty when all are unique)."""
    seen: set[str] = set()
    repeated: list[str] = []
    for number in numbers:
        if number in seen:
            repeated.append(number)
        seen.add(number)
    return repeated


async def wait_until(condition: Callable[[], bool], what: str, timeout: float) -> None:
    """Poll ``condition`` on the event loop (letting a running load go on) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        await asyncio.sleep(_POLL_S)
