"""One worker process: claim the worker ID, keep its lease durable, serve until told to stop.

The order at start matters for uniqueness (DESIGN §4):

1. take the exclusive lock on the worker ID (a second live holder refuses to start);
2. read the stored lease L and anchor the clock at ``max(wall clock, L)``;
3. durably write a new lease reaching ``lease_seconds`` ahead, *then* start issuing IDs,
   never past the lease the disk holds;
4. renew the lease in the background, a third of the way through each period. A failed
   write leaves the generator's ceiling where it was: once time reaches it, requests get
   503 with ``Retry-After`` and ``/readyz`` says why, rather than an ID the disk never saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from snowflake_tracker.config import Config
from snowflake_tracker.ids.generator import AnchoredClock, SnowflakeGenerator
from snowflake_tracker.ids.layout import years_left
from snowflake_tracker.lease import LeaseError, WorkerLease
from snowflake_tracker.secrets import load_keys
from snowflake_tracker.worker_id import NodeIdentity

if TYPE_CHECKING:
    from snowflake_tracker.web.metrics import Metrics

log = logging.getLogger("snowflake_tracker.worker")

# A wall clock that moves against the monotonic one by more than this between two checks has
# been stepped (by an operator, or NTP in step mode); smaller drift is slewing, not a step.
CLOCK_STEP_THRESHOLD_MS = 1_000
# aiohttp's default access log line plus the time taken (%Tf, seconds). With JSON logs each
# atom is also a field of its own (logs.py), e.g. "request_time_frac" and "response_status".
ACCESS_LOG_FORMAT = '%a %t "%r" %s %b %Tf "%{Referer}i" "%{User-Agent}i"'


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What the supervisor tells a worker: its slot, its worker ID, and the node's plan.

    ``metrics_dir`` is the node's shared metrics directory (None: metrics off).
    """

    slot: int
    worker_id: int
    node: NodeIdentity | None
    node_worker_ids: tuple[int, ...]
    metrics_dir: Path | None = None


@dataclass(slots=True)
class LeaseKeeper:
    """Renews one worker's lease and tracks the health of its clock and lease."""

    lease: WorkerLease
    generator: SnowflakeGenerator
    clock: AnchoredClock
    lease_ms: int
    renewals: int = 0
    failures: int = 0
    last_error: str = ""
    clock_steps_back: int = 0
    clock_step_back_ms: int = 0
    _last_skew_ms: int = field(default=0)
    _failing_since_ms: int | None = field(default=None)
    _expired: bool = field(default=False)

    def renew_now(self) -> None:
        """Write a lease reaching ``lease_ms`` past the clock, then let the generator use it."""
        now = self.clock()
        until = now + self.lease_ms
        try:
            self.lease.write(until)
        except OSError as exc:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc.strerror or exc}"
            if self._failing_since_ms is None:
                self._failing_since_ms = now
            log.error(
                "lease write failed",
                extra={
                    "event": "lease_failed",
                    "worker_id": self.generator.worker_id,
                    "error": self.last_error,
                    "remaining_ms": self.remaining_ms,
                },
            )
            if self.remaining_ms <= 0 and not self._expired:
                # Once, not at every failed retry: from now on requests are answered 503.
                self._expired = True
                log.error(
                    "lease expired: no numbers are issued until it is written again",
                    extra={"event": "lease_expired", "worker_id": self.generator.worker_id},
                )
            return
        self.generator.extend_lease(until)
        self.renewals += 1
        self.last_error = ""
        if self._failing_since_ms is not None:
            log.warning(
                "lease written again after failures",
                extra={
                    "event": "lease_recovered",
                    "worker_id": self.generator.worker_id,
                    "failed_for_ms": now - self._failing_since_ms,
                    "expired": self._expired,
                },
            )
            self._failing_since_ms = None
            self._expired = False

    def check_clock(self) -> None:
        """Notice a wall clock stepped backwards (the IDs are safe; the operator should know)."""
        skew = self.clock.skew_ms
        step = skew - self._last_skew_ms
        if step > CLOCK_STEP_THRESHOLD_MS:
            self.clock_steps_back += 1
            self.clock_step_back_ms = step
            log.warning(
                "wall clock stepped backwards",
                extra={
                    "event": "clock_step_back",
                    "step_ms": step,
                    "ahead_of_wall_clock_ms": skew,
                    "worker_id": self.generator.worker_id,
                },
            )
        elif -step > CLOCK_STEP_THRESHOLD_MS:
            # Harmless for uniqueness, but the numbers' mint times now lag the wall clock by
            # this much until the worker restarts (the clock is anchored once, at start).
            log.info(
                "wall clock stepped forwards",
                extra={
                    "event": "clock_step_forward",
                    "step_ms": -step,
                    "ahead_of_wall_clock_ms": skew,
                    "worker_id": self.generator.worker_id,
                },
            )
        self._last_skew_ms = skew

    @property
    def remaining_ms(self) -> int:
        """How long until the generator reaches the durable lease."""
        return self.generator.lease_until_ms - self.clock()

    @property
    def ahead_of_wall_clock_ms(self) -> int:
        """How far the ID clock runs ahead of the wall clock (negative: behind)."""
        return self.clock.skew_ms

    def healthy(self) -> bool:
        return self.remaining_ms > 0 and not self.last_error

    def status(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "lease": {
                "state": "ok" if self.healthy() else "failing",
                "until_ms": self.generator.lease_until_ms,
                "remaining_ms": self.generator.lease_until_ms - now,
                "renewals": self.renewals,
                "failures": self.failures,
                **({"error": self.last_error} if self.last_error else {}),
            },
            "clock": {
                "state": "ok",
                "now_ms": now,
                "ahead_of_wall_clock_ms": self.ahead_of_wall_clock_ms,
                "steps_back_seen": self.clock_steps_back,
                "id_years_left": round(years_left(now), 2),
            },
        }


