"""Prometheus metrics: one view of every process of a node, whichever process takes the scrape.

A node runs several worker processes behind one port, so a scrape lands on any of them.
prometheus_client's multiprocess mode makes every answer the node's view: each process keeps
its values in memory-mapped files in one directory (``PROMETHEUS_MULTIPROC_DIR``, which the
supervisor makes, empty, at node start), and the process that takes a scrape merges all the
files. The files are named after the worker's slot, not its PID (:func:`name_metric_files`):
the worker that replaces a dead one carries on its counters, and the dead one's ``live*``
gauges go when the supervisor reaps it (:func:`forget_process`).

Per request the cost is kept small (DESIGN §8). A write through prometheus_client takes a
lock and a chain of Python calls: about 2 µs per counter in a request, measured (a histogram
is two such writes), where a whole request costs 70 to 80 µs. So a request adds its route,
status and duration to plain Python numbers (:class:`RequestStats`, a fraction of a
microsecond), which are added to the files once a second and whenever the process answers a
scrape. The count of numbers issued is exact instead: one store into a memory-mapped file per
worker ID (:class:`IssuedCount`, about 0.1 µs), which any process's scrape reads at once, so
every scrape counts every number issued before it, even by a process killed since. The
generator's and the lease's plain int counters are copied like the request counts, as the
increase since the last copy.

Collecting reads and merges every process's files, about 1.5 ms of CPU for two workers (one
set of files per slot, however often workers restart): it runs on a thread, one scrape at a
time, so the event loop keeps answering requests meanwhile.

The series, all prefixed ``snowflake_tracker_`` (DESIGN §4 names the failure modes):

==========================================  =========  =========================================
name                                        type       labels; what it shows
==========================================  =========  =========================================
``http_requests_total``                     counter    route, method, status
``http_request_duration_seconds``           histogram  route, method; time to compute the answer
``numbers_issued_total``                    counter    worker_id
``id_borrowed_seconds_total``               counter    worker_id; ID time taken ahead of the clock
``id_waits_total``                          counter    worker_id; callers told to wait (503)
``id_space_remaining_seconds``              gauge      worker_id; time left in the 41-bit clock
``lease_renewals_total``                    counter    worker_id
``lease_renewal_failures_total``            counter    worker_id
``lease_remaining_seconds``                 gauge      worker_id; until issuing stops, unrenewed
``clock_steps_back_total``                  counter    worker_id; wall clock stepped backwards
``clock_last_step_back_seconds``            gauge      worker_id; size of the last such step
``clock_ahead_of_wall_clock_seconds``       gauge      worker_id; ID clock minus wall clock
``worker_info``                             gauge      worker_id, slot, node_id; 1 per live worker
``key_info``                                gauge      key_version, key_fingerprint, format_version
``build_info``                              gauge      version
``node_processes``                          gauge      worker processes the node should have
``worker_restarts_total``                   counter    slot, worker_id; respawns by the supervisor
==========================================  =========  =========================================
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from snowflake_tracker import __version__
from snowflake_tracker.ids.codec import FORMAT_VERSION
from snowflake_tracker.ids.generator import SnowflakeGenerator
from snowflake_tracker.ids.layout import EPOCH_MS, MAX_TIMESTAMP
from snowflake_tracker.web.errors import NO_STORE, Handler

PREFIX = "snowflake_tracker_"
# A minted number is answered in tens of microseconds; a 1,000-parcel batch in milliseconds.
LATENCY_BUCKETS_S = (
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
# How stale another process's request counts and gauges may be in a scrape.
SYNC_INTERVAL_S = 1.0
# Requests no route matched (404, 405) share one label value: a path is not a label.
UNMATCHED_ROUTE = "unmatched"
# The catch-all route's pattern (web/app.py), counted as unmatched.
CATCH_ALL_CANONICAL = "/{unmatched_path}"
# Any other method a client sends is counted as "other": a method is client input too.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OTHER_METHOD = "other"
# Statuses a minting route is expected to answer: their series exist from the start at 0, so
# rate() and increase() see the first 503 rather than a series appearing at 1.
MINTING_STATUSES = (201, 400, 503)


class LeaseHealth(Protocol):
    """What the metrics read of a worker's lease keeper (worker.LeaseKeeper)."""

    @property
    def renewals(self) -> int: ...

    @property
    def failures(self) -> int: ...

    @property
    def clock_steps_back(self) -> int: ...

    @property
    def clock_step_back_ms(self) -> int: ...

    @property
    def remaining_ms(self) -> int: ...

    @property
    def ahead_of_wall_clock_ms(self) -> int: ...


