"""Metrics in process: the series an operator alerts on, their labels, and what they cost.

The node-wide view over several processes (multiprocess mode) is tested on live nodes in
test_metrics_live.py; here one process counts into a registry of its own.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import yaml
from aiohttp import web
from conftest import SAMPLE_QUERY, TEST_WORKER_ID, AppClient, FakeClock
from prometheus_client import CollectorRegistry, Histogram, generate_latest, values
from prometheus_client.parser import text_string_to_metric_families

from snowflake_tracker.config import Config
from snowflake_tracker.ids.codec import FORMAT_VERSION
from snowflake_tracker.ids.generator import SnowflakeGenerator
from snowflake_tracker.ids.layout import EPOCH_MS, IDS_PER_MS, MAX_TIMESTAMP
from snowflake_tracker.supervisor import METRICS_DIR_PREFIX, remove_stale_metrics_dirs
from snowflake_tracker.web.app import METRICS, create_app, create_metrics_app
from snowflake_tracker.web.metrics import (
    LATENCY_BUCKETS_S,
    PREFIX,
    UNMATCHED_ROUTE,
    BulkHistogram,
    Metrics,
    MetricsModeError,
    NodeMetrics,
    RequestStats,
)

REPO = Path(__file__).resolve().parent.parent
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "snowflake-tracker.json"
SINGLE = "/api/next-tracking-number"
SHORT_SINGLE = "/next-tracking-number"
BATCH = "/api/tracking-numbers"
DECODE_ROUTE = "/api/tracking-numbers/{tracking_number}"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
MakeApp = Callable[[web.Application], Awaitable[AppClient]]


def parse_samples(text: str) -> Samples:
    """Every sample of an exposition, keyed by sample name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The value of one sample, which must exist."""
    key = (PREFIX + name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}; have {sorted(k[0] for k in samples)}"
    return samples[key]


def labelsets(samples: Samples, name: str) -> list[dict[str, str]]:
    """The label sets a series has."""
    return [dict(labels) for (sample, labels) in samples if sample == PREFIX + name]


async def scrape(client: AppClient, path: str = "/metrics") -> Samples:
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse_samples(await response.text())


@dataclass
class FakeLeaseKeeper:
    """The figures a worker's lease keeper reports, set by hand."""

    renewals: int = 0
    failures: int = 0
    clock_steps_back: int = 0
    clock_step_back_ms: int = 0
    remaining_ms: int = 10_000
    ahead_of_wall_clock_ms: int = 0


@pytest.fixture
async def metered(
    aiohttp_client: MakeApp,
) -> tuple[AppClient, Metrics, SnowflakeGenerator, FakeClock]:
    """An app with metrics on, a generator on a fake clock, and the metrics it counts into."""
    clock = FakeClock()
    generator = SnowflakeGenerator(TEST_WORKER_ID, clock=clock, max_lead_ms=1)
    metrics = Metrics()
    client = await aiohttp_client(create_app(Config(), generator=generator, metrics=metrics))
    return client, metrics, generator, clock


# --- What is counted, and under which labels ----------------------------------------------------


async def test_requests_are_counted_by_route_template_method_and_status(
    metered: tuple[AppClient, Metrics, SnowflakeGenerator, FakeClock],
) -> None:
    """Each answer counts once under its route template (never its path), method and status."""
    client, _, _, clock = metered
    numbers = []
    for _ in range(3):
        clock.ms += 1
        response = await client.get(SINGLE, params=SAMPLE_QUERY)
        assert response.status == 201
        numbers.append((await response.json())["tracking_number"])
    assert (await client.get(SHORT_SINGLE, params={"weight": "1"})).status == 400
    assert (await client.get("/api/tracking-numbers/" + numbers[0])).status == 200
    assert (await client.get("/no/such/path")).status == 404
    assert (await client.post("/healthz")).status == 405

    samples = await scrape(client)

    assert value(samples, "http_requests_total", route=SINGLE, method="GET", status="201") == 3
    assert value(samples, "http_requests_total", route=SHORT_SINGLE, method="GET", status="400")
    assert value(samples, "http_requests_total", route=DECODE_ROUTE, method="GET", status="200")
    assert value(samples, "http_requests_total", route=UNMATCHED_ROUTE, method="GET", status="404")
    assert value(samples, "http_requests_total", route="/healthz", method="POST", status="405")
    routes = {labels["route"] for labels in labelsets(samples, "http_requests_total")}
    assert not any(number in route for route in routes for number in numbers)


