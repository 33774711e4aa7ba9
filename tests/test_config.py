"""Configuration: flags beat environment beat defaults, bad values refused in a sentence, frozen."""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from snowflake_tracker.config import (
    ENV_PREFIX,
    SETTINGS,
    Config,
    ConfigError,
    load_config,
    parse_flags,
)
from snowflake_tracker.lease import default_state_dir

SETTING_BY_NAME = {setting.name: setting for setting in SETTINGS}

# Two valid spellings of each setting and what each means. A setting added without a line
# here fails test_every_setting_is_covered, so none goes untested.
SAMPLES: dict[str, tuple[tuple[str, Any], tuple[str, Any]]] = {
    "host": (("0.0.0.0", "0.0.0.0"), ("::1", "::1")),
    "port": (("9000", 9000), (" 9001 ", 9001)),
    "processes": (("3", 3), ("1", 1)),
    "node_id": (("5", 5), ("12", 12)),
    "worker_id": (("7", 7), ("1023", 1023)),
    "node_bits": (("5", 5), ("10", 10)),
    "state_dir": (("var/state", Path("var/state")), ("leases", Path("leases"))),
    "secret_file": (("keys.txt", Path("keys.txt")), ("etc/keys", Path("etc/keys"))),
    "max_weight_kg": (("25.5", Decimal("25.5")), ("70", Decimal(70))),
    "max_batch": (("50", 50), ("100000", 100_000)),
    "max_lead_ms": (("500", 500), ("0", 0)),
    "lease_seconds": (("30", 30.0), ("2.5", 2.5)),
    "drain_seconds": (("2.5", 2.5), ("60", 60.0)),
    "max_connections": (("20", 20), ("100000", 100_000)),
    "header_timeout": (("2", 2.0), ("0.5", 0.5)),
    "keepalive_timeout": (("75", 75.0), ("5", 5.0)),
    "metrics": (("false", False), ("yes", True)),
    "metrics_host": (("127.0.0.2", "127.0.0.2"), ("localhost", "localhost")),
    "metrics_port": (("9100", 9100), ("9101", 9101)),
    "reveal_keyed": (("yes", True), ("0", False)),
    "access_log": (("true", True), ("off", False)),
    "log_level": (("debug", "DEBUG"), ("WARNING", "WARNING")),
}

# Settings that are only valid beside another one.
COMPANIONS: dict[str, dict[str, str]] = {"metrics_host": {"metrics_port": "9100"}}

DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 8080,
    "node_id": None,
    "worker_id": None,
    "node_bits": 7,
    "secret_file": None,
    "max_weight_kg": Decimal(1000),
    "max_batch": 1000,
    "max_lead_ms": 2000,
    "lease_seconds": 10.0,
    "drain_seconds": 10.0,
    "max_connections": 1024,
    "header_timeout": 10.0,
    "keepalive_timeout": 15.0,
    "metrics": True,
    "metrics_host": "",
    "metrics_port": None,
    "reveal_keyed": False,
    "access_log": False,
    "log_level": "INFO",
}


def env_of(values: dict[str, str]) -> dict[str, str]:
    """Environment variables setting ``values`` (by setting name) through their twins."""
    return {SETTING_BY_NAME[name].env: value for name, value in values.items()}


def test_every_setting_is_covered() -> None:
    """Each setting has samples here, so the tests below reach every flag and twin."""
    assert set(SAMPLES) == set(SETTING_BY_NAME)


@pytest.mark.parametrize("name", sorted(SETTING_BY_NAME))
def test_every_flag_has_an_environment_twin(name: str) -> None:
    """Each setting has a ``--flag`` and a ``SNOWFLAKE_TRACKER_`` twin named after it."""
    setting = SETTING_BY_NAME[name]
    assert setting.flag == "--" + name.replace("_", "-")
    assert setting.env == ENV_PREFIX + name.upper()
    assert name in parse_flags([])


@pytest.mark.parametrize("name", sorted(SETTING_BY_NAME))
def test_the_environment_twin_sets_each_setting(name: str) -> None:
    """A setting given only in the environment takes the environment's value."""
    (text, expected), _ = SAMPLES[name]
    config = load_config({}, env_of({name: text, **COMPANIONS.get(name, {})}), cpu_count=2)
    assert getattr(config, name) == expected


