"""Metrics on live nodes: one view of every process, whichever answers, and a real Prometheus.

Each test runs ``snowflake-tracker serve`` through ``livenode`` (its own session, killed as a
group at teardown) on 127.0.0.1. The Prometheus test runs Debian's ``prometheus`` binary on a
free loopback port with its storage in the test's temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from livenode import (
    HOST,
    SAMPLE_PATH,
    LiveNode,
    NodeSet,
    WorkerSpawn,
    decode_answers,
    run_load,
)
from test_metrics import (
    ALERTS,
    SINGLE,
    Samples,
    dashboard_expressions,
    labelsets,
    parse_samples,
    value,
)

from snowflake_tracker.web.metrics import PREFIX, SYNC_INTERVAL_S

pytestmark = pytest.mark.live

REQUESTS = 300
SCRAPES = 10
KILLS = 5
PROMETHEUS_WAIT_S = 30.0
PROMETHEUS_START_S = 20.0


def fetch(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET ``url`` on a new connection: (status, body text), error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def scrape(url: str) -> Samples:
    status, text = fetch(url)
    assert status == 200, text
    return parse_samples(text)


def issued_total(samples: Samples) -> float:
    """The node's numbers issued, summed over its worker IDs."""
    return sum(
        count for (name, _), count in samples.items() if name == PREFIX + "numbers_issued_total"
    )


async def issue(node: LiveNode, count: int, port: int | None = None) -> set[int]:
    """Mint ``count`` numbers over connections spread across the workers; their worker IDs."""
    url = f"http://{HOST}:{port or node.port}{SAMPLE_PATH}"
    result = await run_load([url], concurrency=6, total=count, reconnect_every=5)
    assert not result.failures, result.failures[:3]
    assert len(result.answers) == count
    return {decoded.worker_id for decoded in decode_answers(result.answers)}


def metrics_dir_of(node: LiveNode) -> Path:
    start = node.wait_for_event(lambda e: e.get("event") == "node_start", "node_start")
    assert start["metrics_dir"], start
    return Path(start["metrics_dir"])


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package 'prometheus')")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and not result.stdout + result.stderr, result.stdout


async def test_every_scrape_of_a_two_process_node_counts_every_number(nodes: NodeSet) -> None:
    """After N numbers, each of several scrapes (any process answering) sums to N issued."""
    node = nodes.start(processes=2)
    node.wait_ready()
    metrics_dir = metrics_dir_of(node)
    assert metrics_dir.is_dir()

    worker_ids = await issue(node, REQUESTS)
    assert len(worker_ids) == 2, "the load reached only one worker"

    for _ in range(SCRAPES):
        samples = scrape(node.url("/metrics"))
        assert issued_total(samples) == REQUESTS
        assert {labels["worker_id"] for labels in labelsets(samples, "worker_info")} == {
            str(worker_id) for worker_id in worker_ids
        }
        assert value(samples, "node_processes") == 2

    # Request counts reach the shared files once a second: by then every scrape has them all.
    time.sleep(SYNC_INTERVAL_S * 1.5)
    for _ in range(SCRAPES):
        status, text = fetch(node.url("/metrics"))
        assert status == 200
        samples = parse_samples(text)
        assert value(samples, "http_requests_total", route=SINGLE, method="GET", status="201") == (
            REQUESTS
        )
    promtool_check(text)

    assert not [e for e in node.events if e.get("logger") == "aiohttp.access"]
    assert node.stop() == 0
    assert not metrics_dir.exists(), "a clean stop leaves no metrics directory behind"


def wait_reaped(node: LiveNode, pid: int) -> None:
    node.wait_for_event(
        lambda e: e.get("event") == "worker_exit" and e.get("child_pid") == pid,
        f"worker {pid} to be reaped",
    )


def wait_new_spawn(node: LiveNode, slot: int) -> WorkerSpawn:
    """The next process spawned into ``slot``, after every one spawned so far."""
    seen = {spawn.pid for spawn in node.spawns() if spawn.slot == slot}
    event = node.wait_for_event(
        lambda e: (
            e.get("event") == "worker_spawn"
            and e.get("slot") == slot
            and e.get("child_pid") not in seen
        ),
        f"a new process in slot {slot}",
    )
    return WorkerSpawn(slot, int(event["worker_id"]), int(event["child_pid"]))


async def test_a_killed_worker_keeps_its_counts_and_loses_its_gauges(nodes: NodeSet) -> None:
    """After kill -9 a worker's numbers still count, and its live gauges leave the view."""
    node = nodes.start(processes=2)
    node.wait_ready()
    metrics_dir = metrics_dir_of(node)
    worker_ids = await issue(node, REQUESTS)
    victim = node.workers()[0]
    assert victim.worker_id in worker_ids, "the worker to kill issued no number"
    worker = str(victim.worker_id)

    # Each quick death doubles the slot's respawn delay (0.1 s, then 0.2, 0.4, 0.8, 1.6):
    # after the fifth, the slot stays empty long enough to scrape the node without it.
    pid = victim.pid
    for kill in range(KILLS):
        os.kill(pid, signal.SIGKILL)
        wait_reaped(node, pid)
        if kill < KILLS - 1:
            pid = wait_new_spawn(node, 0).pid
    samples = scrape(node.url("/metrics"))
    assert issued_total(samples) == REQUESTS
    assert value(samples, "numbers_issued_total", worker_id=worker) > 0
    assert worker not in {labels["worker_id"] for labels in labelsets(samples, "worker_info")}
    assert worker not in {
        labels["worker_id"] for labels in labelsets(samples, "lease_remaining_seconds")
    }
    assert not list(metrics_dir.glob("gauge_live*_slot0.db"))

    successor = wait_new_spawn(node, 0)
    node.wait_worker_started(successor.pid)
    node.wait_ready()
    for _ in range(SCRAPES):
        samples = scrape(node.url("/metrics"))
        assert issued_total(samples) == REQUESTS
        assert value(samples, "worker_info", worker_id=worker, slot="0", node_id="0") == 1
        assert value(samples, "worker_restarts_total", slot="0", worker_id=worker) == KILLS
    exits = [e for e in node.events_named("worker_exit") if e.get("child_pid") == victim.pid]
    assert exits and exits[0]["exit"] == -signal.SIGKILL