async def test_statuses_of_the_minting_routes_exist_at_zero_before_any_request(
    metered: tuple[AppClient, Metrics, SnowflakeGenerator, FakeClock],
) -> None:
    """201, 400 and 503 of the minting routes exist at 0 from the start: rate() sees a first 503."""
    client, _, _, _ = metered
    samples = await scrape(client)
    for route in (SINGLE, SHORT_SINGLE):
        for status in ("201", "400", "503"):
            labels = {"route": route, "method": "GET", "status": status}
            assert value(samples, "http_requests_total", **labels) == 0


async def test_an_unknown_method_is_counted_as_other(
    metered: tuple[AppClient, Metrics, SnowflakeGenerator, FakeClock],
) -> None:
    """A method outside the usual few (one of the many the parser knows) counts as "other"."""
    client, _, _, _ = metered
    assert (await client.request("PROPFIND", "/healthz")).status == 405
    samples = await scrape(client)
    assert value(samples, "http_requests_total", route="/healthz", method="other", status="405")
    assert "PROPFIND" not in {
        labels["method"] for labels in labelsets(samples, "http_requests_total")
    }


async def test_numbers_issued_count_single_and_batch_numbers_under_the_worker_id(
    metered: tuple[AppClient, Metrics, SnowflakeGenerator, FakeClock],
) -> None:
    """numbers_issued_total grows by one per single number and by the size of each batch."""
    client, _, _, clock = metered
    clock.ms += 1
    assert (await client.get(SINGLE, params=SAMPLE_QUERY)).status == 201
    assert (await client.post(BATCH, json=[SAMPLE_QUERY] * 5)).status == 201
    assert (await client.post(BATCH, json=[{"weight": "x"}])).status == 400
    samples = await scrape(client)
    assert value(samples, "numbers_issued_total", worker_id=str(TEST_WORKER_ID)) == 6


async def test_the_latency_histogram_has_sub_millisecond_buckets_and_counts_each_request(
    metered: tuple[AppClient, Metrics, SnowflakeGenerator, FakeClock],
) -> None:
    """Every request lands in the histogram of its route, whose buckets start at 10 µs."""
    client, _, _, clock = metered
    for _ in range(4):
        clock.ms += 1
        await client.get(SINGLE, params=SAMPLE_QUERY)
    samples = await scrape(client)
    labels = {"route": SINGLE, "method": "GET"}
    assert value(samples, "http_request_duration_seconds_count", **labels) == 4
    assert value(samples, "http_request_duration_seconds_sum", **labels) > 0
    buckets = sorted(
        (float(dict(key)["le"]), count)
        for (name, key), count in samples.items()
        if name == PREFIX + "http_request_duration_seconds_bucket" and dict(key)["route"] == SINGLE
    )
    assert [bound for bound, _ in buckets] == [*LATENCY_BUCKETS_S, float("inf")]
    assert buckets[0][0] < 0.001 and buckets[-1][1] == 4
    counts = [count for _, count in buckets]
    assert counts == sorted(counts)


