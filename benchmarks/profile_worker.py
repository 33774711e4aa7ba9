"""Where a worker's time goes: py-spy samples of the ceiling and the service under wrk load.

    python benchmarks/run_all.py --only profile [--profile-seconds S] [--connections N]

Both servers run as in the HTTP benchmark (one process each, pinned); each in turn gets the
sample request on ``--connections`` connections while ``py-spy record --nonblocking --idle``
samples its event-loop thread for ``--profile-seconds`` (default 10); then the service gets
the batch request (1,000 parcels) on ``--batch-connections``.

Why not ``--native``: it would show C frames (orjson, system calls), but it stops the process
with ptrace for every sample, and the stops land on system-call boundaries. On a 2-core
virtual machine it put a quarter of the service's samples in ``getpid()``, which costs 0.1 µs
(``python -m timeit -s "import os" "os.getpid()"``), and disagreed with the HTTP benchmark's
metrics-on/metrics-off difference by a factor of five. Sampling without stopping agrees with
it. C code then counts for the Python frame that called it: ``sock.send`` for asyncio's
transport, ``orjson.loads`` for the handler line that calls it (see the top lines).

Writes ``benchmarks/results/profile-<date>.txt``: the share of samples and the microseconds
per request (per parcel for the batch) by category, the service beside the ceiling so the
difference is what the service adds; then the top 30 functions and top 15 lines by own time of
each. Needs py-spy (``.venv/bin/pip install py-spy``); it reads another process's memory, so
it runs as root or with ``CAP_SYS_PTRACE``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench_http import BATCH_TIMEOUT_S
from harness import (
    BATCH_PATH,
    BATCH_SIZE,
    CEILING,
    RESULTS_DIR,
    SAMPLE_PARCEL,
    SERVICE,
    SINGLE_PATH,
    BenchError,
    Cpus,
    Goal,
    Load,
    Options,
    Server,
    run_wrk,
    running_servers,
    shown,
)

RATE_HZ = 1000
# Enough connections for both workers to be busy all the time (the sweep shows the ceiling's is
# not at 64), so a sample's share is a share of work rather than partly of waiting for requests.
PROFILE_CONNECTIONS = 256
TOP = 30
TOP_LINES = 15
# Stacks of the event-loop thread; the executor's idle threads (lease writes) are left out.
MAIN_THREAD_MARK = "BaseEventLoop.run_forever ("
# Frame text to category, tried on each frame from the innermost outwards: the first match
# names the category of a sample. A frame matches the first category in this order, so the
# more specific marks come first.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        # The transport's own frames are where the socket system calls happen; the selector's
        # is epoll_wait. (The libc names match samples taken with --native.)
        "socket send/recv, epoll_wait (system calls)",
        (
            "_SelectorSocketTransport.write (",
            "_SelectorSocketTransport._read_ready__data_received (",
            "EpollSelector.select (",
            "send (libc",
            "recv (libc",
            "epoll_wait (libc",
        ),
    ),
    ("JSON encode and decode (orjson)", ("(orjson", "json_response (")),
    ("metrics (prometheus_client)", ("prometheus_client/", "snowflake_tracker/web/metrics")),
    ("query parsing (request.query, yarl, multidict)", ("BaseRequest.query (", "query_params (")),
    ("validation", ("snowflake_tracker/validation", "snowflake_tracker/countries")),
    ("minting and rendering", ("snowflake_tracker/ids/", "snowflake_tracker/minting")),
    (
        "response: build, headers, write",
        ("aiohttp/web_response", "aiohttp/http_writer", "_http_writer"),
    ),
    ("error middleware (service)", ("snowflake_tracker/web/errors",)),
    (
        "aiohttp: dispatch (routing, middleware chain, Application._handle)",
        ("aiohttp/web_app", "aiohttp/web_urldispatcher", "aiohttp/web_middlewares"),
    ),
    (
        "aiohttp: connection, HTTP parsing, Request object",
        (
            "aiohttp/web_protocol",
            "aiohttp/http_parser",
            "_http_parser",
            "aiohttp/web_request",
            "aiohttp/streams",
            "aiohttp/base_protocol",
        ),
    ),
    ("handler's own lines (service)", ("snowflake_tracker/web/handlers",)),
    ("benchmark's handler (ceiling)", ("ceiling.py",)),
    # Python frames only: C code of _asyncio (get_event_loop, task steps) counts for its caller.
    ("event loop (asyncio)", ("asyncio/",)),
)
OTHER = "other"
_LINE = re.compile(r":\d+\)$")


@dataclass(frozen=True, slots=True)
class Profile:
    """One server's samples: own time by function, samples by category, and its load."""

    name: str
    samples: int
    own: Counter[str]
    inclusive: Counter[str]
    callers: Counter[tuple[str, str]]
    lines: Counter[str]
    categories: Counter[str]
    rps: float
    seconds: int
    busy: float
    errors: int
    # Units of work in one request: 1, or the parcels of a batch request.
    per: int = 1

    def top_caller(self, function: str) -> str:
        mine = [(n, caller) for (callee, caller), n in self.callers.items() if callee == function]
        return max(mine)[1] if mine else "-"

    def us_per_unit(self, count: int) -> float:
        """Microseconds a request (or parcel) spends in the samples counted."""
        if not (self.samples and self.rps):
            return 0.0
        return count / self.samples * 1e6 / (self.rps * self.per)


