"""The Snowflake generator: strictly increasing IDs from one worker, computed, never awaited.

The generator never sleeps and never reads the wall clock on its own. It is handed a clock (a
zero-argument callable giving integer milliseconds since the Unix epoch) and keeps one piece
of state, the last ``(millisecond, sequence)`` it issued. Each call moves that pair forward:

* clock ahead of the last millisecond: take the clock's millisecond, sequence 0;
* clock at or behind it (4,096 IDs spent in a millisecond, or a clock that stepped back or
  stalled): *borrow* the next sequence, and when the sequence is spent, the next millisecond.

Borrowing keeps IDs strictly increasing whatever the clock does, but an ID's time may then run
ahead of the clock. The lead is bounded (``max_lead_ms``): past it the generator raises
:class:`MustWait` carrying how long the caller must wait, and the caller (the async layer)
awaits or answers 503. A second bound, the *ceiling*, is the durable lease (``lease``): no ID
is ever issued past it, so a restarted worker that starts from the stored lease can never
repeat one (:class:`LeaseExhausted`).

The production clock is :class:`AnchoredClock`: a monotonic clock anchored to the wall clock
once, so a wall clock stepped backwards while the process runs never rewinds it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from snowflake_tracker.ids.layout import (
    EPOCH_MS,
    IDS_PER_MS,
    MAX_SEQUENCE,
    MAX_TIMESTAMP,
    TIMESTAMP_SHIFT,
    WORKER_SHIFT,
    LifetimeExceeded,
    check_worker_id,
)

Clock = Callable[[], int]

DEFAULT_MAX_LEAD_MS = 2_000


class MustWait(Exception):
    """The generator cannot issue now; the caller must wait ``seconds`` and try again."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(f"{reason}; retry in {seconds:.3f} s")
        self.seconds = seconds
        self.reason = reason


class LeaseExhausted(MustWait):
    """The next ID would pass the durable lease; it must be renewed before issuing more."""


class AnchoredClock:
    """Unix milliseconds that never go backwards: the wall clock read once, then monotonic.

    ``not_before_ms`` raises the anchor, so a process restarted with its wall clock set back
    starts from the time it had already leased rather than from the earlier wall clock.
    """

    __slots__ = ("_offset_ns",)

    def __init__(self, not_before_ms: int = 0) -> None:
        wall_ns = time.time_ns()
        anchor_ns = max(wall_ns, not_before_ms * 1_000_000)
        self._offset_ns = anchor_ns - time.monotonic_ns()

    def __call__(self) -> int:
        return (time.monotonic_ns() + self._offset_ns) // 1_000_000

    @property
    def skew_ms(self) -> int:
        """How far this clock runs ahead of the wall clock now (negative: behind)."""
        return self() - time.time_ns() // 1_000_000