# The exact count of numbers issued under one worker ID (IssuedCount). The name has no ".db":
# prometheus_client's collector reads only its own files.
ISSUED_FILE_PREFIX = "numbers-issued-worker-"
ISSUED_FILE_SUFFIX = ".count"
_COUNT_BYTES = 8

# Whose metric files this process writes: "supervisor", or a worker's slot.
SUPERVISOR_FILES = "supervisor"
_files_name: list[str] = []


def slot_files_name(slot: int) -> str:
    """The name of the metric files of the worker in ``slot``."""
    return f"slot{slot}"


class MetricsModeError(RuntimeError):
    """prometheus_client was loaded before the multiprocess directory was set."""


def check_multiprocess_mode() -> None:
    """Refuse to count into per-process memory where the node's view is expected.

    prometheus_client chooses where values live once, when it is first imported: a process
    that imported it before PROMETHEUS_MULTIPROC_DIR was set would count into its own memory,
    which no other process's scrape can see.
    """
    if values.ValueClass is values.MutexValue:
        raise MetricsModeError(
            "prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set; "
            "the supervisor must set it before anything imports prometheus_client"
        )


def name_metric_files(name: str) -> None:
    """Write this process's values to ``<type>_<name>.db`` rather than ``<type>_<PID>.db``.

    prometheus_client's documented hook for it is ``MultiProcessValue(process_identifier)``
    (client_python issue 509). It calls the identifier at every write to notice a fork, and
    this one reads a variable instead of making a system call. The name must differ between
    processes alive at the same time: a slot holds one worker at a time, and the supervisor
    starts the next only after it has reaped the last and dropped its live gauges. Reusing a
    slot's files also keeps the directory, and the work of each scrape, from growing with
    every restart.
    """
    check_multiprocess_mode()
    # The collector splits file names on "_" to find the type and the process.
    if not name or "_" in name:
        raise ValueError(f"a metric file name needs no underscore: {name!r}")
    install = not _files_name
    _files_name[:] = [name]
    if install:
        values.ValueClass = values.MultiProcessValue(  # type: ignore[no-untyped-call]
            _current_files_name
        )


def _current_files_name() -> str:
    return _files_name[0]


def forget_process(files_name: str, multiprocess_dir: Path) -> None:
    """Drop a dead process's live gauges from the node's view; its counters stay counted."""
    # prometheus_client leaves its multiprocess helpers unannotated.
    mark_process_dead(files_name, str(multiprocess_dir))  # type: ignore[no-untyped-call]


class BulkHistogram(Histogram):
    """A histogram that also takes observations already sorted into its buckets.

    prometheus_client observes one value at a time. Adding a second's worth of counts at once
    needs the values it keeps per bucket (``_buckets``, one per upper bound, not cumulative)
    and the running ``_sum``; tests/test_metrics.py checks the result equals one ``observe``
    per value, so a change in the library is caught there.
    """

    def add_counts(self, counts: Sequence[int], total: float) -> None:
        """Add ``counts[i]`` observations to bucket ``i`` and ``total`` to the sum.

        Call it on a labelled child (``labels(...)``), as ``observe``.
        """
        self._sum.inc(total)
        for bucket, count in zip(self._buckets, counts, strict=True):
            if count:
                bucket.inc(count)