async def test_borrowing_and_waiting_of_the_generator_are_exported(
    metered: tuple[AppClient, Metrics, SnowflakeGenerator, FakeClock],
) -> None:
    """Milliseconds borrowed ahead of the clock, waits, and the 503s they cause are series."""
    client, _, generator, _ = metered
    generator.next_ids(2 * IDS_PER_MS)  # a stalled clock: the second 4,096 borrow a millisecond
    assert (await client.get(SINGLE, params=SAMPLE_QUERY)).status == 503
    samples = await scrape(client)
    worker = str(TEST_WORKER_ID)
    assert generator.borrowed_ms == 1 and generator.waits == 1
    assert value(samples, "id_borrowed_seconds_total", worker_id=worker) == 0.001
    assert value(samples, "id_waits_total", worker_id=worker) == 1
    assert value(samples, "http_requests_total", route=SINGLE, method="GET", status="503") == 1


async def test_the_id_space_left_is_exported_in_seconds(
    metered: tuple[AppClient, Metrics, SnowflakeGenerator, FakeClock],
) -> None:
    """id_space_remaining_seconds is the time from the generator's clock to the 41-bit end."""
    client, _, _, clock = metered
    samples = await scrape(client)
    expected = (EPOCH_MS + MAX_TIMESTAMP - clock.ms) / 1000
    assert value(
        samples, "id_space_remaining_seconds", worker_id=str(TEST_WORKER_ID)
    ) == pytest.approx(expected)


async def test_lease_and_clock_health_are_exported_as_they_change(
    metered: tuple[AppClient, Metrics, SnowflakeGenerator, FakeClock],
) -> None:
    """Renewals, failures, remaining lease, clock steps and the clock's lead follow the keeper."""
    client, metrics, _, _ = metered
    keeper = FakeLeaseKeeper(renewals=3, remaining_ms=8_500, ahead_of_wall_clock_ms=40)
    metrics.watch_lease(keeper, TEST_WORKER_ID)
    worker = str(TEST_WORKER_ID)

    samples = await scrape(client)
    assert value(samples, "lease_renewals_total", worker_id=worker) == 3
    assert value(samples, "lease_renewal_failures_total", worker_id=worker) == 0
    assert value(samples, "lease_remaining_seconds", worker_id=worker) == 8.5
    assert value(samples, "clock_steps_back_total", worker_id=worker) == 0
    assert value(samples, "clock_ahead_of_wall_clock_seconds", worker_id=worker) == 0.04

    keeper.failures, keeper.remaining_ms = 2, -250
    keeper.clock_steps_back, keeper.clock_step_back_ms = 1, 30_000
    samples = await scrape(client)
    assert value(samples, "lease_renewals_total", worker_id=worker) == 3
    assert value(samples, "lease_renewal_failures_total", worker_id=worker) == 2
    assert value(samples, "lease_remaining_seconds", worker_id=worker) == -0.25
    assert value(samples, "clock_steps_back_total", worker_id=worker) == 1
    assert value(samples, "clock_last_step_back_seconds", worker_id=worker) == 30


async def test_worker_key_and_build_are_info_gauges_with_their_labels(
    metered: tuple[AppClient, Metrics, SnowflakeGenerator, FakeClock],
) -> None:
    """worker_info, key_info and build_info are 1 and carry what they describe as labels."""
    client, metrics, _, _ = metered
    metrics.describe_worker(TEST_WORKER_ID, slot=2, node_id=5)
    metrics.describe_key(1, "3f2a9c0d")
    samples = await scrape(client)
    assert value(samples, "worker_info", worker_id=str(TEST_WORKER_ID), slot="2", node_id="5") == 1
    assert (
        value(
            samples,
            "key_info",
            key_version="1",
            key_fingerprint="3f2a9c0d",
            format_version=str(FORMAT_VERSION),
        )
        == 1
    )
    assert labelsets(samples, "build_info")[0]["version"]


# --- Switching metrics off, or to a port of their own -----------------------------------------