async def test_a_separate_metrics_port_serves_the_node_view_instead_of_the_service_port(
    nodes: NodeSet,
) -> None:
    """With --metrics-port, every process answers /metrics there, and the service port 404s."""
    node = nodes.start(processes=2, args=["--metrics-port", "0"])
    node.wait_ready()
    start = node.wait_for_event(lambda e: e.get("event") == "node_start", "node_start")
    metrics_url = f"http://{HOST}:{start['metrics_port']}/metrics"
    await issue(node, REQUESTS)

    assert fetch(node.url("/metrics"))[0] == 404
    for _ in range(SCRAPES):
        assert issued_total(scrape(metrics_url)) == REQUESTS
    promtool_check(fetch(metrics_url)[1])


def test_a_node_stopped_during_start_up_still_removes_its_metrics_directory(
    nodes: NodeSet,
) -> None:
    """SIGTERM right after node_start, before any worker runs, still ends in a clean stop."""
    node = nodes.start(processes=2)
    metrics_dir = metrics_dir_of(node)
    os.kill(node.pid, signal.SIGTERM)
    assert node.wait_exit() == 0
    assert not metrics_dir.exists()


async def test_metrics_off_means_no_endpoint_and_no_directory(nodes: NodeSet) -> None:
    """--no-metrics: /metrics answers 404 and the node makes no metrics directory."""
    node = nodes.start(processes=1, args=["--no-metrics"])
    node.wait_ready()
    start = node.wait_for_event(lambda e: e.get("event") == "node_start", "node_start")
    assert start["metrics_dir"] is None
    await issue(node, 10)
    assert fetch(node.url("/metrics"))[0] == 404
    scratch = node.state_dir.with_name(node.state_dir.name + "-tmp")
    assert not list(scratch.glob("snowflake-tracker-metrics-*"))


async def test_the_access_log_is_one_json_line_per_request_when_switched_on(
    nodes: NodeSet,
) -> None:
    """--access-log writes a JSON line per request, with its status and duration as fields."""
    node = nodes.start(processes=1, args=["--access-log"])
    node.wait_ready()
    await issue(node, 3)
    line = node.wait_for_event(
        lambda e: e.get("logger") == "aiohttp.access" and e.get("response_status") == 201,
        "an access log line",
    )
    assert line["first_request_line"].startswith("GET /api/next-tracking-number?")
    assert float(line["request_time_frac"]) >= 0


# --- A real Prometheus server ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def run_prometheus(tmp_path: Path, targets: list[str]) -> Iterator[str]:
    """A Prometheus server scraping ``targets`` every second, with the example alert rules."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (Debian package 'prometheus')")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": "snowflake-tracker", "static_configs": [{"targets": targets}]}
        ],
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    config_file = tmp_path / "prometheus.yml"
    # JSON is YAML: no YAML writer needed.
    config_file.write_text(json.dumps(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={HOST}:{port}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + PROMETHEUS_START_S
        while fetch_or_none(base + "/-/ready") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(
                    "prometheus did not start:\n" + (tmp_path / "prometheus.log").read_text()
                )
            time.sleep(0.1)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def fetch_or_none(url: str) -> int | None:
    try:
        return fetch(url, timeout=1.0)[0]
    except OSError:
        return None


def prometheus_api(base: str, path: str, **params: str) -> Any:
    status, text = fetch(f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}")
    assert status == 200, text
    answer = json.loads(text)
    assert answer["status"] == "success", answer
    return answer["data"]


async def test_prometheus_scrapes_the_node_and_sums_every_number(
    nodes: NodeSet, tmp_path: Path
) -> None:
    """A real Prometheus finds every number a 2-process node issued; rules and panels evaluate."""
    node = nodes.start(processes=2)
    node.wait_ready()
    with run_prometheus(tmp_path / "prometheus", [f"{HOST}:{node.port}"]) as prometheus:
        await issue(node, REQUESTS)
        query = f"sum({PREFIX}numbers_issued_total)"
        deadline = time.monotonic() + PROMETHEUS_WAIT_S
        seen = 0.0
        while seen < REQUESTS:
            assert time.monotonic() < deadline, f"Prometheus shows {seen} of {REQUESTS} numbers"
            result = prometheus_api(prometheus, "query", query=query)["result"]
            seen = float(result[0]["value"][1]) if result else 0.0
            time.sleep(0.5)
        assert seen == REQUESTS

        # Every rule evaluates without error against the real series, and on this healthy
        # node none is even pending.
        while True:
            groups = prometheus_api(prometheus, "rules")["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            assert not [rule for rule in rules if rule["health"] == "err"], rules
            if rules and all(rule["health"] == "ok" for rule in rules):
                break
            assert time.monotonic() < deadline, "the rules were not evaluated in time"
            time.sleep(0.5)
        assert prometheus_api(prometheus, "alerts")["alerts"] == []

        # Every panel of the Grafana dashboard is a query this Prometheus accepts.
        for expr in dashboard_expressions():
            query = expr.replace("$instance", ".*").replace("$__rate_interval", "1m")
            prometheus_api(prometheus, "query", query=query)
