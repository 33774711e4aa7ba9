"""The core in process: mint and render tracking numbers, against a naive reference.

    python benchmarks/bench_core.py [--seconds S]

Cases, side by side in one run, each for ``S`` seconds on one core:

* single: ``SnowflakeGenerator.next_id()`` then ``codec.render()``, one number at a time (what
  ``GET /api/next-tracking-number`` does);
* batch: ``next_ids(1000)`` then ``codec.render_range()`` per run (the label-print endpoint);
* naive: what a first version often looks like, written here as the baseline: a
  ``threading.Lock``, ``time.time_ns()``, base 36 by ``divmod``, no check symbol;
* render only, single and range: the codec alone on IDs made in advance, to show the
  headroom of the rendering step.

A generator issues at most 4,096 IDs per millisecond: a case that outruns the clock meets
``MustWait`` and retries at once (a busy wait), so the minting cases are capped at about
4,096,000 numbers a second. The generator may also borrow ahead of the clock (``max_lead_ms``,
2,000 ms in production); a run of a few seconds could spend that whole lead and report more than
a worker sustains, so the benchmark allows a lead of 1 ms (``--max-lead-ms``): enough for a
batch to spill into the next millisecond, as it does in production, and worth at most 4,096
extra numbers over a whole run.

Prints a table with ratios to the naive reference, and appends one JSON line per case to
``benchmarks/results/core.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from snowflake_tracker.ids.codec import render, render_range
from snowflake_tracker.ids.generator import MustWait, SnowflakeGenerator
from snowflake_tracker.ids.layout import (
    EPOCH_MS,
    IDS_PER_MS,
    MAX_SEQUENCE,
    TIMESTAMP_SHIFT,
    WORKER_SHIFT,
)

RESULTS = Path(__file__).resolve().parent / "results" / "core.jsonl"
ORIGIN = "MY"
WORKER_ID = 1
BATCH = 1000
# Loop iterations between two reads of the timer, so the timer costs next to nothing.
CHUNK = 1000
BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Result:
    """One case's figures: how many numbers in how long, and how often it had to wait."""

    case: str
    numbers: int
    seconds: float
    waits: int

    @property
    def per_second(self) -> float:
        return self.numbers / self.seconds


class NaiveTrackingNumbers:
    """The baseline: a lock around the wall clock and a counter, base 36, no check symbol."""

    def __init__(self, worker_id: int) -> None:
        self._lock = threading.Lock()
        self._worker_bits = worker_id << WORKER_SHIFT
        self._last_ms = -1
        self._sequence = 0
        self.waits = 0

    def next_number(self, origin: str) -> str:
        with self._lock:
            now_ms = time.time_ns() // 1_000_000 - EPOCH_MS
            if now_ms == self._last_ms:
                self._sequence += 1
                if self._sequence > MAX_SEQUENCE:
                    # The usual shape: spin inside the lock until the next millisecond.
                    self.waits += 1
                    while now_ms <= self._last_ms:
                        now_ms = time.time_ns() // 1_000_000 - EPOCH_MS
                    self._sequence = 0
            else:
                self._sequence = 0
            self._last_ms = now_ms
            snowflake_id = (now_ms << TIMESTAMP_SHIFT) | self._worker_bits | self._sequence
        digits = []
        while snowflake_id:
            snowflake_id, digit = divmod(snowflake_id, 36)
            digits.append(BASE36[digit])
        return origin + "".join(reversed(digits)).rjust(13, "0")


def run_single(seconds: float, max_lead_ms: int) -> Result:
    """next_id() and render(), one at a time."""
    generator = SnowflakeGenerator(WORKER_ID, max_lead_ms=max_lead_ms)
    next_id = generator.next_id
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(CHUNK):
            try:
                render(next_id(), ORIGIN)
                done += 1
            except MustWait:
                pass
    return Result("single: next_id + render", done, time.perf_counter() - start, generator.waits)


def run_batch(seconds: float, max_lead_ms: int) -> Result:
    """next_ids(BATCH) and render_range() on each run."""
    generator = SnowflakeGenerator(WORKER_ID, max_lead_ms=max_lead_ms)
    next_ids = generator.next_ids
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        try:
            runs = next_ids(BATCH)
        except MustWait:
            continue
        for run in runs:
            render_range(run, ORIGIN)
        done += BATCH
    return Result(
        f"batch: next_ids({BATCH}) + render_range",
        done,
        time.perf_counter() - start,
        generator.waits,
    )


def run_naive(seconds: float, max_lead_ms: int) -> Result:
    """The naive reference, one number at a time."""
    naive = NaiveTrackingNumbers(WORKER_ID)
    next_number = naive.next_number
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(CHUNK):
            next_number(ORIGIN)
        done += CHUNK
    return Result("naive: lock + time_ns + base 36", done, time.perf_counter() - start, naive.waits)


def _sample_ids() -> range:
    """IDs of one worker over one millisecond, as the generator would issue them."""
    first = ((time.time_ns() // 1_000_000 - EPOCH_MS) << TIMESTAMP_SHIFT) | (
        WORKER_ID << WORKER_SHIFT
    )
    return range(first, first + IDS_PER_MS)


def run_render_only(seconds: float, max_lead_ms: int) -> Result:
    """render() alone, on IDs made in advance."""
    ids = _sample_ids()
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for snowflake_id in ids:
            render(snowflake_id, ORIGIN)
        done += len(ids)
    return Result("render only", done, time.perf_counter() - start, 0)


def run_render_range_only(seconds: float, max_lead_ms: int) -> Result:
    """render_range() alone, on a millisecond's worth of IDs made in advance."""
    ids = _sample_ids()
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        render_range(ids, ORIGIN)
        done += len(ids)
    return Result(f"render_range only ({len(ids)} IDs)", done, time.perf_counter() - start, 0)


CASES: list[Callable[[float, int], Result]] = [
    run_naive,
    run_single,
    run_batch,
    run_render_only,
    run_render_range_only,
]


def print_table(results: list[Result], baseline: Result) -> None:
    """One line per case: rate, cost per number, ratio to the baseline, waits."""
    width = max(len(result.case) for result in results)
    print(f"{'case':<{width}}  {'numbers/s':>12}  {'us/number':>9}  {'vs naive':>8}  waits")
    for result in results:
        print(
            f"{result.case:<{width}}  {result.per_second:>12,.0f}  "
            f"{1e6 / result.per_second:>9.3f}  {result.per_second / baseline.per_second:>7.2f}x  "
            f"{result.waits}"
        )


def append_results(results: list[Result], baseline: Result, args: argparse.Namespace) -> None:
    """Append one JSON line per case, with what is needed to compare runs across machines."""
    environment = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "max_lead_ms": args.max_lead_ms,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as out:
        for result in results:
            line = environment | asdict(result)
            line["per_second"] = round(result.per_second)
            line["ratio_to_naive"] = round(result.per_second / baseline.per_second, 3)
            out.write(json.dumps(line) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per case (default 2)")
    parser.add_argument(
        "--max-lead-ms",
        type=int,
        default=1,
        help="how far the generator may borrow ahead of the clock (default 1)",
    )
    args = parser.parse_args(argv)
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} CPUs, {args.seconds:g} s per case, max lead {args.max_lead_ms} ms"
    )
    for case in CASES:  # warm up: imports, caches, specialised bytecode
        case(0.05, args.max_lead_ms)
    results = [case(args.seconds, args.max_lead_ms) for case in CASES]
    baseline = results[0]
    print_table(results, baseline)
    append_results(results, baseline, args)
    print(f"appended to {RESULTS.relative_to(RESULTS.parents[2])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
