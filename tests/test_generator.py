"""The Snowflake generator under a fake clock: strictly increasing IDs whatever the clock does."""

from __future__ import annotations

import time
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snowflake_tracker.ids.generator import (
    AnchoredClock,
    LeaseExhausted,
    MustWait,
    SnowflakeGenerator,
)
from snowflake_tracker.ids.layout import (
    EPOCH_MS,
    IDS_PER_MS,
    MAX_WORKER_ID,
    LifetimeExceeded,
    decompose,
)

START_MS = EPOCH_MS + 10 * 86_400_000


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, ms: int = START_MS) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def make(clock: FakeClock, worker_id: int = 7, **kwargs: int) -> SnowflakeGenerator:
    return SnowflakeGenerator(worker_id, clock=clock, **kwargs)


def assert_strictly_increasing(ids: list[int]) -> None:
    assert all(a < b for a, b in pairwise(ids)), "IDs repeat or decrease"
    assert len(set(ids)) == len(ids)


def test_ids_carry_clock_worker_and_sequence() -> None:
    """An ID decomposes into the clock's millisecond, the worker ID and a running sequence."""
    clock = FakeClock()
    gen = make(clock, worker_id=MAX_WORKER_ID)
    first, second = gen.next_id(), gen.next_id()
    assert decompose(first) == (START_MS - EPOCH_MS, MAX_WORKER_ID, 0)
    assert decompose(second) == (START_MS - EPOCH_MS, MAX_WORKER_ID, 1)
    clock.ms += 5
    assert decompose(gen.next_id()) == (START_MS + 5 - EPOCH_MS, MAX_WORKER_ID, 0)


@pytest.mark.parametrize("worker_id", [-1, MAX_WORKER_ID + 1, 10_000])
def test_worker_id_outside_ten_bits_is_refused(worker_id: int) -> None:
    """A worker ID that does not fit 10 bits is refused at construction."""
    with pytest.raises(ValueError, match=r"outside 0\.\.1023"):
        SnowflakeGenerator(worker_id, clock=FakeClock())


def test_a_full_millisecond_then_the_next_is_borrowed() -> None:
    """4,096 calls fill one millisecond; the 4,097th borrows the next one, sequence 0."""
    clock = FakeClock()
    gen = make(clock)
    ids = [gen.next_id() for _ in range(IDS_PER_MS)]
    assert {decompose(i).timestamp for i in ids} == {START_MS - EPOCH_MS}
    assert [decompose(i).sequence for i in ids] == list(range(IDS_PER_MS))
    extra = gen.next_id()
    assert decompose(extra)[::2] == (START_MS + 1 - EPOCH_MS, 0)
    assert gen.borrowed_ms == 1
    assert_strictly_increasing([*ids, extra])


@pytest.mark.parametrize("step_back_ms", [1, 1_000, 3_600_000])
def test_a_clock_stepped_back_never_repeats_an_id(step_back_ms: int) -> None:
    """After a step back of 1 ms, 1 s or 1 hour, IDs keep increasing or the caller waits."""
    clock = FakeClock()
    gen = make(clock, max_lead_ms=2_000)
    ids = [gen.next_id() for _ in range(10)]
    clock.ms -= step_back_ms
    waited = 0
    for _ in range(20_000):
        try:
            ids.append(gen.next_id())
        except MustWait as wait:
            waited += 1
            assert wait.seconds > 0
            clock.ms += max(1, int(wait.seconds * 1000))
    assert_strictly_increasing(ids)
    assert len(ids) > 10
    if step_back_ms > 2_000:
        assert waited >= 1, "a step back beyond the lead bound must make the caller wait"


def test_a_stalled_clock_borrows_then_reports_the_wait() -> None:
    """100,000 calls on a stalled clock borrow up to the lead bound, then report the wait."""
    clock = FakeClock()
    gen = make(clock, max_lead_ms=20)
    ids: list[int] = []
    waits: list[float] = []
    for _ in range(100_000):
        try:
            ids.append(gen.next_id())
        except MustWait as wait:
            waits.append(wait.seconds)
    # Milliseconds START..START+20 hold 21 x 4,096 IDs; every later call must wait.
    assert len(ids) == 21 * IDS_PER_MS
    assert len(waits) == 100_000 - len(ids)
    assert all(w > 0 for w in waits)
    assert decompose(ids[-1]).timestamp - decompose(ids[0]).timestamp == 20
    assert gen.waits == len(waits)
    assert_strictly_increasing(ids)


