"""What the over-HTTP benchmarks share: servers in their own process groups, wrk, results.

Every server runs in a process group of its own, pinned to one CPU with ``taskset``; wrk runs
pinned to another. A server is stopped with SIGTERM to its group, then SIGKILL when it has not
exited within the timeout, so no benchmark leaves a process behind. Everything listens on
127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS_DIR = HERE / "results"
WRK_SCRIPT = HERE / "wrk" / "bench.lua"
CEILING_SCRIPT = HERE / "ceiling.py"
HOST = "127.0.0.1"

# The sample request of DESIGN §1, and the same parcel as a JSON object for the batch endpoint.
SAMPLE_QUERY = (
    "origin_country_id=MY&destination_country_id=ID&weight=1.234"
    "&created_at=2018-11-20T19:29:32%2B08:00&customer_id=de619854-b59b-425e-9db4-943979e1bd49"
    "&customer_name=RedBox%20Logistics&customer_slug=redbox-logistics"
)
SINGLE_PATH = "/api/next-tracking-number?" + SAMPLE_QUERY
BATCH_PATH = "/api/tracking-numbers"
SAMPLE_PARCEL = {
    "origin_country_id": "MY",
    "destination_country_id": "ID",
    "weight": "1.234",
    "created_at": "2018-11-20T19:29:32+08:00",
    "customer_id": "de619854-b59b-425e-9db4-943979e1bd49",
    "customer_name": "RedBox Logistics",
    "customer_slug": "redbox-logistics",
}
BATCH_SIZE = 1000

CEILING = "ceiling"
SERVICE = "service"
SERVICE_NO_METRICS = "service, metrics off"

STOP_TIMEOUT_S = 15.0
START_TIMEOUT_S = 30.0


class BenchError(RuntimeError):
    """A benchmark could not run (a server did not start, wrk failed); the message says why."""


# --- machine facts and results -------------------------------------------------------------


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "snowflake_tracker"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty else "")


def wrk_version() -> str | None:
    path = shutil.which("wrk")
    if path is None:
        return None
    out = subprocess.run([path, "-v"], capture_output=True, text=True, check=False).stdout
    return out.split("[", 1)[0].strip() or None


def machine_facts() -> dict[str, Any]:
    """What a figure depends on besides the code: when, where, with which versions."""
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "aiohttp": _version("aiohttp"),
        "multidict": _version("multidict"),
        "yarl": _version("yarl"),
        "orjson": _version("orjson"),
        "uvloop": _version("uvloop"),
        "snowflake_tracker": _version("snowflake-tracker"),
        "commit": _git_commit(),
        "wrk": wrk_version(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def append_results(name: str, records: Sequence[dict[str, Any]]) -> Path:
    """Append one JSON line per record to ``benchmarks/results/<name>.jsonl``."""
    path = RESULTS_DIR / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
    return path


def shown(path: Path) -> str:
    """A path relative to the repository, for messages."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(REPO))
    return str(path)


# --- CPUs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cpus:
    """Where servers and the load generator run: one CPU each, or unpinned on one CPU."""

    server: int | None
    load: int | None

    @classmethod
    def pick(cls) -> Cpus:
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) < 2 or shutil.which("taskset") is None:
            print("warning: fewer than 2 usable CPUs (or no taskset): nothing is pinned")
            return cls(None, None)
        return cls(allowed[0], allowed[1])

    @staticmethod
    def prefix(cpu: int | None) -> list[str]:
        return [] if cpu is None else ["taskset", "-c", str(cpu)]


# --- servers ---------------------------------------------------------------------------------


def service_command() -> list[str]:
    """The installed ``snowflake-tracker`` next to this interpreter, else ``-m``."""
    script = Path(sys.executable).parent / "snowflake-tracker"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "snowflake_tracker"]