async def test_metrics_off_removes_the_endpoint_and_every_instrument(
    aiohttp_client: MakeApp,
) -> None:
    """With --no-metrics there is no /metrics (404), no sync task and no counting handler."""
    app = create_app(Config(metrics=False), generator=SnowflakeGenerator(TEST_WORKER_ID))
    assert METRICS not in app
    assert list(app.middlewares) == []
    assert len(app.cleanup_ctx) == 0
    handlers = {
        route.resource.canonical: route.handler
        for route in app.router.routes()
        if route.resource is not None and route.method == "GET"
    }
    assert handlers[SINGLE].__name__ == "next_tracking_number"
    client = await aiohttp_client(app)
    assert (await client.get("/metrics")).status == 404
    assert (await client.get(SINGLE, params=SAMPLE_QUERY)).status == 201


async def test_a_separate_listener_takes_metrics_off_the_service_port(
    aiohttp_client: MakeApp,
) -> None:
    """With --metrics-port the service port answers /metrics 404; the metrics app answers it."""
    metrics = Metrics()
    config = Config(metrics_port=9100, metrics_host="127.0.0.1")
    service = await aiohttp_client(
        create_app(config, generator=SnowflakeGenerator(TEST_WORKER_ID), metrics=metrics)
    )
    assert (await service.get("/metrics")).status == 404
    assert (await service.get(SINGLE, params=SAMPLE_QUERY)).status == 201
    separate = await aiohttp_client(create_metrics_app(metrics))
    samples = await scrape(separate)
    assert value(samples, "numbers_issued_total", worker_id=str(TEST_WORKER_ID)) == 1


# --- The pieces behind the cheap hot path --------------------------------------------------------


def test_bulk_counts_give_the_same_histogram_as_one_observe_per_value() -> None:
    """RequestStats.record then flush equals Histogram.observe per value, bucket edges included."""
    rng = random.Random(7)
    durations = [*LATENCY_BUCKETS_S, 0.0, 2.0, *(rng.uniform(0, 0.02) for _ in range(500))]

    bulk_registry, plain_registry = CollectorRegistry(), CollectorRegistry()
    name, labels = "x_http_request_duration_seconds", ("route", "method")
    bulk = BulkHistogram(name, "d", labels, registry=bulk_registry, buckets=LATENCY_BUCKETS_S)
    plain = Histogram(name, "d", labels, registry=plain_registry, buckets=LATENCY_BUCKETS_S)
    requests = Metrics().requests
    stats = RequestStats(requests, bulk, "/r", "GET")
    for seconds in durations:
        stats.record(200, seconds)
        plain.labels("/r", "GET").observe(seconds)
    stats.flush()

    def histogram(registry: CollectorRegistry) -> Samples:
        return {
            key: sample_value
            for key, sample_value in parse_samples(generate_latest(registry).decode()).items()
            if not key[0].endswith("_created")
        }

    assert histogram(bulk_registry) == histogram(plain_registry)
    assert stats.counts == {} and sum(stats.buckets) == 0


async def test_a_slow_collection_does_not_hold_up_other_requests(aiohttp_client: MakeApp) -> None:
    """While a scrape is being collected, the worker goes on answering other requests."""
    release = threading.Event()

    class SlowMetrics(Metrics):
        def collect(self) -> bytes:
            release.wait(timeout=10)
            return super().collect()

    client = await aiohttp_client(
        create_app(Config(), generator=SnowflakeGenerator(TEST_WORKER_ID), metrics=SlowMetrics())
    )

    async def get_metrics() -> int:
        return (await client.get("/metrics")).status

    scraping = asyncio.create_task(get_metrics())
    await asyncio.sleep(0.05)
    assert not scraping.done()
    assert (await client.get("/healthz")).status == 200
    assert not scraping.done(), "the scrape finished before the collection was let go"
    release.set()
    assert await scraping == 200


async def test_counts_are_kept_until_the_app_stops_and_synced_at_its_end(
    aiohttp_client: MakeApp,
) -> None:
    """What a worker counted after its last sync reaches the shared metrics when it stops."""
    metrics = Metrics()
    client = await aiohttp_client(
        create_app(Config(), generator=SnowflakeGenerator(TEST_WORKER_ID), metrics=metrics)
    )
    assert (await client.get("/healthz")).status == 200
    await client.close()
    samples = parse_samples(metrics.collect().decode())
    assert value(samples, "http_requests_total", route="/healthz", method="GET", status="200")