async def keep_lease(keeper: LeaseKeeper, period_s: float) -> None:
    """Renew the lease every ``period_s`` (a third of its length), off the event loop."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(period_s)
        keeper.check_clock()
        # fsync can take milliseconds: it runs on a thread so requests keep flowing.
        await loop.run_in_executor(None, keeper.renew_now)


def claim(config: Config, spec: WorkerSpec) -> LeaseKeeper:
    """Lock the worker ID, anchor the clock past the stored lease, write the first lease."""
    lease = WorkerLease(config.state_dir, spec.worker_id)
    stored = lease.acquire()
    clock = AnchoredClock(not_before_ms=stored)
    generator = SnowflakeGenerator(
        spec.worker_id,
        clock=clock,
        max_lead_ms=config.max_lead_ms,
        not_before_ms=stored,
        lease_until_ms=max(stored, clock()),
    )
    keeper = LeaseKeeper(lease, generator, clock, int(config.lease_seconds * 1000))
    # A clock already behind the stored lease at start (a restart after a step back) is the
    # baseline, not a step seen while running.
    keeper._last_skew_ms = clock.skew_ms
    keeper.renew_now()
    if keeper.last_error:
        lease.release()
        raise OSError(f"cannot write the lease file {lease.path}: {keeper.last_error}")
    log.info(
        "lease claimed",
        extra={
            "event": "lease_claimed",
            "worker_id": spec.worker_id,
            "stored_lease_ms": stored,
            "lease_until_ms": generator.lease_until_ms,
            # Positive after a restart with the wall clock behind the stored lease.
            "ahead_of_wall_clock_ms": keeper.ahead_of_wall_clock_ms,
        },
    )
    return keeper


def make_readiness(config: Config, spec: WorkerSpec, keeper: LeaseKeeper, fingerprint: str) -> Any:
    """The /readyz view of this worker: node, worker IDs, lease, clock, key."""
    node = spec.node

    def readiness() -> tuple[bool, dict[str, Any]]:
        status = keeper.status()
        return keeper.healthy(), {
            "node_id": None if node is None else node.node_id,
            "node_id_source": "--worker-id" if node is None else node.source,
            "node_bits": config.node_bits,
            "worker_ids": list(spec.node_worker_ids),
            "worker_id": spec.worker_id,
            "slot": spec.slot,
            "pid": os.getpid(),
            "key_fingerprint": fingerprint,
            **status,
        }

    return readiness


def make_worker_metrics(
    spec: WorkerSpec, keeper: LeaseKeeper, key_version: int, fingerprint: str
) -> Metrics:
    """This worker's metrics: into the node's shared directory, else this process's own."""
    # Imported here, after the supervisor set PROMETHEUS_MULTIPROC_DIR (web/metrics.py).
    from snowflake_tracker.web.metrics import Metrics, name_metric_files, slot_files_name

    if spec.metrics_dir is not None:
        name_metric_files(slot_files_name(spec.slot))
    metrics = Metrics(multiprocess_dir=spec.metrics_dir)
    metrics.describe_worker(
        spec.worker_id, spec.slot, None if spec.node is None else spec.node.node_id
    )
    metrics.describe_key(key_version, fingerprint)
    metrics.watch_lease(keeper, spec.worker_id)
    return metrics


