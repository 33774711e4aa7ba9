"""The concurrency plot: requests/s, p99 latency and worker CPU against connections.

    python benchmarks/plot.py [--run RUN_ID]

Reads ``benchmarks/results/concurrency.jsonl`` (written by the sweep, ``run_all.py --only
sweep``), takes the latest run unless told which, and writes
``benchmarks/results/concurrency.png``. Needs matplotlib, which the service does not: ``make
bench`` installs it into the virtual environment.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "results" / "concurrency.jsonl"
OUTPUT = HERE / "results" / "concurrency.png"


def load_run(run_id: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The sweep records of one run (the latest when ``run_id`` is None)."""
    records = [json.loads(line) for line in SOURCE.read_text().splitlines() if line.strip()]
    if not records:
        raise SystemExit(f"no sweep results in {SOURCE.name}; run the sweep first")
    chosen = run_id or records[-1]["run_id"]
    return chosen, [r for r in records if r["run_id"] == chosen]


def plot_concurrency(run_id: str | None = None, output: Path = OUTPUT) -> Path | None:
    """Draw one run's sweep; returns the PNG's path, or None when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        print("  plot skipped: matplotlib is not installed (.venv/bin/pip install matplotlib)")
        return None
    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    chosen, records = load_run(run_id)
    series: dict[str, list[tuple[int, float, float, float]]] = defaultdict(list)
    for record in records:
        busy = 100 * (record.get("server_busy") or 0.0)
        point = (record["connections"], record["rps"], record["p99_ms"], busy)
        series[record["case"]].append(point)
    first = records[0]
    figure, (rate_axes, latency_axes, cpu_axes) = pyplot.subplots(
        1, 3, figsize=(15, 4.4), constrained_layout=True
    )
    for case, points in series.items():
        points.sort()
        connections = [p[0] for p in points]
        rate_axes.plot(connections, [p[1] for p in points], marker="o", label=case)
        latency_axes.plot(connections, [p[2] for p in points], marker="o", label=case)
        cpu_axes.plot(connections, [p[3] for p in points], marker="o", label=case)
    for axes in (rate_axes, latency_axes, cpu_axes):
        axes.set_xscale("log", base=2)
        axes.set_xticks(sorted({r["connections"] for r in records}))
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.set_xlabel("concurrent keep-alive connections (wrk, 1 thread)")
        axes.grid(True, which="major", alpha=0.3)
        axes.legend()
    rate_axes.set_ylabel("requests per second")
    rate_axes.set_ylim(bottom=0)
    rate_axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    latency_axes.set_ylabel("p99 latency (ms)")
    latency_axes.set_yscale("log")
    latency_axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    latency_axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    latency_axes.yaxis.set_minor_formatter(NullFormatter())
    # Below 100%, the server waited for requests: the load generator, not it, set the rate.
    cpu_axes.set_ylabel("worker's time on its CPU (%)")
    cpu_axes.set_ylim(0, 105)
    figure.suptitle(
        "GET /api/next-tracking-number, one process pinned to one CPU, wrk on the other, "
        f"{first['duration_s']} s a point; Python {first['python']}, aiohttp {first['aiohttp']}, "
        f"{first['loop']} ({first['at'][:10]})",
        fontsize=10,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110)
    pyplot.close(figure)
    print(f"  plot of run {chosen} written to {output.relative_to(HERE.parent)}")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=None, help="run_id to plot (default: the latest)")
    args = parser.parse_args(argv)
    return 0 if plot_concurrency(args.run) else 1


if __name__ == "__main__":
    sys.exit(main())
