"""The benchmark suite in one run: over HTTP against the framework's ceiling, and in process.

    python benchmarks/run_all.py [--quick] [--only http,batch,...] [--duration S]
                                 [--connections N] [--rounds R] [...]
    make bench                  # installs wrk and matplotlib when it can, then runs this

Sections (all but ``profile`` by default, in this order):

* ``http``: ``GET /api/next-tracking-number``, the service against the ceiling, interleaved;
* ``batch``: ``POST /api/tracking-numbers`` with 1,000 parcels a request;
* ``startup``: seconds from exec to answering;
* ``memory``: the worker's RSS after 10,000 and after 1,000,000 requests;
* ``sweep``: requests/s against 1 to 256 connections, and its plot;
* ``core``: ``bench_core.py``, minting and rendering in process;
* ``profile``: where a worker's time goes, with py-spy (not run unless asked).

Prints each section's figures as it goes and a table of the goals at the end; appends JSON
lines to ``benchmarks/results/``. The exit status is 0 when every section ran, whether or not
the goals were met: figures are reported, never asserted.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from bench_http import run_batch, run_http, run_sweep
from bench_memory import run_memory
from bench_startup import run_startup
from harness import (
    HERE,
    BenchError,
    Cpus,
    Goal,
    Options,
    append_results,
    machine_facts,
    shown,
)
from profile_worker import run_profile

SWEEP_LEVELS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# Flag defaults, then what --quick changes (a smoke run of about two minutes).
DEFAULTS: dict[str, Any] = {
    "duration": 10,
    "warmup": 3,
    "connections": 64,
    "rounds": 2,
    "batch_connections": 8,
    "startup_repeats": 5,
    "memory_requests": 1_000_000,
    "sweep_seconds": 3,
    "profile_seconds": 10,
    "core_seconds": 2.0,
}
QUICK: dict[str, Any] = {
    "duration": 2,
    "warmup": 1,
    "rounds": 1,
    "startup_repeats": 2,
    "memory_requests": 50_000,
    "sweep_seconds": 1,
    "profile_seconds": 3,
    "core_seconds": 0.3,
}
QUICK_SWEEP_LEVELS = (1, 8, 64, 256)


def run_core(opts: Options) -> list[Goal]:
    """bench_core.py as it stands, on the server CPU."""
    print(f"core: bench_core.py, {opts.core_seconds:g} s per case")
    argv = [sys.executable, str(HERE / "bench_core.py"), "--seconds", str(opts.core_seconds)]
    subprocess.run([*Cpus.prefix(opts.cpus.server), *argv], check=True)
    return []


SECTIONS: dict[str, Callable[[Options], list[Goal]]] = {
    "http": run_http,
    "batch": run_batch,
    "startup": run_startup,
    "memory": run_memory,
    "sweep": run_sweep,
    "core": run_core,
    "profile": run_profile,
}
NOT_BY_DEFAULT = frozenset({"profile"})


def parse_sections(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"sections are {', '.join(SECTIONS)} (comma-separated), not {text!r}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])

    def option(flag: str, kind: type, text: str) -> None:
        name = flag.removeprefix("--").replace("-", "_")
        parser.add_argument(
            flag, type=kind, default=None, help=f"{text} (default {DEFAULTS[name]})"
        )

    parser.add_argument(
        "--only",
        type=parse_sections,
        default=None,
        metavar="SECTIONS",
        help=f"comma-separated, from: {', '.join(SECTIONS)} (default: all but profile)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke run: every section, briefly"
    )
    option("--duration", int, "seconds measured per run")
    option("--warmup", int, "seconds of load before each measured run")
    option("--connections", int, "keep-alive connections for the single endpoint")
    option("--rounds", int, "interleaved rounds of ceiling and service")
    option("--batch-connections", int, "connections for the batch endpoint")
    option("--startup-repeats", int, "starts of each server")
    option("--memory-requests", int, "requests before the last RSS reading")
    option("--sweep-seconds", int, "seconds measured per sweep point")
    option("--profile-seconds", int, "seconds sampled by py-spy per server")
    option("--core-seconds", float, "seconds per bench_core case")
    return parser


def resolve(args: argparse.Namespace) -> Options:
    values = DEFAULTS | (QUICK if args.quick else {})
    for name in DEFAULTS:
        given = getattr(args, name)
        if given is not None:
            values[name] = given
    now = datetime.now(UTC)
    return Options(
        **values,
        sweep_levels=QUICK_SWEEP_LEVELS if args.quick else SWEEP_LEVELS,
        quick=args.quick,
        cpus=Cpus.pick(),
        run_id=now.strftime("%Y%m%dT%H%M%SZ"),
        facts=machine_facts(),
    )


def print_goals(goals: list[Goal]) -> None:
    if not goals:
        return
    width = max(len(goal.name) for goal in goals)
    target = max(len(goal.target) for goal in goals)
    print(f"\n{'goal':<{width}}  {'target':<{target}}  measured")
    for goal in goals:
        verdict = "met" if goal.met else "NOT MET"
        print(f"{goal.name:<{width}}  {goal.target:<{target}}  {goal.measured}  [{verdict}]")


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Raising unwinds every section's context managers, which stop their servers.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Progress shows as it happens, also when the output goes to a pipe or a file.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sections = args.only or [name for name in SECTIONS if name not in NOT_BY_DEFAULT]
    if shutil.which("wrk") is None and set(sections) - {"core"}:
        print("wrk is not installed: apt-get install wrk (make system-deps does it as root)")
        return 2
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    opts = resolve(args)
    facts = opts.facts
    print(
        f"run {opts.run_id}: Python {facts['python']}, aiohttp {facts['aiohttp']}, "
        f"{facts['wrk']}, {facts['cpus']} CPUs ({facts['cpu_model']}), load average "
        f"{facts['load_average_1m']}; servers on CPU {opts.cpus.server}, wrk on CPU "
        f"{opts.cpus.load}" + (" [quick]" if opts.quick else "")
    )
    goals: list[Goal] = []
    for name in sections:
        print()
        try:
            goals += SECTIONS[name](opts)
        except (BenchError, subprocess.CalledProcessError) as exc:
            print(f"{name} failed: {exc}")
            return 1
    print_goals(goals)
    if goals:
        records = [
            {"run_id": opts.run_id, "quick": opts.quick, **facts, **goal.as_record()}
            for goal in goals
        ]
        print(f"appended to {shown(append_results('goals', records))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