def test_a_wait_consumes_nothing() -> None:
    """After a MustWait, the next ID is the one that would have come without it."""
    clock = FakeClock()
    gen = make(clock, max_lead_ms=0)
    ids = [gen.next_id() for _ in range(IDS_PER_MS)]
    with pytest.raises(MustWait) as info:
        gen.next_id()
    assert info.value.seconds == pytest.approx(0.001)
    clock.ms += 1
    nxt = gen.next_id()
    assert nxt == ids[-1] + (1 << 22) - (IDS_PER_MS - 1)


def test_a_clock_jumping_forward_is_followed() -> None:
    """A clock that jumps forward by a day moves the IDs' time with it."""
    clock = FakeClock()
    gen = make(clock)
    before = gen.next_id()
    clock.ms += 86_400_000
    after = gen.next_id()
    assert decompose(after).timestamp - decompose(before).timestamp == 86_400_000


def test_the_start_floor_is_never_reissued() -> None:
    """A generator started at a stored lease issues only after it, even with the clock behind."""
    clock = FakeClock()
    floor = START_MS + 500
    gen = make(clock, not_before_ms=floor, max_lead_ms=1_000)
    first = gen.next_id()
    assert decompose(first).timestamp == floor - EPOCH_MS + 1


def test_the_lease_ceiling_is_never_passed() -> None:
    """No ID is issued past the lease; extending the lease lets issuing resume."""
    clock = FakeClock()
    gen = make(clock, lease_until_ms=START_MS + 1, max_lead_ms=1_000)
    ids = []
    with pytest.raises(LeaseExhausted) as info:
        while True:
            ids.append(gen.next_id())
    assert len(ids) == 2 * IDS_PER_MS
    assert max(decompose(i).timestamp for i in ids) == START_MS + 1 - EPOCH_MS
    assert info.value.seconds > 0
    gen.extend_lease(START_MS + 5)
    gen.extend_lease(START_MS)  # a lease is never shortened
    assert gen.lease_until_ms == START_MS + 5
    assert gen.next_id() > ids[-1]


def test_the_end_of_the_id_lifetime_is_refused() -> None:
    """A clock past the 41-bit lifetime (about 2094) raises, never wraps around."""
    clock = FakeClock(EPOCH_MS + (1 << 41))
    gen = make(clock)
    with pytest.raises(LifetimeExceeded):
        gen.next_id()


def test_batches_are_consecutive_runs_within_a_millisecond() -> None:
    """next_ids returns runs of consecutive IDs, each inside one millisecond, all distinct."""
    clock = FakeClock()
    gen = make(clock)
    gen.next_id()
    runs = gen.next_ids(10_000)
    ids = [i for run in runs for i in run]
    assert len(ids) == 10_000
    for run in runs:
        assert len({decompose(i).timestamp for i in run}) == 1
    assert_strictly_increasing(ids)
    assert gen.next_id() > ids[-1]


def test_a_batch_is_all_or_nothing() -> None:
    """A batch that would pass the lead bound raises and reserves nothing."""
    clock = FakeClock()
    gen = make(clock, max_lead_ms=1)
    single = gen.next_id()
    with pytest.raises(MustWait):
        gen.next_ids(3 * IDS_PER_MS)
    assert gen.next_id() == single + 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-5_000, 5_000), st.integers(1, 3 * IDS_PER_MS)),
        min_size=1,
        max_size=30,
    )
)
def test_no_sequence_of_clock_moves_repeats_an_id(moves: list[tuple[int, int]]) -> None:
    """Under any walk of the clock, singles and batches mixed, IDs strictly increase."""
    clock = FakeClock()
    gen = make(clock, max_lead_ms=50)
    issued: list[int] = []
    for delta, count in moves:
        clock.ms = max(EPOCH_MS, clock.ms + delta)
        try:
            if count % 2:
                issued.append(gen.next_id())
            else:
                issued.extend(i for run in gen.next_ids(count) for i in run)
        except MustWait:
            pass
    assert_strictly_increasing(issued)


def test_anchored_clock_never_runs_backwards_and_honours_its_floor() -> None:
    """The production clock starts at max(wall clock, floor) and never decreases."""
    floor = time.time_ns() // 1_000_000 + 30_000
    clock = AnchoredClock(not_before_ms=floor)
    readings = [clock() for _ in range(1_000)]
    assert readings[0] >= floor
    assert readings == sorted(readings)
    assert clock.skew_ms >= 29_000
