"""Over HTTP, one process: the service against the framework's ceiling (DESIGN §8).

    python benchmarks/run_all.py --only http,batch,sweep [options]   (or this file, same options)

* http: ``GET /api/next-tracking-number`` with the sample request of DESIGN §1, on
  ``--connections`` keep-alive connections; a warm-up, then ``--duration`` seconds measured; the
  ceiling and the service in ``--rounds`` interleaved rounds (ceiling, service, ceiling,
  service), plus the service with its metrics off when ``serve`` has ``--no-metrics``.
* batch: the same for ``POST /api/tracking-numbers`` with 1,000 sample parcels a request, on
  ``--batch-connections``; the figure is numbers a second. The ceiling reads the body and
  answers a constant body of 1,000 numbers.
* sweep: requests a second at 1 to 256 connections, a short run each, for the plot.

Every server runs on one CPU and wrk on another (``taskset``). Results are appended to
``benchmarks/results/{http,batch,concurrency}.jsonl``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import (
    BATCH_PATH,
    BATCH_SIZE,
    CEILING,
    SAMPLE_PARCEL,
    SERVICE,
    SINGLE_PATH,
    BenchError,
    Goal,
    Load,
    Options,
    Server,
    append_results,
    http_request,
    run_wrk,
    running_servers,
    section_record,
    service_has_metrics_switch,
    shown,
)

HTTP_RPS_RATIO_GOAL = 0.85
HTTP_P99_RATIO_GOAL = 1.5
BATCH_NUMBERS_GOAL = 200_000
# A 1,000-parcel request takes milliseconds; wrk's default 2 s timeout would count a slow one
# under load as an error rather than as latency.
BATCH_TIMEOUT_S = 10
SWEEP_WARMUP_S = 1


def measure(
    server: Server,
    path: str,
    opts: Options,
    *,
    connections: int,
    seconds: int,
    warmup: int,
    body_file: Path | None = None,
    timeout_s: int = 2,
) -> Load:
    """A warm-up run (discarded), then the measured run."""
    url = server.url(path)
    common: dict[str, Any] = {
        "connections": connections,
        "cpu": opts.cpus.load,
        "body_file": body_file,
        "timeout_s": timeout_s,
    }
    if warmup > 0:
        run_wrk(url, seconds=warmup, **common)
    return run_wrk(url, seconds=seconds, server_pid=server.worker_pid, **common)


def check_single(servers: dict[str, Server]) -> None:
    """Each server answers the sample request with 201 and a well-formed number."""
    for name, server in servers.items():
        status, body = http_request(server.url(SINGLE_PATH))
        number = json.loads(body).get("tracking_number", "") if status == 201 else ""
        if len(number) != 16:
            raise BenchError(f"{name} answered the sample request with {status}: {body[:200]!r}")


def check_batch(servers: dict[str, Server], body: bytes) -> None:
    """Each server answers the sample batch with 201 and 1,000 numbers."""
    for name, server in servers.items():
        status, answer = http_request(server.url(BATCH_PATH), body=body, timeout=30)
        numbers = json.loads(answer).get("tracking_numbers", []) if status == 201 else []
        if len(numbers) != BATCH_SIZE:
            raise BenchError(f"{name} answered the sample batch with {status}: {answer[:200]!r}")


def interleave(
    servers: dict[str, Server],
    path: str,
    opts: Options,
    *,
    connections: int,
    body_file: Path | None = None,
    timeout_s: int = 2,
) -> list[dict[str, Any]]:
    """``--rounds`` rounds, each case in turn (ceiling first); one record per measured run."""
    runs: list[dict[str, Any]] = []
    for round_no in range(1, opts.rounds + 1):
        for name, server in servers.items():
            load = measure(
                server,
                path,
                opts,
                connections=connections,
                seconds=opts.duration,
                warmup=opts.warmup,
                body_file=body_file,
                timeout_s=timeout_s,
            )
            print(
                f"  round {round_no}  {name:<22} {load.rps:>10,.0f} req/s  "
                f"p50 {load.p50_ms:6.2f} ms  p99 {load.p99_ms:6.2f} ms  errors {load.error_count}  "
                f"server on CPU {load.server_busy or 0:.0%} "
                f"(+{(load.server_wait_s or 0) / load.seconds:.0%} waiting), "
                f"wrk {load.load_cpu_s / load.seconds:.0%}"
            )
            runs.append({"case": name, "round": round_no, **load.as_record()})
    return runs


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def summarise(runs: list[dict[str, Any]], per_request: int = 1) -> list[dict[str, Any]]:
    """Per case: mean figures over the rounds, and ratios to the ceiling's."""
    cases = list(dict.fromkeys(run["case"] for run in runs))
    ceiling_runs = [run for run in runs if run["case"] == CEILING]
    ceiling_rps = _mean([run["rps"] for run in ceiling_runs])
    ceiling_p99 = _mean([run["p99_ms"] for run in ceiling_runs])
    ceiling_cpu = _mean([run["cpu_us_per_request"] for run in ceiling_runs])
    summary = []
    for case in cases:
        mine = [run for run in runs if run["case"] == case]
        rps = _mean([run["rps"] for run in mine])
        p99 = _mean([run["p99_ms"] for run in mine])
        cpu = _mean([run["cpu_us_per_request"] for run in mine])
        summary.append(
            {
                "case": case,
                "rounds": len(mine),
                "rps": round(rps, 1),
                "per_second": round(rps * per_request),
                "p50_ms": round(_mean([run["p50_ms"] for run in mine]), 3),
                "p99_ms": round(p99, 3),
                "errors": sum(run["errors"] for run in mine),
                "server_busy": round(_mean([run["server_busy"] for run in mine]), 3),
                "server_waiting": round(_mean([run["server_waiting"] for run in mine]), 3),
                "cpu_us_per_request": round(cpu, 2),
                "rps_ratio": round(rps / ceiling_rps, 3),
                "p99_ratio": round(p99 / ceiling_p99, 3),
                # The rate ratio were both servers CPU-bound: the ceiling's CPU per request over
                # this case's. It differs from rps_ratio when wrk, not the ceiling, was the limit.
                "cpu_ratio": round(ceiling_cpu / cpu, 3),
                # Each round's ratio to the ceiling run just before it: the spread of the figure.
                "rps_ratio_by_round": [
                    round(run["rps"] / ceiling["rps"], 3)
                    for run, ceiling in zip(mine, ceiling_runs, strict=True)
                ],
            }
        )
    return summary