@pytest.mark.parametrize("name", sorted(SETTING_BY_NAME))
def test_a_flag_beats_its_environment_twin(name: str) -> None:
    """A setting given as a flag and in the environment takes the flag's value."""
    (flag_text, expected), (env_text, _) = SAMPLES[name]
    companions = COMPANIONS.get(name, {})
    config = load_config({name: flag_text, **companions}, env_of({name: env_text}), cpu_count=2)
    assert getattr(config, name) == expected


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_a_setting_given_nowhere_takes_its_default(name: str) -> None:
    """With no flag and no environment variable, each setting has its documented default."""
    config = load_config({}, {}, cpu_count=2)
    assert getattr(config, name) == DEFAULTS[name]


def test_the_default_state_dir_comes_from_the_environment_passed_in() -> None:
    """The default state directory is read from the given Mapping, not the process's own."""
    env = {"XDG_CACHE_HOME": "/cache-root", "HOME": "/home/someone"}
    config = load_config({}, env, cpu_count=2)
    assert config.state_dir == default_state_dir(env) == Path("/cache-root/snowflake-tracker")


def test_the_default_process_count_is_the_cpu_count() -> None:
    """Unset, ``processes`` is the CPU count."""
    assert load_config({}, {}, cpu_count=3).processes == 3


def test_the_default_process_count_never_exceeds_a_nodes_slots() -> None:
    """On a machine with more CPUs than slots, the unset default is the slot count."""
    assert load_config({}, {}, cpu_count=64).processes == 8
    assert load_config({"node_bits": "9"}, {}, cpu_count=64).processes == 2


def test_port_is_also_read_from_plain_port() -> None:
    """``PORT`` (as platforms set it) sets the port when nothing more specific does."""
    assert load_config({}, {"PORT": "7000"}, cpu_count=2).port == 7000


def test_the_prefixed_port_beats_plain_port_and_the_flag_beats_both() -> None:
    """``SNOWFLAKE_TRACKER_PORT`` wins over ``PORT``; ``--port`` wins over both."""
    env = {"PORT": "7000", "SNOWFLAKE_TRACKER_PORT": "7001"}
    assert load_config({}, env, cpu_count=2).port == 7001
    assert load_config({"port": "7002"}, env, cpu_count=2).port == 7002


def test_parsed_command_line_flags_beat_the_environment() -> None:
    """Flags parsed from a command line, booleans included, beat their environment twins."""
    env = env_of({"port": "7001", "access_log": "true", "log_level": "error"})
    flags = parse_flags(["--port", "9000", "--no-access-log"])
    config = load_config(flags, env, cpu_count=2)
    assert (config.port, config.access_log, config.log_level) == (9000, False, "ERROR")


