"""Memory: the worker's resident set after 10,000 requests and after 1,000,000.

    python benchmarks/run_all.py --only memory [--memory-requests N]   (or this file)

One service process, pinned like the HTTP benchmarks, driven with the sample request on
``--connections`` connections. wrk stops itself after a given number of responses
(``BENCH_STOP_AFTER`` in ``wrk/bench.lua``), so the worker's VmRSS (from /proc/PID/status;
the worker's PID is the ``child_pid`` of the supervisor's ``worker_spawn`` log line) is read at
fixed request counts: before any request, then at 10,000, 100,000, 250,000, 500,000 and
``--memory-requests`` (default 1,000,000). The ceiling's RSS after 10,000 requests is the
framework's own share. Results are appended to ``benchmarks/results/memory.jsonl``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from harness import (
    CEILING,
    SERVICE,
    SINGLE_PATH,
    Goal,
    Options,
    Server,
    append_results,
    rss_kib,
    run_wrk,
    running_servers,
    section_record,
    shown,
)

CHECKPOINTS = (10_000, 100_000, 250_000, 500_000, 1_000_000)
FIRST = CHECKPOINTS[0]
RSS_GOAL_MB = 60.0
# Growth below this between the first and the last checkpoint is allocator noise, not a leak.
GROWTH_TOLERANCE_MB = 2.0
# Long enough for any checkpoint at the slowest rate seen; wrk stops itself well before.
MAX_RUN_S = 900
SETTLE_S = 0.5


def drive_to(server: Server, opts: Options, target: int, done: int) -> int:
    """Send requests until ``target`` have been answered in all; returns the new total."""
    load = run_wrk(
        server.url(SINGLE_PATH),
        connections=opts.connections,
        seconds=MAX_RUN_S,
        cpu=opts.cpus.load,
        stop_after=target - done,
    )
    if load.error_count:
        print(f"  warning: {load.error_count} errors from {server.name}: {load.errors}")
    return done + load.requests


def sample(server: Server, requests: int) -> dict[str, Any]:
    time.sleep(SETTLE_S)
    kib = rss_kib(server.worker_pid)
    return {
        "requests": requests,
        "rss_mb": round(kib["VmRSS"] / 1024, 2),
        "rss_anon_mb": round(kib.get("RssAnon", 0) / 1024, 2),
        "hwm_mb": round(kib["VmHWM"] / 1024, 2),
    }


def run_memory(opts: Options) -> list[Goal]:
    checkpoints = [n for n in CHECKPOINTS if n < opts.memory_requests] + [opts.memory_requests]
    print(
        f"memory: worker RSS at {', '.join(f'{n:,}' for n in [0, *checkpoints])} requests, "
        f"{opts.connections} connections"
    )
    with running_servers(opts) as (servers, loop):
        service, ceiling = servers[SERVICE], servers[CEILING]
        samples = [sample(service, 0)]
        done = 0
        started = time.perf_counter()
        for target in checkpoints:
            done = drive_to(service, opts, target, done)
            samples.append(sample(service, done))
            rate = done / (time.perf_counter() - started)
            print(
                f"  {done:>9,} requests: RSS {samples[-1]['rss_mb']:6.2f} MB  "
                f"(anon {samples[-1]['rss_anon_mb']:.2f} MB, peak {samples[-1]['hwm_mb']:.2f} MB;"
                f" {rate:,.0f} req/s overall)"
            )
        ceiling_before = sample(ceiling, 0)
        ceiling_after = sample(ceiling, drive_to(ceiling, opts, FIRST, 0))
    print(
        f"  ceiling: RSS {ceiling_before['rss_mb']:.2f} MB at start, "
        f"{ceiling_after['rss_mb']:.2f} MB after {ceiling_after['requests']:,} requests"
    )
    first = next(s for s in samples if s["requests"] >= FIRST)
    last = samples[-1]
    growth = round(last["rss_mb"] - first["rss_mb"], 2)
    print(f"  growth from {first['requests']:,} to {last['requests']:,} requests: {growth:+.2f} MB")
    records = [
        section_record(opts, "memory", loop=loop, case=SERVICE, **s, summary=False) for s in samples
    ]
    records += [
        section_record(opts, "memory", loop=loop, case=CEILING, **s, summary=False)
        for s in (ceiling_before, ceiling_after)
    ]
    records.append(
        section_record(
            opts,
            "memory",
            loop=loop,
            case=SERVICE,
            summary=True,
            rss_first_mb=first["rss_mb"],
            rss_last_mb=last["rss_mb"],
            requests_first=first["requests"],
            requests_last=last["requests"],
            growth_mb=growth,
            ceiling_rss_mb=ceiling_after["rss_mb"],
        )
    )
    print(f"  appended to {shown(append_results('memory', records))}")
    peak = max(s["rss_mb"] for s in samples)
    return [
        Goal("memory: worker RSS", f"<= {RSS_GOAL_MB:g} MB", f"{peak:.1f} MB", peak <= RSS_GOAL_MB),
        Goal(
            f"memory: RSS growth, {first['requests']:,} to {last['requests']:,} requests",
            f"none (< {GROWTH_TOLERANCE_MB:g} MB)",
            f"{growth:+.2f} MB",
            growth < GROWTH_TOLERANCE_MB,
        ),
    ]


if __name__ == "__main__":
    from run_all import main

    sys.exit(main(["--only", "memory", *sys.argv[1:]]))