class RequestStats:
    """One route's and method's requests since the last flush, as plain Python numbers.

    :meth:`record` runs per request on the event loop; :meth:`flush` adds what it holds to the
    shared metrics and starts again from zero. Both run on the loop thread only.
    """

    __slots__ = ("_children", "_latency", "_requests", "buckets", "counts", "labels", "total_s")

    def __init__(
        self,
        requests: Counter,
        latency: BulkHistogram,
        route: str,
        method: str,
        statuses: Iterable[int] = (),
    ) -> None:
        self.labels = (route, method)
        self._requests = requests
        self._latency = latency.labels(route, method)
        self._children: dict[int, Counter] = {}
        for status in statuses:
            self._child(status)
        self.counts: dict[int, int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.total_s = 0.0

    def record(self, status: int, seconds: float) -> None:
        """Count one answered request."""
        counts = self.counts
        counts[status] = counts.get(status, 0) + 1
        # Bucket i holds durations up to LATENCY_BUCKETS_S[i]; the last one, the rest (+Inf).
        self.buckets[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.total_s += seconds

    def flush(self) -> None:
        """Add the requests recorded since the last flush to the shared metrics."""
        if not self.counts:
            return
        counts, buckets, total = self.counts, self.buckets, self.total_s
        self.counts = {}
        self.buckets = [0] * len(buckets)
        self.total_s = 0.0
        for status, count in counts.items():
            self._child(status).inc(count)
        self._latency.add_counts(buckets, total)

    def _child(self, status: int) -> Counter:
        child = self._children.get(status)
        if child is None:
            child = self._children[status] = self._requests.labels(*self.labels, str(status))
        return child


class IssuedCount:
    """Numbers issued under one worker ID: 8 bytes of memory-mapped file the hot path adds to.

    One store per request, and exact: the count is in the shared page cache the moment a
    number is issued, so a scrape by any process sees it, and a worker killed with SIGKILL
    loses none of it. Only one process at a time writes a worker ID's file (the worker-ID lock
    and the supervisor's slots see to that); the next one carries on from its value. Without
    a directory the count lives in this process's memory alone.
    """

    __slots__ = ("_map", "_view", "worker_id")

    def __init__(self, worker_id: int, directory: Path | None = None) -> None:
        self.worker_id = worker_id
        if directory is None:
            self._map = mmap.mmap(-1, _COUNT_BYTES)
        else:
            fd = os.open(issued_path(directory, worker_id), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_size < _COUNT_BYTES:
                    os.ftruncate(fd, _COUNT_BYTES)
                self._map = mmap.mmap(fd, _COUNT_BYTES)
            finally:
                os.close(fd)
        # An aligned 8-byte store: a reader sees the old count or the new, never a mix.
        self._view = memoryview(self._map).cast("q")

    def add(self, count: int) -> None:
        """Count ``count`` more numbers issued."""
        self._view[0] += count

    @property
    def value(self) -> int:
        return int(self._view[0])


def issued_path(directory: Path, worker_id: int) -> Path:
    return directory / f"{ISSUED_FILE_PREFIX}{worker_id}{ISSUED_FILE_SUFFIX}"


def read_issued_counts(directory: Path) -> Iterator[tuple[int, int]]:
    """(worker ID, numbers issued) from every count file in the node's directory."""
    for path in directory.glob(f"{ISSUED_FILE_PREFIX}*{ISSUED_FILE_SUFFIX}"):
        worker_text = path.name[len(ISSUED_FILE_PREFIX) : -len(ISSUED_FILE_SUFFIX)]
        # A file is created empty, then sized: a worker just starting may not have sized it.
        if worker_text.isdigit() and path.stat().st_size >= _COUNT_BYTES:
            yield int(worker_text), _read_count(path)


def _read_count(path: Path) -> int:
    # Mapped and read as one aligned 8-byte load, as it is written: read() could copy the
    # bytes one by one and see half of a store.
    with (
        path.open("rb") as file,
        mmap.mmap(file.fileno(), _COUNT_BYTES, access=mmap.ACCESS_READ) as m,
    ):
        view = memoryview(m).cast("q")
        try:
            return int(view[0])
        finally:
            view.release()


class IssuedCollector:
    """``numbers_issued_total`` for a scrape: every worker ID's count, this process's or not.

    A collector registered in a worker shows that worker alone in multiprocess mode; this one
    reads the count files of every process in the node's directory.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        directory = self._metrics.multiprocess_dir
        if directory is None:
            counts = [(c.worker_id, c.value) for c in self._metrics.issued_counts.values()]
        else:
            counts = list(read_issued_counts(directory))
        for worker_id, count in sorted(counts):
            family.add_metric([str(worker_id)], count)
        return [family]

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            PREFIX + "numbers_issued",
            "Tracking numbers issued, by worker ID.",
            labels=("worker_id",),
        )


@dataclass(frozen=True, slots=True)
class MintingRoute:
    """What a minting route records per request, bound once when the app is built."""

    record: Callable[[int, float], None]
    count_issued: Callable[[int], None]


class _IncreaseCopier:
    """Copies a plain, only-growing int into a counter, as the increase since the last copy."""

    __slots__ = ("_child", "_read", "_scale", "_seen")

    def __init__(self, child: Counter, read: Callable[[], int], scale: float = 1.0) -> None:
        self._child = child
        self._read = read
        self._scale = scale
        self._seen = 0

    def __call__(self) -> None:
        current = self._read()
        if current > self._seen:
            self._child.inc((current - self._seen) * self._scale)
            self._seen = current


class Metrics:
    """Every metric of one worker process, and the ``/metrics`` answer of the node's view.

    Without ``multiprocess_dir`` (tests, an app embedded without the supervisor) the metrics
    live in a registry of their own and a scrape shows this process alone.
    """

    def __init__(self, *, multiprocess_dir: Path | None = None) -> None:
        self.registry = CollectorRegistry()
        owner: CollectorRegistry | None = self.registry
        if multiprocess_dir is not None:
            check_multiprocess_mode()
            MultiProcessCollector(  # type: ignore[no-untyped-call]
                self.registry, path=str(multiprocess_dir)
            )
            # The values reach the scrape through the files; registering the metrics as well
            # would show this process's values twice.
            owner = None
        self.multiprocess_dir = multiprocess_dir
        self.requests = Counter(
            PREFIX + "http_requests_total",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
            registry=owner,
        )
        self.latency = BulkHistogram(
            PREFIX + "http_request_duration_seconds",
            "Time from routing a request to its answer being ready, by route and method.",
            ("route", "method"),
            registry=owner,
            buckets=LATENCY_BUCKETS_S,
        )
        self.issued_counts: dict[int, IssuedCount] = {}
        self.registry.register(IssuedCollector(self))
        self.borrowed = Counter(
            PREFIX + "id_borrowed_seconds_total",
            "ID time taken ahead of the clock when a millisecond's sequence was spent.",
            ("worker_id",),
            registry=owner,
        )
        self.waits = Counter(
            PREFIX + "id_waits_total",
            "Times the generator told a caller to wait: lead exhausted or lease not renewed.",
            ("worker_id",),
            registry=owner,
        )
        self.id_space = Gauge(
            PREFIX + "id_space_remaining_seconds",
            "Time left before the Snowflake ID's 41-bit millisecond field runs out.",
            ("worker_id",),
            registry=owner,
            multiprocess_mode="livemin",
        )
        self.lease_renewals = Counter(
            PREFIX + "lease_renewals_total",
            "Durable lease writes that succeeded.",
            ("worker_id",),
            registry=owner,
        )
        self.lease_failures = Counter(
            PREFIX + "lease_renewal_failures_total",
            "Durable lease writes that failed.",
            ("worker_id",),
            registry=owner,
        )
        self.lease_remaining = Gauge(
            PREFIX + "lease_remaining_seconds",
            "Time until the worker reaches its durable lease and stops issuing, unless renewed.",
            ("worker_id",),
            registry=owner,
            multiprocess_mode="livemin",
        )
        self.clock_steps_back = Counter(
            PREFIX + "clock_steps_back_total",
            "Times the wall clock was seen stepped backwards (IDs stay unique).",
            ("worker_id",),
            registry=owner,
        )
        self.clock_last_step_back = Gauge(
            PREFIX + "clock_last_step_back_seconds",
            "Size of the last backward step of the wall clock seen (0: none).",
            ("worker_id",),
            registry=owner,
            multiprocess_mode="livemax",
        )
        self.clock_ahead = Gauge(
            PREFIX + "clock_ahead_of_wall_clock_seconds",
            "How far the ID clock runs ahead of the wall clock (negative: behind).",
            ("worker_id",),
            registry=owner,
            multiprocess_mode="livemax",
        )
        # livesum: two live processes claiming one worker ID would show as 2.
        self.worker_info = Gauge(
            PREFIX + "worker_info",
            "1 for each live worker process, with the worker ID it holds.",
            ("worker_id", "slot", "node_id"),
            registry=owner,
            multiprocess_mode="livesum",
        )
        self.key_info = Gauge(
            PREFIX + "key_info",
            "1, labelled with the key version in use, its fingerprint and the number format.",
            ("key_version", "key_fingerprint", "format_version"),
            registry=owner,
            multiprocess_mode="livemax",
        )
        build_info = Gauge(
            PREFIX + "build_info",
            "1, labelled with the version of snowflake-tracker running.",
            ("version",),
            registry=owner,
            multiprocess_mode="livemax",
        )
        build_info.labels(__version__).set(1)
        self._syncs: list[Callable[[], None]] = []
        self._stats: dict[tuple[str, str], RequestStats] = {}
        self._scrape_lock = asyncio.Lock()

    # -- what is counted --------------------------------------------------------------------

    def route_stats(self, route: str, method: str, statuses: Iterable[int] = ()) -> RequestStats:
        """The request counts of one route and method, made on first use."""
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        stats = self._stats.get((route, method))
        if stats is None:
            stats = self._stats[route, method] = RequestStats(
                self.requests, self.latency, route, method, statuses
            )
        return stats

    def count_issued(self, worker_id: int) -> Callable[[int], None]:
        """The count of numbers issued under ``worker_id``, bound once."""
        count = self.issued_counts.get(worker_id)
        if count is None:
            count = self.issued_counts[worker_id] = IssuedCount(worker_id, self.multiprocess_dir)
        return count.add

    def minting_route(self, route: str, worker_id: int) -> MintingRoute:
        """What ``GET route`` records per request: its answer and each number issued."""
        stats = self.route_stats(route, "GET", MINTING_STATUSES)
        return MintingRoute(stats.record, self.count_issued(worker_id))

    def watch_generator(self, generator: SnowflakeGenerator) -> None:
        """Copy the generator's plain counters, and the ID space left, at every sync."""
        worker_id = str(generator.worker_id)
        id_space = self.id_space.labels(worker_id)
        end_ms = EPOCH_MS + MAX_TIMESTAMP
        self._add_sync(
            _IncreaseCopier(
                self.borrowed.labels(worker_id), lambda: generator.borrowed_ms, 1 / 1000
            ),
            _IncreaseCopier(self.waits.labels(worker_id), lambda: generator.waits),
            lambda: id_space.set((end_ms - generator.now_ms()) / 1000),
        )

    def watch_lease(self, keeper: LeaseHealth, worker_id: int) -> None:
        """Copy the lease keeper's counters and clock readings at every sync."""
        label = str(worker_id)
        remaining = self.lease_remaining.labels(label)
        last_step = self.clock_last_step_back.labels(label)
        ahead = self.clock_ahead.labels(label)

        def gauges() -> None:
            remaining.set(keeper.remaining_ms / 1000)
            last_step.set(keeper.clock_step_back_ms / 1000)
            ahead.set(keeper.ahead_of_wall_clock_ms / 1000)

        self._add_sync(
            _IncreaseCopier(self.lease_renewals.labels(label), lambda: keeper.renewals),
            _IncreaseCopier(self.lease_failures.labels(label), lambda: keeper.failures),
            _IncreaseCopier(self.clock_steps_back.labels(label), lambda: keeper.clock_steps_back),
            gauges,
        )

    def describe_worker(self, worker_id: int, slot: int, node_id: int | None) -> None:
        """Show the worker ID this process holds, in which slot of which node."""
        node = "" if node_id is None else str(node_id)
        self.worker_info.labels(str(worker_id), str(slot), node).set(1)

    def describe_key(self, key_version: int, fingerprint: str) -> None:
        """Show the key in use (its fingerprint, never the secret) and the number format."""
        self.key_info.labels(str(key_version), fingerprint, str(FORMAT_VERSION)).set(1)

    def _add_sync(self, *syncs: Callable[[], None]) -> None:
        for sync in syncs:
            sync()
            self._syncs.append(sync)

    # -- keeping the shared view current ----------------------------------------------------

    def sync(self) -> None:
        """Add what this process counted in plain numbers to the shared metrics."""
        for sync in self._syncs:
            sync()
        for stats in self._stats.values():
            stats.flush()

    async def sync_periodically(self, interval_s: float = SYNC_INTERVAL_S) -> None:
        """Sync every ``interval_s``, so another process's scrape is at most that stale."""
        while True:
            await asyncio.sleep(interval_s)
            self.sync()

    async def keep_synced(self, app: web.Application) -> AsyncIterator[None]:
        """A cleanup context: sync periodically while the app runs, and once at its end."""
        task = asyncio.create_task(self.sync_periodically())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # A worker that drains and exits leaves its last counts in the files it leaves behind.
        self.sync()

    # -- answering a scrape -----------------------------------------------------------------

    def collect(self) -> bytes:
        """The text exposition of the node's view (of this process alone when not shared)."""
        return generate_latest(self.registry)

    def make_handler(self) -> Handler:
        """GET /metrics: this process's counts synced, then every process's, merged."""

        async def metrics(request: web.Request) -> web.StreamResponse:
            self.sync()
            loop = asyncio.get_running_loop()
            # One collection at a time per process: concurrent scrapes queue here rather than
            # fill the default executor, which the lease renewal needs.
            async with self._scrape_lock:
                body = await loop.run_in_executor(None, self.collect)
            return web.Response(
                body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4, **NO_STORE}
            )

        return metrics

    def recorder(self) -> Callable[[web.Request, int, float], None]:
        """Count a request by its route's pattern, its method and its status.

        Every route but the minting ones is wrapped with this (errors.guard); the minting
        routes count themselves, with children bound once (:meth:`minting_route`).
        """
        route_stats = self.route_stats

        def record(request: web.Request, status: int, seconds: float) -> None:
            resource = request.match_info.route.resource
            route = UNMATCHED_ROUTE
            if resource is not None and resource.canonical != CATCH_ALL_CANONICAL:
                route = resource.canonical
            route_stats(route, request.method).record(status, seconds)

        return record


class NodeMetrics:
    """What the supervisor counts: the node's size and its workers' restarts.

    Made in the supervisor after PROMETHEUS_MULTIPROC_DIR is set. Forked workers inherit these
    objects; once a worker names its files after its slot, prometheus_client moves it to files
    of its own at its first metric write, where these series stay at 0.
    """

    def __init__(self, processes: int, *, multiprocess_dir: Path | None = None) -> None:
        # Without a shared directory (tests) the series live in a registry of their own.
        self.registry = CollectorRegistry()
        owner: CollectorRegistry | None = self.registry
        if multiprocess_dir is not None:
            name_metric_files(SUPERVISOR_FILES)
            owner = None
        self.multiprocess_dir = multiprocess_dir
        Gauge(
            PREFIX + "node_processes",
            "Worker processes the node is configured to keep running.",
            registry=owner,
            multiprocess_mode="livemax",
        ).set(processes)
        self._restarts = Counter(
            PREFIX + "worker_restarts_total",
            "Workers the supervisor started again after one died, by slot and worker ID.",
            ("slot", "worker_id"),
            registry=owner,
        )

    def watch_slot(self, slot: int, worker_id: int) -> None:
        """Make the slot's restart count exist from the start, at 0."""
        self._restarts.labels(str(slot), str(worker_id))

    def worker_restarted(self, slot: int, worker_id: int) -> None:
        self._restarts.labels(str(slot), str(worker_id)).inc()

    def worker_died(self, slot: int) -> None:
        """Drop the live gauges of the worker reaped from ``slot``, before it is refilled."""
        if self.multiprocess_dir is not None:
            forget_process(slot_files_name(slot), self.multiprocess_dir)
