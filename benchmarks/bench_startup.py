"""Start-up: seconds from exec to answering, the service against the ceiling.

    python benchmarks/run_all.py --only startup [--startup-repeats N]   (or this file)

For the service, from exec to ``GET /readyz`` answering 200 (worker ID claimed, lease written);
for the ceiling, from exec to its one route answering 201. Each is started ``--startup-repeats``
times (default 5), alternating, after one start of each that is not counted (it warms the page
cache); the median counts. Each service start gets a fresh state directory, as on a new
machine. The log lines of the service split its time: exec to listening (imports,
configuration, bind), then to its worker's ``worker_start`` (fork, lease, application).
Results are appended to ``benchmarks/results/startup.jsonl``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import (
    CEILING,
    SERVICE,
    SINGLE_PATH,
    Goal,
    Options,
    Server,
    append_results,
    ceiling_argv,
    event_loop_of,
    median,
    section_record,
    service_argv,
    service_environment,
    shown,
    wait_answering,
)

READY_GOAL_S = 1.0


def time_service(opts: Options, state_dir: Path) -> dict[str, Any]:
    """Start the service once; when it listened, when its worker started, when it was ready."""
    server = Server(
        SERVICE, service_argv(state_dir), cpu=opts.cpus.server, env=service_environment()
    )
    with server:
        ready = wait_answering(server, "/readyz", 200)
        listening = server.wait_event("node_start")[0]
        worker = server.wait_event("worker_start")[0]
        loop = event_loop_of(server.worker_pid)
        stop_s = server.stop()
    began = server.started_at
    return {
        "ready_s": ready - began,
        "listening_s": listening - began,
        "worker_started_s": worker - began,
        "stop_s": stop_s,
        "loop": loop,
    }


def time_ceiling(opts: Options, loop: str) -> dict[str, Any]:
    """Start the ceiling once; when it first answered."""
    server = Server(CEILING, ceiling_argv(loop), cpu=opts.cpus.server)
    with server:
        ready = wait_answering(server, SINGLE_PATH, 201)
        listening = server.wait_event("node_start")[0]
        stop_s = server.stop()
    began = server.started_at
    return {"ready_s": ready - began, "listening_s": listening - began, "stop_s": stop_s}


def run_startup(opts: Options) -> list[Goal]:
    print(f"startup: exec to answering, {opts.startup_repeats} starts each (median), alternating")
    samples: dict[str, list[dict[str, Any]]] = {CEILING: [], SERVICE: []}
    with tempfile.TemporaryDirectory(prefix="snowflake-bench-") as tmp:
        loop = time_service(opts, Path(tmp) / "warm-up")["loop"]
        time_ceiling(opts, loop)
        for repeat in range(opts.startup_repeats):
            samples[CEILING].append(time_ceiling(opts, loop))
            samples[SERVICE].append(time_service(opts, Path(tmp) / f"state-{repeat}"))
    records = []
    ceiling_ready = median([s["ready_s"] for s in samples[CEILING]])
    for case, runs in samples.items():
        ready = [round(s["ready_s"], 4) for s in runs]
        row: dict[str, Any] = {
            "case": case,
            "ready_s": round(median(ready), 4),
            "ready_s_all": ready,
            "listening_s": round(median([s["listening_s"] for s in runs]), 4),
            "stop_s": round(median([s["stop_s"] for s in runs]), 4),
            "ratio": round(median(ready) / ceiling_ready, 2),
        }
        if case == SERVICE:
            row["worker_started_s"] = round(median([s["worker_started_s"] for s in runs]), 4)
        records.append(section_record(opts, "startup", loop=loop, **row))
        print(
            f"  {case:<8} ready {row['ready_s']:.3f} s (median; all: "
            f"{', '.join(f'{x:.3f}' for x in ready)}), listening at {row['listening_s']:.3f} s"
            + (
                f", worker started at {row['worker_started_s']:.3f} s"
                if "worker_started_s" in row
                else ""
            )
            + f"; stop {row['stop_s']:.3f} s; {row['ratio']:.2f}x ceiling"
        )
    print(f"  appended to {shown(append_results('startup', records))}")
    service = records[-1]
    return [
        Goal(
            "start-up: exec to /readyz 200",
            f"<= {READY_GOAL_S:g} s",
            f"{service['ready_s']:.3f} s ({service['ratio']:.1f}x ceiling)",
            service["ready_s"] <= READY_GOAL_S,
        )
    ]


if __name__ == "__main__":
    from run_all import main

    sys.exit(main(["--only", "startup", *sys.argv[1:]]))