class SnowflakeGenerator:
    """Issues strictly increasing Snowflake IDs for one worker ID.

    Not thread-safe by design: each worker process owns one generator and calls it from its
    event loop thread only.
    """

    __slots__ = (
        "_ceiling",
        "_clock",
        "_last_ms",
        "_max_lead_ms",
        "_prefix",
        "_sequence",
        "borrowed_ms",
        "waits",
        "worker_id",
    )

    def __init__(
        self,
        worker_id: int,
        *,
        clock: Clock | None = None,
        max_lead_ms: int = DEFAULT_MAX_LEAD_MS,
        not_before_ms: int = 0,
        lease_until_ms: int | None = None,
    ) -> None:
        if max_lead_ms < 0:
            raise ValueError(f"max_lead_ms must be >= 0, not {max_lead_ms}")
        self.worker_id = check_worker_id(worker_id)
        self._clock: Clock = clock if clock is not None else AnchoredClock(not_before_ms)
        self._max_lead_ms = max_lead_ms
        self._prefix = worker_id << WORKER_SHIFT
        # The last issued (ms since EPOCH, sequence). Starting at the floor with the sequence
        # spent means the first ID is at a millisecond strictly after anything issued before.
        self._last_ms = max(not_before_ms - EPOCH_MS, -1)
        self._sequence = MAX_SEQUENCE
        self._ceiling = MAX_TIMESTAMP if lease_until_ms is None else lease_until_ms - EPOCH_MS
        # Counters the metrics layer reads; plain ints, so the core stays free of Prometheus.
        self.borrowed_ms = 0
        self.waits = 0

    @property
    def last_issued_ms(self) -> int:
        """Unix milliseconds of the last ID issued (or of the start floor)."""
        return self._last_ms + EPOCH_MS

    @property
    def lease_until_ms(self) -> int:
        """Unix milliseconds past which no ID is issued until the lease is renewed."""
        return self._ceiling + EPOCH_MS

    def extend_lease(self, until_ms: int) -> None:
        """Allow IDs up to ``until_ms`` (Unix ms); a lease is never shortened."""
        self._ceiling = min(max(self._ceiling, until_ms - EPOCH_MS), MAX_TIMESTAMP)

    def now_ms(self) -> int:
        """The generator's clock, Unix milliseconds."""
        return self._clock()

    def _advance(self, count: int) -> tuple[int, int, int]:
        """Reserve ``count`` IDs; return (ms, first sequence, clock ms), state unchanged."""
        now = self._clock() - EPOCH_MS
        last = self._last_ms
        if now > last:
            ms, first = now, 0
        else:
            ms, first = last, self._sequence + 1
            if first > MAX_SEQUENCE:
                ms, first = ms + 1, 0
        # The run's last ID: it may spill into following milliseconds.
        end_ms = ms + (first + count - 1) // IDS_PER_MS
        if end_ms > self._ceiling:
            self.waits += 1
            if self._ceiling >= MAX_TIMESTAMP:
                raise LifetimeExceeded("the Snowflake ID space is exhausted (year 2094)")
            raise LeaseExhausted(
                max(end_ms - now, 1) / 1000, "the durable lease is not renewed far enough"
            )
        if end_ms - now > self._max_lead_ms:
            self.waits += 1
            raise MustWait(
                (end_ms - now - self._max_lead_ms) / 1000,
                f"more than {self._max_lead_ms} ms ahead of the clock",
            )
        return ms, first, now

    def _commit(self, ms: int, sequence: int, now: int) -> None:
        """Record (ms, sequence) as the last issued, counting milliseconds newly borrowed."""
        last = self._last_ms
        if ms > now and ms > last:
            self.borrowed_ms += ms - max(now, last)
        self._last_ms = ms
        self._sequence = sequence

    def next_id(self) -> int:
        """Return the next ID, or raise :class:`MustWait` without consuming anything."""
        # The common case inline: the clock moved on, or the millisecond has room left.
        now = self._clock() - EPOCH_MS
        last = self._last_ms
        if now > last:
            if now <= self._ceiling:
                self._last_ms = now
                self._sequence = 0
                return (now << TIMESTAMP_SHIFT) | self._prefix
        elif now == last and self._sequence < MAX_SEQUENCE:
            self._sequence += 1
            return (now << TIMESTAMP_SHIFT) | self._prefix | self._sequence
        ms, sequence, now = self._advance(1)
        self._commit(ms, sequence, now)
        return (ms << TIMESTAMP_SHIFT) | self._prefix | sequence

    def next_ids(self, count: int) -> list[range]:
        """Reserve ``count`` IDs at once, as runs of consecutive integers, all or nothing.

        Each run lies within one millisecond, so its IDs are consecutive integers; the batch
        endpoint renders a run with one table walk (``codec.render_range``).
        """
        if count < 1:
            raise ValueError(f"count must be >= 1, not {count}")
        ms, first, now = self._advance(count)
        runs: list[range] = []
        remaining = count
        cursor_ms, sequence = ms, first
        while remaining:
            take = min(remaining, IDS_PER_MS - sequence)
            start = (cursor_ms << TIMESTAMP_SHIFT) | self._prefix | sequence
            runs.append(range(start, start + take))
            remaining -= take
            sequence += take
            if remaining:
                cursor_ms, sequence = cursor_ms + 1, 0
        self._commit(cursor_ms, sequence - 1, now)
        return runs