def test_the_supervisor_counts_restarts_per_slot_from_zero() -> None:
    """worker_restarts_total exists at 0 for every slot and grows by one per respawn."""
    node = NodeMetrics(3)
    for slot in range(3):
        node.watch_slot(slot, 40 + slot)
    node.worker_restarted(1, 41)
    samples = parse_samples(generate_latest(node.registry).decode())
    assert value(samples, "worker_restarts_total", slot="0", worker_id="40") == 0
    assert value(samples, "worker_restarts_total", slot="1", worker_id="41") == 1
    assert value(samples, "node_processes") == 3


# --- Multiprocess mode: set up in the right order ------------------------------------------------


def test_the_supervisor_does_not_import_prometheus_client_before_it_sets_the_directory() -> None:
    """Loading the command line and the supervisor leaves prometheus_client unimported."""
    code = (
        "import sys, snowflake_tracker.__main__, snowflake_tracker.supervisor; "
        "sys.exit('prometheus_client' in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_env_without_multiproc())


def test_shared_metrics_refuse_a_process_that_imported_prometheus_client_too_early(
    tmp_path: Path,
) -> None:
    """Counting into the node's view fails loudly where prometheus_client counts in memory."""
    if values.ValueClass is not values.MutexValue:
        pytest.skip("this test process runs prometheus_client in multiprocess mode")
    with pytest.raises(MetricsModeError, match="PROMETHEUS_MULTIPROC_DIR"):
        Metrics(multiprocess_dir=tmp_path)


def test_node_view_sums_slots_and_a_dead_slot_keeps_its_counts_but_not_its_gauges(
    tmp_path: Path,
) -> None:
    """Slots' files merge into one view; a dead worker's counts stay, its live gauges go."""
    worker = (
        "import sys\n"
        "from pathlib import Path\n"
        "from snowflake_tracker.web.metrics import Metrics, name_metric_files, slot_files_name\n"
        "slot = int(sys.argv[2])\n"
        "name_metric_files(slot_files_name(slot))\n"
        "metrics = Metrics(multiprocess_dir=Path(sys.argv[1]))\n"
        "metrics.count_issued(slot)(5)\n"
        "metrics.describe_worker(slot, slot=slot, node_id=0)\n"
    )
    view = (
        "import sys\n"
        "from pathlib import Path\n"
        "from snowflake_tracker.web.metrics import Metrics, forget_process\n"
        "if len(sys.argv) > 2: forget_process(sys.argv[2], Path(sys.argv[1]))\n"
        "sys.stdout.write(Metrics(multiprocess_dir=Path(sys.argv[1])).collect().decode())\n"
    )
    env = {**_env_without_multiproc(), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def run(script: str, *args: str) -> str:
        argv = [sys.executable, "-c", script, str(tmp_path), *args]
        return subprocess.run(argv, check=True, env=env, capture_output=True, text=True).stdout

    run(worker, "0")
    run(worker, "1")
    before = parse_samples(run(view))
    assert value(before, "numbers_issued_total", worker_id="0") == 5
    assert value(before, "numbers_issued_total", worker_id="1") == 5
    assert len(labelsets(before, "worker_info")) == 2
    assert sorted(path.name for path in tmp_path.glob("gauge_livesum_*")) == [
        "gauge_livesum_slot0.db",
        "gauge_livesum_slot1.db",
    ]

    after = parse_samples(run(view, "slot0"))
    assert value(after, "numbers_issued_total", worker_id="0") == 5
    assert labelsets(after, "worker_info") == [{"worker_id": "1", "slot": "1", "node_id": "0"}]

    run(worker, "0")  # the slot's next worker carries on its counter
    assert value(parse_samples(run(view)), "numbers_issued_total", worker_id="0") == 10


def test_stale_metrics_dirs_of_killed_supervisors_are_removed(tmp_path: Path) -> None:
    """A directory whose supervisor PID is gone is removed; one of a live supervisor stays."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(gone.stdout)
    stale = tmp_path / f"{METRICS_DIR_PREFIX}{dead_pid}-abc"
    live = tmp_path / f"{METRICS_DIR_PREFIX}{os.getpid()}-def"
    other = tmp_path / "unrelated-1-x"
    for path in (stale, live, other):
        path.mkdir()
        (path / "counter_1.db").write_bytes(b"")
    remove_stale_metrics_dirs(tmp_path)
    assert not stale.exists()
    assert live.exists() and other.exists()


def _env_without_multiproc() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}


# --- What Prometheus itself accepts ---------------------------------------------------------------


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package 'prometheus')")
    return promtool


async def test_the_exposition_passes_promtool_check_metrics(
    metered: tuple[AppClient, Metrics, SnowflakeGenerator, FakeClock],
) -> None:
    """promtool finds nothing wrong with the names, types, units and help of every series."""
    promtool = _promtool()
    client, metrics, _, clock = metered
    metrics.watch_lease(FakeLeaseKeeper(), TEST_WORKER_ID)
    metrics.describe_worker(TEST_WORKER_ID, slot=0, node_id=0)
    metrics.describe_key(0, "")
    clock.ms += 1
    await client.get(SINGLE, params=SAMPLE_QUERY)
    text = await (await client.get("/metrics")).text()
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


async def every_series_name(client: AppClient, metrics: Metrics) -> set[str]:
    """The sample names a node exports, from every source a worker and its supervisor have."""
    metrics.watch_lease(FakeLeaseKeeper(), TEST_WORKER_ID)
    metrics.describe_worker(TEST_WORKER_ID, slot=0, node_id=0)
    metrics.describe_key(0, "")
    node = NodeMetrics(1)
    node.watch_slot(0, TEST_WORKER_ID)
    await client.get(SINGLE, params=SAMPLE_QUERY)
    text = await (await client.get("/metrics")).text() + generate_latest(node.registry).decode()
    return {name for name, _ in parse_samples(text)}


def dashboard_expressions() -> list[str]:
    panels = orjson.loads(DASHBOARD.read_bytes())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def alert_expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


async def test_the_dashboard_and_alerts_use_only_series_the_service_exports(
    metered: tuple[AppClient, Metrics, SnowflakeGenerator, FakeClock],
) -> None:
    """Every snowflake_tracker_ name in the dashboard and the alert rules is a real series."""
    client, metrics, _, _ = metered
    exported = await every_series_name(client, metrics)
    used = {
        name
        for expr in dashboard_expressions() + alert_expressions()
        for name in re.findall(r"\bsnowflake_tracker_\w+", expr)
    }
    assert used, "no expression names a series"
    assert used <= exported, sorted(used - exported)
    assert {PREFIX + "numbers_issued_total", PREFIX + "lease_remaining_seconds"} <= used


@pytest.mark.parametrize(
    ("what", "path"), [("rules", ALERTS), ("config", ALERTS.with_name("prometheus-example.yml"))]
)
def test_the_alert_rules_and_example_config_pass_promtool(what: str, path: Path) -> None:
    """alerts.yml is a valid rules file; the example configuration is valid and loads it."""
    result = subprocess.run(
        [_promtool(), "check", what, str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- The alert rules fire for the failure each one names, and not on a healthy node -----------

JOB = "snowflake-tracker"
MINT = {"route": SINGLE, "method": "GET"}
HEALTHY: dict[str, tuple[dict[str, str], str]] = {
    "up": ({}, "1x120"),
    "snowflake_tracker_lease_renewal_failures_total": ({"worker_id": "0"}, "0x120"),
    "snowflake_tracker_lease_remaining_seconds": ({"worker_id": "0"}, "8x120"),
    "snowflake_tracker_http_requests_total": ({**MINT, "status": "201"}, "0+600x120"),
    "snowflake_tracker_id_waits_total": ({"worker_id": "0"}, "0x120"),
    "snowflake_tracker_id_borrowed_seconds_total": ({"worker_id": "0"}, "0+1x120"),
    "snowflake_tracker_clock_steps_back_total": ({"worker_id": "0"}, "0x120"),
    "snowflake_tracker_clock_ahead_of_wall_clock_seconds": ({"worker_id": "0"}, "0x120"),
    "snowflake_tracker_worker_restarts_total": ({"slot": "0", "worker_id": "0"}, "0x120"),
    "snowflake_tracker_worker_info": ({"worker_id": "0", "slot": "0", "node_id": "0"}, "1x120"),
    "snowflake_tracker_node_processes": ({}, "1x120"),
    "snowflake_tracker_id_space_remaining_seconds": ({"worker_id": "0"}, "2.1e9x120"),
    "snowflake_tracker_key_info": (
        {"key_version": "1", "key_fingerprint": "aaaa", "format_version": "1"},
        "1x120",
    ),
    "snowflake_tracker_http_request_duration_seconds_bucket": (
        {**MINT, "le": "0.0001"},
        "0+600x120",
    ),
}
# One node per failure: its series, and the alerts (with the labels they keep) it must raise.
FAILURES: dict[str, tuple[list[tuple[str, dict[str, str], str]], dict[str, dict[str, str]]]] = {
    "lease-failing": (
        [("snowflake_tracker_lease_renewal_failures_total", {"worker_id": "0"}, "0+1x120")],
        {"SnowflakeTrackerLeaseRenewalFailing": {"worker_id": "0"}},
    ),
    "lease-out": (
        [("snowflake_tracker_lease_remaining_seconds", {"worker_id": "0"}, "1x120")],
        {"SnowflakeTrackerLeaseRunningOut": {"worker_id": "0"}},
    ),
    "refusing": (
        [
            ("snowflake_tracker_http_requests_total", {**MINT, "status": "201"}, "0+100x120"),
            ("snowflake_tracker_http_requests_total", {**MINT, "status": "503"}, "0+50x120"),
        ],
        {"SnowflakeTrackerRefusingNumbers": {}},
    ),
    "waiting": (
        [("snowflake_tracker_id_waits_total", {"worker_id": "0"}, "0+10x120")],
        {"SnowflakeTrackerGeneratorWaiting": {"worker_id": "0"}},
    ),
    "borrowing": (
        [("snowflake_tracker_id_borrowed_seconds_total", {"worker_id": "0"}, "0+30x120")],
        {"SnowflakeTrackerBorrowingAhead": {"worker_id": "0"}},
    ),
    "stepped-back": (
        [("snowflake_tracker_clock_steps_back_total", {"worker_id": "0"}, "0x80 1x40")],
        {"SnowflakeTrackerClockSteppedBack": {"worker_id": "0"}},
    ),
    "far-ahead": (
        [("snowflake_tracker_clock_ahead_of_wall_clock_seconds", {"worker_id": "0"}, "120x120")],
        {"SnowflakeTrackerClockFarAhead": {"worker_id": "0"}},
    ),
    "restarted": (
        [("snowflake_tracker_worker_restarts_total", {"slot": "1", "worker_id": "1"}, "0x80 1x40")],
        {"SnowflakeTrackerWorkerRestarting": {"slot": "1", "worker_id": "1"}},
    ),
    "crash-loop": (
        [("snowflake_tracker_worker_restarts_total", {"slot": "1", "worker_id": "1"}, "0+1x120")],
        {
            "SnowflakeTrackerWorkerRestarting": {"slot": "1", "worker_id": "1"},
            "SnowflakeTrackerWorkerCrashLooping": {"slot": "1", "worker_id": "1"},
        },
    ),
    "missing": (
        [
            (
                "snowflake_tracker_worker_info",
                {"worker_id": "5", "slot": "0", "node_id": "1"},
                "1x120",
            ),
            ("snowflake_tracker_node_processes", {}, "2x120"),
        ],
        {"SnowflakeTrackerWorkersMissing": {}},
    ),
    "down": ([("up", {}, "0x120")], {"SnowflakeTrackerDown": {}}),
    "faults": (
        [("snowflake_tracker_http_requests_total", {**MINT, "status": "500"}, "0+5x120")],
        {"SnowflakeTrackerInternalErrors": {"status": "500"}},
    ),
    "slow": (
        [
            (
                "snowflake_tracker_http_request_duration_seconds_bucket",
                {**MINT, "le": "0.05"},
                "0x120",
            ),
            (
                "snowflake_tracker_http_request_duration_seconds_bucket",
                {**MINT, "le": "0.1"},
                "0+60x120",
            ),
            (
                "snowflake_tracker_http_request_duration_seconds_bucket",
                {**MINT, "le": "+Inf"},
                "0+60x120",
            ),
        ],
        {"SnowflakeTrackerSlowAnswers": {}},
    ),
    "id-space": (
        [("snowflake_tracker_id_space_remaining_seconds", {"worker_id": "0"}, "1e8x120")],
        {"SnowflakeTrackerIdSpaceRunningOut": {}},
    ),
}
FLEET_SERIES = [
    ("a", "snowflake_tracker_worker_info", {"worker_id": "7", "slot": "0", "node_id": "0"}),
    ("b", "snowflake_tracker_worker_info", {"worker_id": "7", "slot": "0", "node_id": "0"}),
    ("a", "snowflake_tracker_key_info", {"key_version": "1", "key_fingerprint": "aaaa"}),
    ("b", "snowflake_tracker_key_info", {"key_version": "1", "key_fingerprint": "bbbb"}),
]


def _series(name: str, instance: str, labels: dict[str, str]) -> str:
    pairs = {"instance": instance, "job": JOB, **labels}
    return name + "{" + ",".join(f'{key}="{text}"' for key, text in pairs.items()) + "}"


def test_each_alert_fires_for_its_failure_and_none_on_a_healthy_node(tmp_path: Path) -> None:
    """promtool's rule tests: every failure raises its alert for its node, a healthy one none."""
    promtool = _promtool()
    rules = yaml.safe_load(ALERTS.read_text())
    # Annotations are for people; the test checks when alerts fire and with which labels.
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    names = [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    severity = {
        rule["alert"]: rule["labels"]["severity"]
        for group in rules["groups"]
        for rule in group["rules"]
    }
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))

    inputs = [
        {"series": _series(name, "healthy", labels), "values": values_}
        for name, (labels, values_) in HEALTHY.items()
    ]
    expected: dict[str, list[dict[str, dict[str, str]]]] = {name: [] for name in names}
    for instance, (series, alerts) in FAILURES.items():
        inputs += [
            {"series": _series(name, instance, labels), "values": values_}
            for name, labels, values_ in series
        ]
        for alert, labels in alerts.items():
            expected[alert].append(
                {
                    "exp_labels": {
                        "instance": instance,
                        "job": JOB,
                        "severity": severity[alert],
                        **labels,
                    }
                }
            )
    fleet_inputs = [
        {"series": _series(name, instance, labels), "values": "1x120"}
        for instance, name, labels in FLEET_SERIES
    ]
    fleet_expected = {
        "SnowflakeTrackerDuplicateWorkerId": [
            {"exp_labels": {"worker_id": "7", "severity": "critical"}}
        ],
        "SnowflakeTrackerKeyFingerprintsDisagree": [{"exp_labels": {"severity": "warning"}}],
    }
    tests = {
        "rule_files": ["alerts.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [
                    {"eval_time": "90m", "alertname": name, "exp_alerts": alerts}
                    for name, alerts in expected.items()
                ],
            },
            {
                "interval": "1m",
                "input_series": fleet_inputs,
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": name, "exp_alerts": alerts}
                    for name, alerts in fleet_expected.items()
                ],
            },
        ],
    }
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