def test_an_empty_optional_setting_in_the_environment_means_unset() -> None:
    """A declared but empty optional twin (node ID, worker ID, paths) is as if unset."""
    env = env_of({"node_id": "", "worker_id": "", "secret_file": "", "metrics_port": ""})
    config = load_config({}, env, cpu_count=2)
    assert (config.node_id, config.worker_id, config.secret_file, config.metrics_port) == (
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize("source", ["flag", "env"])
def test_a_worker_id_implies_one_process(source: str) -> None:
    """An explicit worker ID with no process count makes a one-process node, whatever the CPUs."""
    flags, env = ({"worker_id": "5"}, {}) if source == "flag" else ({}, env_of({"worker_id": "5"}))
    config = load_config(flags, env, cpu_count=8)
    assert (config.worker_id, config.processes) == (5, 1)


def test_the_result_is_frozen() -> None:
    """A loaded configuration cannot be changed or given new attributes."""
    config = load_config({}, {}, cpu_count=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
        config.extra = 1  # type: ignore[attr-defined]
    assert isinstance(config, Config)


REFUSALS: list[tuple[str, dict[str, str], dict[str, str], tuple[str, ...]]] = [
    ("port not a number", {"port": "abc"}, {}, ("--port",)),
    ("port too high", {"port": "65536"}, {}, ("--port",)),
    ("port negative", {"port": "-1"}, {}, ("--port",)),
    ("port in another script", {"port": "\u0663"}, {}, ("--port",)),
    ("PORT not a number", {}, {"PORT": "http"}, ("PORT",)),
    ("prefixed port", {}, {"SNOWFLAKE_TRACKER_PORT": "8o8o"}, ("SNOWFLAKE_TRACKER_PORT",)),
    ("processes negative", {"processes": "-1"}, {}, ("--processes",)),
    ("processes zero", {"processes": "0"}, {}, ("--processes",)),
    ("processes in words", {}, env_of({"processes": "two"}), ("SNOWFLAKE_TRACKER_PROCESSES",)),
    ("node id junk", {"node_id": "node-3"}, {}, ("--node-id",)),
    ("node id decimal", {"node_id": "1.5"}, {}, ("--node-id",)),
    ("node id too big", {"node_id": "1024"}, {}, ("--node-id",)),
    ("node id env junk", {}, env_of({"node_id": "x"}), ("SNOWFLAKE_TRACKER_NODE_ID",)),
    ("worker id negative", {"worker_id": "-3"}, {}, ("--worker-id",)),
    ("node bits too many", {"node_bits": "11"}, {}, ("--node-bits",)),
    ("host blank", {"host": "  "}, {}, ("--host",)),
    ("host with a space", {"host": "local host"}, {}, ("--host",)),
    ("weight zero", {"max_weight_kg": "0"}, {}, ("--max-weight-kg",)),
    ("weight infinite", {"max_weight_kg": "inf"}, {}, ("--max-weight-kg",)),
    ("batch zero", {"max_batch": "0"}, {}, ("--max-batch",)),
    ("lead negative", {"max_lead_ms": "-1"}, {}, ("--max-lead-ms",)),
    ("lease zero", {"lease_seconds": "0"}, {}, ("--lease-seconds",)),
    ("lease not a number", {"lease_seconds": "nan"}, {}, ("--lease-seconds",)),
    ("drain negative", {"drain_seconds": "-5"}, {}, ("--drain-seconds",)),
    ("no connections", {"max_connections": "0"}, {}, ("--max-connections",)),
    ("header timeout zero", {"header_timeout": "0"}, {}, ("--header-timeout",)),
    ("keep-alive timeout junk", {"keepalive_timeout": "1m"}, {}, ("--keepalive-timeout",)),
    ("metrics port junk", {"metrics_port": "metrics"}, {}, ("--metrics-port",)),
    ("metrics host alone", {"metrics_host": "127.0.0.1"}, {}, ("--metrics-host", "--metrics-port")),
    ("metrics port = port", {"metrics_port": "8080"}, {}, ("--metrics-port", "--port")),
    (
        "metrics port, no metrics",
        {"metrics_port": "9100"},
        env_of({"metrics": "false"}),
        ("--metrics-port", "--no-metrics"),
    ),
    ("lease within lead", {"lease_seconds": "2"}, {}, ("--lease-seconds", "--max-lead-ms")),
    (
        "lease within lead, env",
        {},
        env_of({"lease_seconds": "1", "max_lead_ms": "1500"}),
        ("--lease-seconds", "--max-lead-ms"),
    ),
    ("access log maybe", {}, env_of({"access_log": "maybe"}), ("SNOWFLAKE_TRACKER_ACCESS_LOG",)),
    ("log level unknown", {"log_level": "verbose"}, {}, ("--log-level",)),
]


@pytest.mark.parametrize(
    ("flags", "env", "named"), [case[1:] for case in REFUSALS], ids=[case[0] for case in REFUSALS]
)
def test_every_refusal_is_a_sentence_naming_the_setting(
    flags: dict[str, str], env: dict[str, str], named: tuple[str, ...]
) -> None:
    """A bad value stops the load with one sentence that names the setting where it was set."""
    with pytest.raises(ConfigError) as caught:
        load_config(flags, env, cpu_count=2)
    message = str(caught.value)
    for name in named:
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", message), message
    assert message.endswith("."), message
    assert "\n" not in message
    assert len(message) < 300


def test_a_refusal_repeats_only_a_short_prefix_of_the_value() -> None:
    """A huge bad value is not echoed back whole."""
    with pytest.raises(ConfigError) as caught:
        load_config({"port": "9" * 10_000 + "x"}, {}, cpu_count=2)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("lease_seconds", "1e400"),
        ("drain_seconds", "1e-400"),
        ("lease_seconds", "3e9"),
        ("drain_seconds", "0"),
    ],
)
def test_seconds_that_are_no_finite_positive_float_are_refused(name: str, text: str) -> None:
    """A number of seconds that overflows to infinity or underflows to 0 is refused."""
    with pytest.raises(ConfigError, match=SETTING_BY_NAME[name].flag):
        load_config({name: text}, {}, cpu_count=2)