def categorise(frames: list[str]) -> str:
    for frame in reversed(frames):
        for category, marks in CATEGORIES:
            if any(mark in frame for mark in marks):
                return category
    return OTHER


def read_samples(
    raw: str, name: str, load: Load, seconds: int, errors: int, per: int = 1
) -> Profile:
    """Fold py-spy's raw output (``frame;frame;... count`` per line) into a Profile."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    callers: Counter[tuple[str, str]] = Counter()
    lines: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if MAIN_THREAD_MARK not in stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        functions = [_LINE.sub(")", frame) for frame in frames]
        samples += count
        own[functions[-1]] += count
        lines[frames[-1]] += count
        # The nearest Python caller: for C code (getpid, orjson) the C frames between say less.
        caller = next((f for f in reversed(functions[:-1]) if f.endswith(".py)")), None)
        if caller is not None:
            callers[functions[-1], caller] += count
        for function in set(functions):
            inclusive[function] += count
        categories[categorise(frames)] += count
    return Profile(
        name,
        samples,
        own,
        inclusive,
        callers,
        lines,
        categories,
        load.rps,
        seconds,
        load.server_busy or 0.0,
        errors,
        per,
    )


def py_spy() -> str:
    found = Path(sys.executable).parent / "py-spy"
    path = str(found) if found.exists() else shutil.which("py-spy")
    if path is None:
        raise BenchError("py-spy is not installed: .venv/bin/pip install py-spy")
    return path


def profile_server(
    server: Server,
    opts: Options,
    workdir: Path,
    *,
    name: str,
    path: str = SINGLE_PATH,
    connections: int,
    body_file: Path | None = None,
    per: int = 1,
) -> Profile:
    """Load the server with wrk in the background and sample its worker meanwhile."""
    output = workdir / f"{len(list(workdir.iterdir()))}.raw"
    warmup = max(1, opts.warmup)
    wrk_seconds = warmup + opts.profile_seconds + 2
    spy = [
        *Cpus.prefix(opts.cpus.load),
        py_spy(),
        "record",
        "--pid",
        str(server.worker_pid),
        "--duration",
        str(opts.profile_seconds),
        "--rate",
        str(RATE_HZ),
        "--nonblocking",
        "--idle",
        "--format",
        "raw",
        "--output",
        str(output),
    ]
    # wrk loads the server on a thread; py-spy starts after the warm-up, in the foreground.
    loads: list[Load] = []
    loader = threading.Thread(
        target=lambda: loads.append(
            run_wrk(
                server.url(path),
                connections=connections,
                seconds=wrk_seconds,
                cpu=opts.cpus.load,
                body_file=body_file,
                timeout_s=BATCH_TIMEOUT_S,
                server_pid=server.worker_pid,
            )
        ),
        daemon=True,
    )
    loader.start()
    time.sleep(warmup)
    sampler = subprocess.run(
        spy,
        capture_output=True,
        text=True,
        check=False,
        timeout=opts.profile_seconds + 60,
        start_new_session=True,
    )
    loader.join()
    messages = (sampler.stdout + sampler.stderr).strip()
    if sampler.returncode != 0 or not output.exists():
        raise BenchError(
            f"py-spy failed on {server.name} (status {sampler.returncode}):\n{messages}"
        )
    if not loads:
        raise BenchError(f"wrk failed while {server.name} was profiled")
    load = loads[0]
    counts = re.search(r"Samples: (\d+) Errors: (\d+)", messages)
    errors = int(counts.group(2)) if counts else 0
    print(
        f"  {name}: {load.rps:,.0f} req/s under the profiler, worker on its CPU "
        f"{load.server_busy or 0:.0%}" + (f"; py-spy {counts.group(0)}" if counts else "")
    )
    return read_samples(output.read_text(), name, load, opts.profile_seconds, errors, per)


def format_table(profiles: list[Profile], unit: str) -> list[str]:
    """Categories down, one column pair (share of samples, microseconds) per profile."""
    first = max(len(category) for category, _ in CATEGORIES)
    widths = [max(9, len(p.name) + 3) for p in profiles]
    header = f"{'category':<{first}}" + "".join(
        f"{p.name + ' %':>{w}}{unit:>10}" for p, w in zip(profiles, widths, strict=True)
    )
    lines = [header, "-" * len(header)]

    def row(label: str, counts: list[int]) -> str:
        text = f"{label:<{first}}"
        for p, w, count in zip(profiles, widths, counts, strict=True):
            text += f"{100 * count / p.samples:>{w - 1}.1f}%{p.us_per_unit(count):>10.2f}"
        return text

    for category in [c for c, _ in CATEGORIES] + [OTHER]:
        counts = [p.categories[category] for p in profiles]
        if any(counts):
            lines.append(row(category, counts))
    lines.append(row("total", [p.samples for p in profiles]))
    rates = "; ".join(
        f"{p.name} {p.rps:,.0f} req/s, worker on its CPU {p.busy:.0%}, {p.samples} samples "
        f"({p.errors} unreadable)"
        for p in profiles
    )
    return [*lines, "", f"Under the profiler: {rates}.", ""]


def format_top(profile: Profile) -> list[str]:
    lines = [
        f"{profile.name}: top {TOP} functions by own time (innermost frame of a sample)",
        f"{'own %':>7} {'incl %':>7}  function (file)  <- its commonest Python caller",
    ]
    for function, count in profile.own.most_common(TOP):
        own = 100 * count / profile.samples
        inclusive = 100 * profile.inclusive[function] / profile.samples
        lines.append(
            f"{own:>6.1f}% {inclusive:>6.1f}%  {function}  <- {profile.top_caller(function)}"
        )
    lines += ["", f"{profile.name}: top {TOP_LINES} lines by own time", f"{'own %':>7}  line"]
    for line, count in profile.lines.most_common(TOP_LINES):
        lines.append(f"{100 * count / profile.samples:>6.1f}%  {line}")
    return [*lines, ""]


def format_report(single: list[Profile], batch: Profile, opts: Options) -> str:
    facts = opts.facts
    lines = [
        f"Profile of one worker under load, {facts['at']}",
        f"Python {facts['python']}, aiohttp {facts['aiohttp']}, multidict {facts['multidict']}, "
        f"yarl {facts['yarl']}, orjson {facts['orjson']}, commit {facts['commit']}",
        f"{facts['cpus']} CPUs ({facts['cpu_model']}), kernel {facts['kernel']}, "
        f"load average {facts['load_average_1m']} at start",
        "Each server is one process pinned to one CPU; wrk (one thread) runs on the other.",
        f"Sampler: py-spy record --nonblocking --idle --rate {RATE_HZ} for "
        f"{opts.profile_seconds} s, after a {max(1, opts.warmup)} s warm-up; event-loop thread",
        "only (the docstring of benchmarks/profile_worker.py says why not --native).",
        "Categories: a sample counts for the first category met walking out from its innermost",
        "Python frame; C code (orjson, socket calls) counts for the frame that called it.",
        "Microseconds = share of samples x (1 s / requests per second): the worker is busy the",
        "whole time, so its time per request is the inverse of its rate.",
        "",
        f"GET /api/next-tracking-number (sample request), {PROFILE_CONNECTIONS} connections",
        "",
        *format_table(single, "us/req"),
        f"POST /api/tracking-numbers, {BATCH_SIZE:,} parcels a request, "
        f"{opts.batch_connections} connections",
        "",
        *format_table([batch], "us/parcel"),
    ]
    for profile in [*single, batch]:
        lines += format_top(profile)
    return "\n".join(lines)


def run_profile(opts: Options) -> list[Goal]:
    print(
        f"profile: py-spy on each worker, {opts.profile_seconds} s under wrk "
        f"-c{PROFILE_CONNECTIONS} (batch: -c{opts.batch_connections})"
    )
    single = []
    with (
        tempfile.TemporaryDirectory(prefix="snowflake-bench-") as tmp,
        running_servers(opts) as (servers, _),
    ):
        workdir = Path(tmp)
        for name in (CEILING, SERVICE):
            single.append(
                profile_server(
                    servers[name], opts, workdir, name=name, connections=PROFILE_CONNECTIONS
                )
            )
        body_file = workdir / "batch.json"
        body_file.write_text(json.dumps([SAMPLE_PARCEL] * BATCH_SIZE))
        batch = profile_server(
            servers[SERVICE],
            opts,
            workdir,
            name="service, batch",
            path=BATCH_PATH,
            connections=opts.batch_connections,
            body_file=body_file,
            per=BATCH_SIZE,
        )
    report = format_report(single, batch, opts)
    print(report)
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    path = RESULTS_DIR / f"profile-{date}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report + "\n")
    print(f"  written to {shown(path)}")
    return []


if __name__ == "__main__":
    from run_all import main

    sys.exit(main(["--only", "profile", *sys.argv[1:]]))