def print_summary(summary: list[dict[str, Any]], unit: str, per_request: int = 1) -> None:
    width = max(len(row["case"]) for row in summary)
    head = f"  {'case':<{width}}  {'req/s':>9}"
    if per_request > 1:
        head += f"  {unit:>11}"
    print(
        head + f"  {'p50 ms':>8}  {'p99 ms':>8}  errors  rps/ceiling  p99/ceiling"
        "  server CPU  CPU us/req  CPU ratio"
    )
    for row in summary:
        line = f"  {row['case']:<{width}}  {row['rps']:>9,.0f}"
        if per_request > 1:
            line += f"  {row['per_second']:>11,}"
        print(
            line + f"  {row['p50_ms']:>8.2f}  {row['p99_ms']:>8.2f}  {row['errors']:>6}"
            f"  {row['rps_ratio']:>10.2f}x  {row['p99_ratio']:>10.2f}x"
            f"  {row['server_busy']:>10.0%}  {row['cpu_us_per_request']:>10.1f}"
            f"  {row['cpu_ratio']:>8.2f}x"
        )


def run_http(opts: Options) -> list[Goal]:
    """The single endpoint: service against ceiling, interleaved rounds."""
    metrics_off = service_has_metrics_switch()
    print(
        f"http: GET {SINGLE_PATH.split('?')[0]} (sample query), {opts.connections} connections, "
        f"{opts.warmup} s warm-up + {opts.duration} s, {opts.rounds} round(s)"
        + ("" if metrics_off else "; serve has no --no-metrics: no metrics-off case")
    )
    with running_servers(opts, metrics_off=metrics_off) as (servers, loop):
        check_single(servers)
        runs = interleave(servers, SINGLE_PATH, opts, connections=opts.connections)
    summary = summarise(runs)
    print_summary(summary, "req/s")
    common = {"loop": loop, "connections": opts.connections, "duration_s": opts.duration}
    records = [section_record(opts, "http", **common, **run) for run in runs]
    records += [section_record(opts, "http", **common, summary=True, **row) for row in summary]
    print(f"  appended to {shown(append_results('http', records))}")
    service = next(row for row in summary if row["case"] == SERVICE)
    return [
        Goal(
            "single endpoint: requests/s vs ceiling",
            f">= {HTTP_RPS_RATIO_GOAL:.2f}x",
            f"{service['rps_ratio']:.2f}x ({service['rps']:,.0f} req/s; by CPU per request "
            f"{service['cpu_ratio']:.2f}x)",
            service["rps_ratio"] >= HTTP_RPS_RATIO_GOAL,
        ),
        Goal(
            f"single endpoint: p99 at {opts.connections} connections vs ceiling",
            f"<= {HTTP_P99_RATIO_GOAL:.1f}x",
            f"{service['p99_ratio']:.2f}x ({service['p99_ms']:.1f} ms)",
            service["p99_ratio"] <= HTTP_P99_RATIO_GOAL,
        ),
    ]