def service_has_metrics_switch() -> bool:
    """Whether ``serve`` can turn its metrics off (``--no-metrics``)."""
    out = subprocess.run(
        [*service_command(), "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    return "--no-metrics" in out


def service_environment() -> dict[str, str]:
    """This environment without the service's settings, so only the flags given count."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SNOWFLAKE_TRACKER_")
        and key not in ("PORT", "PROMETHEUS_MULTIPROC_DIR")
    }


def service_argv(state_dir: Path, *, metrics: bool = True) -> list[str]:
    argv = [
        *service_command(),
        "serve",
        "--processes",
        "1",
        "--host",
        HOST,
        "--port",
        "0",
        "--state-dir",
        str(state_dir),
    ]
    return argv if metrics else [*argv, "--no-metrics"]


def ceiling_argv(loop: str) -> list[str]:
    return [sys.executable, str(CEILING_SCRIPT), "--host", HOST, "--port", "0", "--loop", loop]


@dataclass
class Server:
    """A server process in its own process group; its JSON log lines on stderr are collected."""

    name: str
    argv: list[str]
    cpu: int | None = None
    env: dict[str, str] | None = None
    process: subprocess.Popen[str] | None = None
    started_at: float = 0.0
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None

    def start(self) -> None:
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            [*Cpus.prefix(self.cpu), *self.argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"{self.name} stderr", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            now = time.perf_counter()
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if isinstance(entry, dict) and "event" in entry:
                        self.events.append((now, entry))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_event(
        self, event: str, timeout: float = START_TIMEOUT_S
    ) -> tuple[float, dict[str, Any]]:
        """The first log entry with this ``event`` and when it arrived; fails if it never does."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for seen in self.events:
                    if seen[1].get("event") == event:
                        return seen
                if self.process is None or self.process.poll() is not None:
                    raise BenchError(f"{self.name} exited before {event!r}:\n{self.tail()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BenchError(
                        f"{self.name}: no {event!r} within {timeout:g} s:\n{self.tail()}"
                    )
                self._changed.wait(min(remaining, 0.05))

    def tail(self, lines: int = 20) -> str:
        with self._changed:
            return "\n".join(self.lines[-lines:])

    @property
    def port(self) -> int:
        return int(self.wait_event("node_start")[1]["port"])

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    @property
    def worker_pid(self) -> int:
        """The process that answers requests: the service's worker, or the ceiling itself."""
        with self._changed:
            spawned = [entry for _, entry in self.events if entry.get("event") == "worker_spawn"]
        if spawned:
            return int(spawned[-1]["child_pid"])
        assert self.process is not None
        return self.process.pid

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> float:
        """SIGTERM to the group, SIGKILL after ``timeout``; returns the seconds it took."""
        if self.process is None:
            return 0.0
        began = time.perf_counter()
        pgid = self.process.pid
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"warning: {self.name} ignored SIGTERM for {timeout:g} s; killing it")
        took = time.perf_counter() - began
        # Whatever is left of the group (a worker the supervisor did not reap) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        self.process = None
        return took

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def http_request(url: str, *, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """One request over a fresh connection: (status, body)."""
    rest = url.removeprefix("http://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request("POST" if body is not None else "GET", "/" + path, body=body, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def wait_answering(
    server: Server, path: str, status: int, timeout: float = START_TIMEOUT_S
) -> float:
    """Poll ``path`` until it answers ``status``; returns when it did (``perf_counter``)."""
    url = server.url(path)
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, http.client.HTTPException):
            if http_request(url, timeout=max(0.1, deadline - time.monotonic()))[0] == status:
                return time.perf_counter()
        if server.process is None or server.process.poll() is not None:
            raise BenchError(f"{server.name} exited before {path} answered:\n{server.tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"{server.name}: {path} did not answer {status} in {timeout:g} s")
        time.sleep(0.002)


def event_loop_of(pid: int) -> str:
    """``uvloop`` if the process has uvloop's extension mapped, else ``asyncio``."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return "asyncio"
    return "uvloop" if "/uvloop/" in maps else "asyncio"


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon and VmHWM of a process, in KiB, from /proc/PID/status."""
    wanted = {"VmRSS", "RssAnon", "VmHWM"}
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            found[key] = int(value.split()[0])
    return found


# --- the load generator ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Load:
    """What one wrk run measured."""

    requests: int
    seconds: float
    errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float
    # CPU seconds used meanwhile by wrk; and, when the server's PID was given, the seconds its
    # worker ran on a CPU and the seconds it was ready to run but waited for one (other
    # processes had it: on a shared machine, the neighbours).
    load_cpu_s: float
    server_cpu_s: float | None = None
    server_wait_s: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def server_busy(self) -> float | None:
        """The worker's share of its CPU: near 1.0 when it, not wrk, limits the rate."""
        return None if self.server_cpu_s is None else self.server_cpu_s / self.seconds

    @property
    def cpu_us_per_request(self) -> float | None:
        """Worker CPU time per request: what the rate would be bound by on a saturated CPU."""
        if self.server_cpu_s is None or not self.requests:
            return None
        return self.server_cpu_s / self.requests * 1e6

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_record(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "p999_ms": self.p999_ms,
            "mean_ms": self.mean_ms,
            "max_ms": self.max_ms,
            "errors": self.error_count,
            "error_kinds": self.errors,
            "wrk_busy": round(self.load_cpu_s / self.seconds, 3),
            "server_busy": None if self.server_busy is None else round(self.server_busy, 3),
            "server_waiting": (
                None if self.server_wait_s is None else round(self.server_wait_s / self.seconds, 3)
            ),
            "cpu_us_per_request": (
                None if self.cpu_us_per_request is None else round(self.cpu_us_per_request, 2)
            ),
        }


def sched_seconds(pid: int) -> tuple[float, float]:
    """Seconds a process has run on a CPU, and waited ready to run, from /proc/PID/schedstat.

    Only the main thread's: the workers' other threads (lease writes) are idle under load.
    """
    on_cpu, waiting, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    url: str,
    *,
    connections: int,
    seconds: int,
    cpu: int | None,
    body_file: Path | None = None,
    stop_after: int | None = None,
    timeout_s: int = 2,
    server_pid: int | None = None,
) -> Load:
    """One wrk run (one thread, keep-alive) with the benchmark script; its figures.

    With ``server_pid``, the CPU time that process used during the run is measured too.
    """
    argv = [
        *Cpus.prefix(cpu),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, seconds)}s",
        f"--timeout={timeout_s}s",
        "--latency",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    env = os.environ.copy()
    env.pop("BENCH_BODY_FILE", None)
    env.pop("BENCH_STOP_AFTER", None)
    if body_file is not None:
        env["BENCH_BODY_FILE"] = str(body_file)
    if stop_after is not None:
        env["BENCH_STOP_AFTER"] = str(stop_after)
    server_before = (0.0, 0.0) if server_pid is None else sched_seconds(server_pid)
    # wrk is the only child to exit meanwhile (servers outlive it), so this delta is its own.
    children_before = _children_cpu()
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        if stop_after is not None:
            # The Lua thread stops itself at the count; wrk's main thread would still sleep out
            # the whole -d, and SIGINT ends that sleep (it then reports as usual).
            assert process.stderr is not None
            for message in process.stderr:
                if message.startswith("BENCH_STOPPED"):
                    process.send_signal(signal.SIGINT)
                    break
        out, err = process.communicate(timeout=seconds + 60)
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    server_after = None if server_pid is None else sched_seconds(server_pid)
    load_cpu = _children_cpu() - children_before
    line = next((x for x in out.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if process.returncode != 0 or line is None:
        raise BenchError(f"wrk failed (status {process.returncode}):\n{(out + err)[-2000:]}")
    raw: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))

    def ms(key: str) -> float:
        return round(float(raw[key]) / 1000, 3)

    return Load(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        errors=raw["errors"],
        p50_ms=ms("latency_p50_us"),
        p90_ms=ms("latency_p90_us"),
        p99_ms=ms("latency_p99_us"),
        p999_ms=ms("latency_p999_us"),
        mean_ms=ms("latency_mean_us"),
        max_ms=ms("latency_max_us"),
        load_cpu_s=load_cpu,
        server_cpu_s=None if server_after is None else server_after[0] - server_before[0],
        server_wait_s=None if server_after is None else server_after[1] - server_before[1],
    )


