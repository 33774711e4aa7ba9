"""Scale-out over real processes and sockets: many workers, kill -9, SIGTERM, a clock set back.

Every test runs real ``snowflake-tracker serve`` nodes on 127.0.0.1 (port 0) through
``livenode``, whose process groups are killed at teardown whatever happens. "No number lost"
means, throughout: no tracking number is answered twice and every 201 answer is well formed.

Run them alone with ``pytest -m live``, or leave them out with ``-m "not live"``. The restart
with a clock set back needs Debian's ``faketime`` package and is skipped, saying so, without.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from livenode import (
    SAMPLE_PATH,
    Answer,
    Decoded,
    LiveNode,
    LoadResult,
    NodeSet,
    SlowBatch,
    decode_answers,
    duplicates,
    find_libfaketime,
    run_load,
    wait_until,
)

from snowflake_tracker.ids.layout import decompose

pytestmark = pytest.mark.live

# The scale-out run: 100,000 requests from 64 tasks over two nodes of two processes each.
SCALE_REQUESTS = 100_000
SCALE_CONCURRENCY = 64
# A connection is closed after this many requests, so the accept races of a node's workers
# are run again and again and every worker gets connections; most requests reuse one.
RECONNECT_EVERY = 500
# The single-node scenarios: 32 tasks on one node of two processes.
NODE_CONCURRENCY = 32
LOAD_TIMEOUT_S = 120.0
WARMUP_ANSWERS = 4_000
# How long the workers stay paused, or a batch half-sent, for the clients (or the worker) to
# act; ample on a loaded machine.
PAUSE_S = 0.3
SLOW_BATCH_PARCELS = 10
# A short grace period for the drain tests. aiohttp sometimes waits it out whole: a connection
# accepted just before the drain, whose RequestHandler.start() has not run yet, waits for a
# first request that data_received then drops. Such a drain costs 3 s here, not 10.
DRAIN_ARGS = ("--drain-seconds", "3")
# How far back the restarted node's wall clock is set, and the least of it a test must see.
CLOCK_BACK = "-30s"
CLOCK_BACK_MS = 30_000
CLOCK_BACK_SEEN_MS = 25_000
# Slack for comparing the test's clock with the node's (both read the same wall clock).
CLOCK_SLACK_MS = 100
# A lead over the wall clock that a stored lease (10 s by default) cannot explain.
BEYOND_LEASE_MS = 15_000
READY_WITHIN_S = 5.0


def _lease_until_ms(node: LiveNode, worker_id: int) -> int:
    record = json.loads((node.state_dir / f"worker-{worker_id:04d}.lease").read_bytes())
    return int(record["lease_until_ms"])


def _log_time(event: dict[str, object]) -> float:
    """The Unix time of a log line's ``ts`` field, as the node's own clock read it."""
    return datetime.fromisoformat(str(event["ts"])).timestamp()


@dataclass
class Drain:
    """What a SIGTERM under load saw."""

    load: LoadResult
    sigterm_at: float
    exit_code: int
    exit_s: float


async def _sigterm_under_load(node: LiveNode) -> Drain:
    """Load ``node`` and SIGTERM it with a request written on every connection, none answered.

    Under heavy load requests wait in a worker's socket when the signal comes; here that is
    made certain rather than likely. The workers are paused (SIGSTOP) while every client
    task writes its next request, the node gets SIGTERM, and the workers resume (SIGCONT)
    with the signal and the unanswered requests both waiting for them.
    """
    result = LoadResult()
    stop = asyncio.Event()
    load = asyncio.create_task(
        run_load(
            [node.url(SAMPLE_PATH)],
            concurrency=NODE_CONCURRENCY,
            stop=stop,
            ramp_up=True,
            result=result,
        )
    )
    try:
        await wait_until(lambda: len(result.answers) >= WARMUP_ANSWERS, "the warm-up", 60)
        workers = [spawn.pid for spawn in node.workers().values()]
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        await asyncio.sleep(PAUSE_S)
        sigterm_at = time.monotonic()
        os.kill(node.pid, signal.SIGTERM)
        # Once the supervisor logs node_stop it has passed SIGTERM on to the paused workers.
        await asyncio.to_thread(
            node.wait_for_event, lambda e: e.get("event") == "node_stop", "node_stop"
        )
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
        code = await asyncio.to_thread(node.wait_exit)
        exit_s = time.monotonic() - sigterm_at
    finally:
        stop.set()
        async with asyncio.timeout(LOAD_TIMEOUT_S):
            await load
    return Drain(result, sigterm_at, code, exit_s)


@pytest.mark.slow
async def test_two_nodes_of_two_processes_never_repeat_a_number(nodes: NodeSet) -> None:
    """100,000 requests over two nodes of two processes give 100,000 distinct, valid numbers."""
    first = nodes.start(node_id=0, processes=2)
    second = nodes.start(node_id=1, processes=2)
    first.wait_ready()
    second.wait_ready()

    async with asyncio.timeout(LOAD_TIMEOUT_S):
        result = await run_load(
            [first.url(SAMPLE_PATH), second.url(SAMPLE_PATH)],
            concurrency=SCALE_CONCURRENCY,
            total=SCALE_REQUESTS,
            reconnect_every=RECONNECT_EVERY,
        )

    assert result.failures == []
    assert len(result.answers) == SCALE_REQUESTS
    decoded = decode_answers(result.answers)
    assert duplicates(d.tracking_number for d in decoded) == []
    assert len({d.snowflake_id for d in decoded}) == SCALE_REQUESTS
    worker_ids: dict[int, set[int]] = {0: set(), 1: set()}
    for answer, number in zip(result.answers, decoded, strict=True):
        worker_ids[answer.target].add(number.worker_id)
    # Worker ID = node ID << 3 | slot, with the default 7 node bits.
    assert worker_ids == {0: {0, 1}, 1: {8, 9}}
    print(
        f"{SCALE_REQUESTS} requests in {result.elapsed:.1f} s "
        f"({SCALE_REQUESTS / result.elapsed:.0f}/s)"
    )
    assert first.stop() == 0
    assert second.stop() == 0


@pytest.mark.slow
async def test_a_killed_worker_is_replaced_under_its_id_and_repeats_nothing(
    nodes: NodeSet,
) -> None:
    """kill -9 of a loaded worker: a new process takes its slot and ID, minting above the old."""
    node = nodes.start(node_id=0, processes=2)
    node.wait_ready()
    victim = node.workers()[0]
    assert victim.worker_id == 0

    result = LoadResult()
    stop = asyncio.Event()
    load = asyncio.create_task(
        run_load(
            [node.url(SAMPLE_PATH)],
            concurrency=NODE_CONCURRENCY,
            stop=stop,
            reconnect_every=100,
            result=result,
        )
    )
    try:
        await wait_until(lambda: len(result.answers) >= WARMUP_ANSWERS, "the warm-up", 60)
        # The lease only rises, so the one on disk at the kill reaches at least this far.
        stored_before_kill = _lease_until_ms(node, victim.worker_id)
        killed_at = time.monotonic()
        killed_wall_ms = time.time_ns() // 1_000_000
        os.kill(victim.pid, signal.SIGKILL)
        replacement = await asyncio.to_thread(node.wait_spawn, victim.slot, not_pid=victim.pid)
        await asyncio.to_thread(node.wait_worker_started, replacement.pid)
        replaced_at = time.monotonic()
        answered = len(result.answers)
        await wait_until(
            lambda: len(result.answers) >= answered + WARMUP_ANSWERS, "load after the kill", 60
        )
    finally:
        stop.set()
        async with asyncio.timeout(LOAD_TIMEOUT_S):
            await load

    assert replacement.worker_id == victim.worker_id
    assert replacement.pid != victim.pid
    events = node.events
    exit_index = next(
        i
        for i, e in enumerate(events)
        if e.get("event") == "worker_exit" and e.get("child_pid") == victim.pid
    )
    assert events[exit_index]["exit"] == -signal.SIGKILL
    spawn_index = next(
        i
        for i, e in enumerate(events)
        if e.get("event") == "worker_spawn" and e.get("child_pid") == replacement.pid
    )
    assert exit_index < spawn_index, "the slot was refilled before the dead worker was reaped"

    # Only requests on the killed worker's connections fail, as connection errors, after the
    # kill; each task has at most one request in flight.
    print(f"{len(result.failures)} of {result.total} requests failed at the kill")
    assert all(f.status is None for f in result.failures), result.failures[:5]
    assert all(f.finished >= killed_at for f in result.failures)
    assert len(result.failures) <= NODE_CONCURRENCY
    assert len(result.failures) <= result.total // 100

    decoded = decode_answers(result.answers)
    assert duplicates(d.tracking_number for d in decoded) == []
    assert {d.worker_id for d in decoded} == {0, 1}
    pairs = list(zip(result.answers, decoded, strict=True))
    old = [d.snowflake_id for a, d in pairs if d.worker_id == 0 and a.finished < killed_at]
    new = [d.snowflake_id for a, d in pairs if d.worker_id == 0 and a.started > replaced_at]
    assert old, "the killed worker issued nothing before the kill"
    assert new, "the replacement issued nothing"
    assert min(new) > max(old)
    # The replacement started from the stored lease, not from its wall clock: the lease
    # reached well past the kill, and its first ID is past the lease.
    assert stored_before_kill > killed_wall_ms + 1_000
    assert decompose(min(new)).unix_ms > stored_before_kill
    assert node.stop() == 0


@pytest.mark.slow
async def test_sigterm_under_load_exits_0_and_answers_every_request_in_flight(
    nodes: NodeSet,
) -> None:
    """SIGTERM mid-load: the node exits 0 and every request sent before it gets a valid 201."""
    node = nodes.start(node_id=0, processes=2, args=DRAIN_ARGS)
    node.wait_ready()

    drain = await _sigterm_under_load(node)

    assert drain.exit_code == 0
    failures, sigterm_at = drain.load.failures, drain.sigterm_at
    # Requests written before the signal must be answered; later ones may fail, as the
    # listener is closing. On warm keep-alive connections every request started before the
    # signal had been written.
    assert [f for f in failures if f.sent_at is not None and f.sent_at < sigterm_at] == []
    assert [f for f in failures if f.started < sigterm_at] == []
    in_flight = [a for a in drain.load.answers if a.started < sigterm_at < a.finished]
    assert len(in_flight) == NODE_CONCURRENCY, "every task had a request waiting at the signal"
    decoded = decode_answers(drain.load.answers)
    assert duplicates(d.tracking_number for d in decoded) == []
    assert {d.worker_id for d in decoded} == {0, 1}
    assert len(node.events_named("worker_stop")) == 2
    print(
        f"exit 0 {drain.exit_s:.2f} s after SIGTERM; {len(in_flight)} requests in flight all "
        f"answered; {len(failures)} started after it failed"
    )


async def test_sigterm_lets_a_batch_still_arriving_finish(nodes: NodeSet) -> None:
    """A batch request whose body is half-sent at SIGTERM is read to the end and answered."""
    node = nodes.start(node_id=0, processes=1, args=DRAIN_ARGS)
    node.wait_ready()
    batch = SlowBatch(node.port, SLOW_BATCH_PARCELS)
    await batch.send_first_part()
    # The worker reads the headers and starts the handler, which waits for the rest.
    await asyncio.sleep(PAUSE_S)
    os.kill(node.pid, signal.SIGTERM)
    await asyncio.to_thread(
        node.wait_for_event, lambda e: e.get("event") == "node_stop", "node_stop"
    )
    await asyncio.sleep(PAUSE_S)

    status, body = await batch.finish()

    assert node.wait_exit() == 0
    assert status == 201, body
    assert len(body["tracking_numbers"]) == SLOW_BATCH_PARCELS


@pytest.mark.slow
@pytest.mark.skipif(
    find_libfaketime() is None,
    reason="the faketime package (libfaketime) is not installed: the clock cannot be set back",
)
async def test_a_restart_with_the_clock_30s_back_answers_at_once_and_repeats_nothing(
    nodes: NodeSet,
) -> None:
    """Restarted with its clock 30 s back, a node is ready at once and each worker mints later."""
    node = nodes.start(name="shared", node_id=0, processes=2, args=DRAIN_ARGS)
    node.wait_ready()
    # Short-lived connections first, so that both workers have issued numbers.
    spread = await run_load(
        [node.url(SAMPLE_PATH)], concurrency=8, total=WARMUP_ANSWERS, reconnect_every=20
    )
    drain = await _sigterm_under_load(node)
    assert drain.exit_code == 0
    assert spread.failures == []
    before = decode_answers([*spread.answers, *drain.load.answers])
    last_before = _last_ms_by_worker(before)
    assert set(last_before) == {0, 1}

    started = time.monotonic()
    restarted = nodes.start(state_dir=node.state_dir, node_id=0, processes=2, faketime=CLOCK_BACK)
    restarted.wait_ready(timeout=READY_WITHIN_S * 2)
    status, first, _ = restarted.get(SAMPLE_PATH)
    ready_s = time.monotonic() - started
    assert status == 201, first
    assert ready_s < READY_WITHIN_S

    # The clock really is back: the node logs in its own time, 30 s behind ours.
    start_line = restarted.events_named("node_start")[0]
    assert time.time() - _log_time(start_line) >= CLOCK_BACK_SEEN_MS / 1000
    # And each worker anchored its clock at its stored floor, at or past the last number it
    # issued, while its wall clock reads 30 s less than ours: so it runs ahead of that wall
    # clock by at least 30 s less the time since that number. Without the set-back clock it
    # would be ahead by at most a lease.
    now_ms = time.time_ns() // 1_000_000
    readiness = _readiness_by_worker(restarted, {0, 1})
    for worker_id, ready in readiness.items():
        least_ms = CLOCK_BACK_MS - (now_ms - last_before[worker_id]) - CLOCK_SLACK_MS
        assert least_ms >= BEYOND_LEASE_MS, "the restart came too late to show the clock"
        assert ready["clock"]["ahead_of_wall_clock_ms"] >= least_ms, (worker_id, ready)

    async with asyncio.timeout(LOAD_TIMEOUT_S):
        after_load = await run_load(
            [restarted.url(SAMPLE_PATH)],
            concurrency=8,
            total=WARMUP_ANSWERS,
            reconnect_every=20,
        )
    assert after_load.failures == []
    after = decode_answers([Answer.from_body(first), *after_load.answers])
    assert duplicates(d.tracking_number for d in [*before, *after]) == []
    first_after = _first_ms_by_worker(after)
    assert set(first_after) == {0, 1}
    for worker_id, first_ms in first_after.items():
        assert first_ms > last_before[worker_id], f"worker {worker_id} went back in time"
    assert restarted.stop() == 0


def _last_ms_by_worker(numbers: list[Decoded]) -> dict[int, int]:
    last: dict[int, int] = {}
    for number in numbers:
        last[number.worker_id] = max(last.get(number.worker_id, 0), number.unix_ms)
    return last


def _first_ms_by_worker(numbers: list[Decoded]) -> dict[int, int]:
    first: dict[int, int] = {}
    for number in numbers:
        first[number.worker_id] = min(first.get(number.worker_id, number.unix_ms), number.unix_ms)
    return first


def _readiness_by_worker(node: LiveNode, worker_ids: set[int]) -> dict[int, Any]:
    """/readyz of each worker, asked on fresh connections until every worker has answered."""
    seen: dict[int, Any] = {}
    for _ in range(200):
        status, body, _ = node.get("/readyz")
        assert status == 200, body
        seen.setdefault(body["worker_id"], body)
        if set(seen) == worker_ids:
            return seen
    raise AssertionError(f"only workers {sorted(seen)} answered /readyz")


def test_a_second_node_with_the_same_node_id_and_state_dir_refuses_to_start(
    nodes: NodeSet,
) -> None:
    """A second node claiming the same worker IDs exits non-zero naming them; the first serves."""
    first = nodes.start(name="shared", node_id=0, processes=2)
    first.wait_ready()
    status, before, _ = first.get(SAMPLE_PATH)
    assert status == 201
    holder = first.workers()[0]

    second = nodes.start(state_dir=first.state_dir, node_id=0, processes=2)
    code = second.wait_exit()

    assert code != 0
    message = second.stderr_text
    assert re.search(
        rf"worker ID {holder.worker_id} is already held by process {holder.pid}\b", message
    ), message
    assert "Traceback" not in message
    assert second.events_named("node_start") == []
    assert first.returncode is None
    status, after, _ = first.get(SAMPLE_PATH)
    assert status == 201
    assert after["tracking_number"] != before["tracking_number"]
    assert first.get("/readyz")[0] == 200
    assert first.stop() == 0


@pytest.mark.slow
def test_a_worker_that_cannot_write_its_lease_stops_minting_at_the_lease(
    nodes: NodeSet,
) -> None:
    """Lease writes failing: /readyz says so, numbers stop at the stored lease with 503, resume."""
    node = nodes.start(node_id=0, processes=1, args=["--lease-seconds", "3"])
    node.wait_ready()
    # Root ignores file modes, so the fault is a directory where the worker writes its
    # temporary lease file: opening it for writing fails with EISDIR for every user.
    blocker = node.state_dir / "worker-0000.lease.tmp"
    deadline = time.monotonic() + 10
    while True:
        try:
            blocker.mkdir()
            break
        except FileExistsError:
            # The worker is writing its lease right now; it renames the file away at once.
            assert time.monotonic() < deadline
            time.sleep(0.001)
    # With the temporary name taken, the lease file can no longer change.
    stored = _lease_until_ms(node, 0)

    status, ready, _ = _poll(node, "/readyz", until=503, timeout=5)
    assert ready["lease"]["state"] == "failing"
    assert "Is a directory" in ready["lease"]["error"]

    minted_ms: list[int] = []
    status, body, headers = _poll(node, SAMPLE_PATH, until=503, timeout=10, minted=minted_ms)
    assert int(headers["Retry-After"]) >= 1
    assert "retry" in body["error"]
    assert minted_ms, "no number was minted between the failed renewal and the lease's end"
    assert max(minted_ms) <= stored, "a number was minted past the durable lease"

    blocker.rmdir()
    _poll(node, "/readyz", until=200, timeout=5)
    status, body, _ = node.get(SAMPLE_PATH)
    assert status == 201
    assert node.stop() == 0
    assert node.events_named("lease_failed")


def _poll(
    node: LiveNode,
    path: str,
    *,
    until: int,
    timeout: float,
    minted: list[int] | None = None,
) -> tuple[int, Any, Mapping[str, str]]:
    """GET ``path`` until it answers ``until``; the mint times of 201 answers go to ``minted``."""
    deadline = time.monotonic() + timeout
    while True:
        status, body, headers = node.get(path)
        if status == 201 and minted is not None:
            minted.append(decode_answers([Answer.from_body(body)])[0].unix_ms)
        if status == until:
            return status, body, headers
        assert time.monotonic() < deadline, f"{path} never answered {until}: {status} {body}"
        time.sleep(0.02)