def run_batch(opts: Options) -> list[Goal]:
    """The batch endpoint: 1,000 parcels a request, service against ceiling."""
    print(
        f"batch: POST {BATCH_PATH} with {BATCH_SIZE:,} parcels, {opts.batch_connections} "
        f"connections, {opts.warmup} s warm-up + {opts.duration} s, {opts.rounds} round(s)"
    )
    body = json.dumps([SAMPLE_PARCEL] * BATCH_SIZE).encode()
    with (
        tempfile.TemporaryDirectory(prefix="snowflake-bench-") as tmp,
        running_servers(opts) as (servers, loop),
    ):
        body_file = Path(tmp) / "batch.json"
        body_file.write_bytes(body)
        check_batch(servers, body)
        runs = interleave(
            servers,
            BATCH_PATH,
            opts,
            connections=opts.batch_connections,
            body_file=body_file,
            timeout_s=BATCH_TIMEOUT_S,
        )
    summary = summarise(runs, per_request=BATCH_SIZE)
    print_summary(summary, "numbers/s", per_request=BATCH_SIZE)
    common = {
        "loop": loop,
        "connections": opts.batch_connections,
        "duration_s": opts.duration,
        "parcels_per_request": BATCH_SIZE,
        "body_bytes": len(body),
    }
    records = [section_record(opts, "batch", **common, **run) for run in runs]
    records += [section_record(opts, "batch", **common, summary=True, **row) for row in summary]
    print(f"  appended to {shown(append_results('batch', records))}")
    service = next(row for row in summary if row["case"] == SERVICE)
    return [
        Goal(
            "batch: numbers/s per process",
            f">= {BATCH_NUMBERS_GOAL:,}",
            f"{service['per_second']:,} (server CPU {service['server_busy']:.0%})",
            service["per_second"] >= BATCH_NUMBERS_GOAL,
        )
    ]


def run_sweep(opts: Options) -> list[Goal]:
    """Requests/s and p99 against connections, ceiling and service in turn at each level."""
    levels = ", ".join(map(str, opts.sweep_levels))
    print(
        f"sweep: GET, connections {levels}; {SWEEP_WARMUP_S} s warm-up + {opts.sweep_seconds} s "
        "each"
    )
    records = []
    with running_servers(opts) as (servers, loop):
        check_single(servers)
        for connections in opts.sweep_levels:
            cells = []
            for name, server in servers.items():
                load = measure(
                    server,
                    SINGLE_PATH,
                    opts,
                    connections=connections,
                    seconds=opts.sweep_seconds,
                    warmup=SWEEP_WARMUP_S,
                )
                cells.append(
                    f"{name} {load.rps:>8,.0f} req/s p99 {load.p99_ms:7.2f} ms "
                    f"CPU {load.server_busy or 0:4.0%}"
                )
                records.append(
                    section_record(
                        opts,
                        "sweep",
                        loop=loop,
                        case=name,
                        connections=connections,
                        duration_s=opts.sweep_seconds,
                        **load.as_record(),
                    )
                )
            print(f"  {connections:>4} connections: " + "   ".join(cells))
    print(f"  appended to {shown(append_results('concurrency', records))}")
    from plot import plot_concurrency

    plot_concurrency(opts.run_id)
    return []


if __name__ == "__main__":
    from run_all import main

    sys.exit(main(["--only", "http,batch,sweep", *sys.argv[1:]]))