async def start_site(
    runner: web.AppRunner, sock: socket.socket | None, host: str, port: int
) -> None:
    """Serve on the supervisor's shared socket, or bind one of our own (no supervisor)."""
    await runner.setup()
    site: web.BaseSite
    if sock is not None:
        site = web.SockSite(runner, sock)
    else:
        site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()


async def serve_worker(
    config: Config,
    spec: WorkerSpec,
    sock: socket.socket | None,
    stop: asyncio.Event,
    metrics_sock: socket.socket | None = None,
) -> None:
    """Run one worker until ``stop`` is set, then drain in-flight requests and return.

    With a separate metrics listener, every worker serves ``/metrics`` on the socket the
    supervisor bound for it, as on the service port: any live worker answers for the node.
    """
    from snowflake_tracker.web.app import create_app, create_metrics_app
    from snowflake_tracker.web.protection import Limits, fit_open_files, make_runner

    keys = load_keys(config.secret_file)
    keeper = claim(config, spec)
    try:
        metrics = None
        if config.metrics:
            metrics = make_worker_metrics(spec, keeper, keys.current_version, keys.fingerprint())
        app = create_app(
            config,
            generator=keeper.generator,
            keyring=keys,
            decode_key=keys.decode if keys.current_version else None,
            readiness=make_readiness(config, spec, keeper, keys.fingerprint()),
            metrics=metrics,
        )
        # Request limits, the header timeout and the connection cap (web/protection.py).
        limits = fit_open_files(Limits.from_config(config))
        runner = make_runner(
            app,
            limits,
            access_log=logging.getLogger("aiohttp.access") if config.access_log else None,
            access_log_format=ACCESS_LOG_FORMAT,
            shutdown_timeout=config.drain_seconds,
            handle_signals=False,
        )
        await start_site(runner, sock, config.host, config.port)
        metrics_runner = None
        if metrics is not None and config.metrics_port is not None:
            metrics_runner = make_runner(
                create_metrics_app(metrics), limits, access_log=None, handle_signals=False
            )
            await start_site(metrics_runner, metrics_sock, config.metrics_host, config.metrics_port)
        renewer = asyncio.create_task(keep_lease(keeper, keeper.lease_ms / 3000))
        log.info(
            "worker started",
            extra={"event": "worker_start", "worker_id": spec.worker_id, "slot": spec.slot},
        )
        try:
            await stop.wait()
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            started = time.monotonic()
            await drain(runner, config.drain_seconds)
            await runner.cleanup()
            if metrics_runner is not None:
                await metrics_runner.cleanup()
            # Nothing is issued after cleanup: record how far this worker really got, so a
            # clean restart need not start a lease period ahead of the wall clock.
            try:
                keeper.lease.settle(keeper.generator.last_issued_ms)
            except LeaseError as exc:
                log.warning(str(exc), extra={"event": "lease_settle_failed"})
            log.info(
                "worker stopped",
                extra={
                    "event": "worker_stop",
                    "worker_id": spec.worker_id,
                    "drain_s": round(time.monotonic() - started, 3),
                },
            )
    finally:
        keeper.lease.release()


# How often a draining worker looks again for requests still in flight.
DRAIN_POLL_S = 0.01


async def drain(runner: web.AppRunner, timeout_s: float) -> None:
    """Stop accepting, then let every request in flight finish, within ``timeout_s``.

    aiohttp's own shutdown marks every connection closing first, and from then on a
    connection drops the bytes that still arrive (RequestHandler.data_received), so a batch
    whose body was still arriving would wait out the grace period and be cut off. Waiting
    here, with the listener closed but the connections open, lets it finish; cleanup then
    closes what is left idle. A connection accepted just before the listener closed gets a
    few loop turns to start its request.
    """
    for site in list(runner.sites):
        await site.stop()
    server = runner.server
    if server is None:
        return
    deadline = time.monotonic() + timeout_s
    for _ in range(3):
        await asyncio.sleep(0)
    while time.monotonic() < deadline and any(
        # RequestHandler holds the request it is handling here (aiohttp 3.9 and later).
        getattr(connection, "_current_request", None) is not None
        for connection in server.connections
    ):
        await asyncio.sleep(DRAIN_POLL_S)


def run_worker(
    config: Config,
    spec: WorkerSpec,
    sock: socket.socket | None,
    metrics_sock: socket.socket | None = None,
) -> int:
    """A worker process's main: its own event loop, SIGTERM/SIGINT to drain and stop."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve_worker(config, spec, sock, stop, metrics_sock)

    event_loop_runner()(main())
    return 0


def event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop's runner when the optional ``fast`` extra installed it, else asyncio's.

    uvloop is optional: it speeds up the socket and event-loop work that is most of a
    request's cost (benchmarks/README.md), but the service is correct without it.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run