# --- options shared by every section ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    """The run's settings, from the command line (``run_all.py --help``)."""

    duration: int
    warmup: int
    connections: int
    rounds: int
    batch_connections: int
    startup_repeats: int
    memory_requests: int
    sweep_levels: tuple[int, ...]
    sweep_seconds: int
    profile_seconds: int
    core_seconds: float
    quick: bool
    cpus: Cpus
    run_id: str
    facts: dict[str, Any]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@contextlib.contextmanager
def running_servers(
    opts: Options, *, metrics_off: bool = False
) -> Iterator[tuple[dict[str, Server], str]]:
    """The ceiling and the service (one process; and with its metrics off, when asked), up and
    answering, each pinned to the server CPU; yields them by case name, and the event loop.

    The service starts first: the ceiling runs on the event loop its worker turned out to use.
    """
    with (
        tempfile.TemporaryDirectory(prefix="snowflake-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        env = service_environment()
        cases = [(SERVICE, True)] + ([(SERVICE_NO_METRICS, False)] if metrics_off else [])
        services: dict[str, Server] = {}
        for index, (name, metrics) in enumerate(cases):
            state_dir = Path(tmp) / f"state-{index}"
            argv = service_argv(state_dir, metrics=metrics)
            service = stack.enter_context(Server(name, argv, cpu=opts.cpus.server, env=env))
            wait_answering(service, "/readyz", 200)
            services[name] = service
        loop = event_loop_of(services[SERVICE].worker_pid)
        ceiling = stack.enter_context(Server(CEILING, ceiling_argv(loop), cpu=opts.cpus.server))
        wait_answering(ceiling, SINGLE_PATH, 201)
        yield {CEILING: ceiling, **services}, loop


@dataclass(frozen=True, slots=True)
class Goal:
    """One of the targets of the benchmarks' README, and how this run did against it."""

    name: str
    target: str
    measured: str
    met: bool

    def as_record(self) -> dict[str, Any]:
        return {
            "goal": self.name,
            "target": self.target,
            "measured": self.measured,
            "met": self.met,
        }


def section_record(opts: Options, bench: str, **fields: Any) -> dict[str, Any]:
    """A result line: the run, the machine, the benchmark, then its own fields."""
    return {"run_id": opts.run_id, "bench": bench, **opts.facts, **fields}
