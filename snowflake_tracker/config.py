"""Configuration: read once from flags and environment variables, validated, frozen.

Every flag has an environment twin (``--port`` and ``SNOWFLAKE_TRACKER_PORT``); a flag wins
over its twin, and the twin over the default. The environment is passed in as a Mapping, so
tests hand over a dict instead of patching ``os.environ``. A bad value stops the start with a
sentence that names the setting, never with a traceback.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from snowflake_tracker.ids.layout import WORKER_BITS
from snowflake_tracker.lease import default_state_dir

ENV_PREFIX = "SNOWFLAKE_TRACKER_"
# Upper bound of the seconds settings: a lease reaching hours ahead would, after a crash,
# start the worker's clock that far in the future.
MAX_SECONDS = 3600.0


class ConfigError(ValueError):
    """A setting is missing or wrong; the message is a sentence naming it."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: its flag, its environment twin(s), how to parse it, its default."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    allowed: str
    extra_env: tuple[str, ...] = ()
    flag_only: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def label(self) -> str:
        return f"{self.flag} / {self.env}"


def _int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        stripped = text.strip()
        if not stripped.isascii() or not stripped.lstrip("-").isdigit():
            raise ValueError
        value = int(stripped)
        if value < lo or (hi is not None and value > hi):
            raise ValueError
        return value

    return parse


def _positive_decimal(text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError from None
    if not value.is_finite() or value <= 0:
        raise ValueError
    return value


def _seconds(text: str) -> float:
    # Checked after the conversion: a Decimal like 1e400 or 1e-400 is finite and positive,
    # but becomes an infinite or zero float.
    value = float(_positive_decimal(text))
    if not 0.001 <= value <= MAX_SECONDS:
        raise ValueError
    return value


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError


def _optional_int(lo: int, hi: int) -> Callable[[str], int | None]:
    parse = _int_in(lo, hi)

    def optional(text: str) -> int | None:
        return None if text.strip() == "" else parse(text)

    return optional


def _optional_path(text: str) -> Path | None:
    return Path(text).expanduser() if text.strip() else None


def _host(text: str) -> str:
    host = text.strip()
    if not host or any(ch.isspace() for ch in host):
        raise ValueError
    return host


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError
    return level


SETTINGS: tuple[Setting, ...] = (
    Setting("host", _host, "127.0.0.1", "address to listen on", "a host name or IP address"),
    Setting(
        "port",
        _int_in(0, 65535),
        8080,
        "TCP port to listen on",
        "an integer from 0 to 65535",
        extra_env=("PORT",),
    ),
    Setting(
        "processes",
        _int_in(1, 1024),
        None,
        "worker processes on this node (default: the CPU count)",
        "an integer from 1 to 1024",
    ),
    Setting(
        "node_id",
        _optional_int(0, 1023),
        None,
        "this node's index among the replicas (default: the Kubernetes pod index, else 0)",
        "an integer from 0 to 1023",
    ),
    Setting(
        "worker_id",
        _optional_int(0, 1023),
        None,
        "one explicit worker ID, for a one-process node",
        "an integer from 0 to 1023",
    ),
    Setting(
        "node_bits",
        _int_in(0, 10),
        7,
        "worker-ID bits that name the node; the rest name the process slot (deployment-wide)",
        "an integer from 0 to 10",
    ),
    Setting(
        "state_dir",
        _optional_path,
        None,
        "directory for the lease and lock files (default: the user's cache directory)",
        "a directory path",
    ),
    Setting(
        "secret_file",
        _optional_path,
        None,
        "file of 'VERSION SECRET' lines: makes numbers non-enumerable",
        "a file path",
    ),
    Setting(
        "max_weight_kg",
        _positive_decimal,
        Decimal(1000),
        "largest accepted parcel weight, in kilograms",
        "a positive decimal number",
    ),
    Setting(
        "max_batch",
        _int_in(1, 100_000),
        1000,
        "most parcels in one batch request",
        "an integer from 1 to 100000",
    ),
    Setting(
        "max_lead_ms",
        _int_in(0, 60_000),
        2000,
        "how far ID time may run ahead of the clock before callers wait",
        "an integer from 0 to 60000",
    ),
    Setting(
        "lease_seconds",
        _seconds,
        10.0,
        "how far ahead each durable lease reaches",
        "a number of seconds from 0.001 to 3600",
    ),
    Setting(
        "drain_seconds",
        _seconds,
        10.0,
        "grace period for in-flight requests on SIGTERM",
        "a number of seconds from 0.001 to 3600",
    ),
    Setting(
        "max_connections",
        _int_in(1, 1_000_000),
        1024,
        "most client connections one worker holds; past it a new one is answered 503",
        "an integer from 1 to 1000000",
    ),
    Setting(
        "header_timeout",
        _seconds,
        10.0,
        "seconds a client has to send a request's headers, from its first byte (then 408)",
        "a number of seconds from 0.001 to 3600",
    ),
    Setting(
        "keepalive_timeout",
        _seconds,
        15.0,
        "seconds an idle keep-alive connection stays open",
        "a number of seconds from 0.001 to 3600",
    ),
    Setting(
        "metrics",
        _bool,
        True,
        "count requests and serve /metrics (--no-metrics: no /metrics, nothing counted)",
        "true or false",
    ),
    Setting(
        "metrics_host",
        _host,
        "",
        "serve /metrics on this separate address instead of the service port",
        "a host name or IP address",
    ),
    Setting(
        "metrics_port",
        _optional_int(0, 65535),
        None,
        "serve /metrics on this separate port instead of the service port",
        "an integer from 0 to 65535",
    ),
    Setting(
        "reveal_keyed",
        _bool,
        False,
        "show mint time, worker ID and sequence when decoding a keyed number (an internal "
        "listener's choice: they re-expose what the key hides)",
        "true or false",
    ),
    Setting(
        "access_log",
        _bool,
        False,
        "log every request (costs throughput)",
        "true or false",
    ),
    Setting("log_level", _log_level, "INFO", "DEBUG, INFO, WARNING or ERROR", "a log level name"),
)


@dataclass(frozen=True, slots=True)
class Config:
    """The validated settings of one node."""

    host: str = "127.0.0.1"
    port: int = 8080
    processes: int = 1
    node_id: int | None = None
    worker_id: int | None = None
    node_bits: int = 7
    state_dir: Path = field(default_factory=lambda: default_state_dir(os.environ))
    secret_file: Path | None = None
    max_weight_kg: Decimal = Decimal(1000)
    max_batch: int = 1000
    max_lead_ms: int = 2000
    lease_seconds: float = 10.0
    drain_seconds: float = 10.0
    max_connections: int = 1024
    header_timeout: float = 10.0
    keepalive_timeout: float = 15.0
    metrics: bool = True
    metrics_host: str = ""
    metrics_port: int | None = None
    reveal_keyed: bool = False
    access_log: bool = False
    log_level: str = "INFO"

    @property
    def separate_metrics(self) -> bool:
        """Whether /metrics has a listener of its own."""
        return self.metrics and self.metrics_port is not None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; defaults are resolved later, against the environment."""
    for setting in SETTINGS:
        if setting.parse is _bool:
            parser.add_argument(
                setting.flag,
                dest=setting.name,
                default=None,
                action=argparse.BooleanOptionalAction,
                help=f"{setting.help} [{setting.env}]",
            )
        else:
            parser.add_argument(
                setting.flag,
                dest=setting.name,
                default=None,
                metavar=setting.name.upper(),
                help=f"{setting.help} [{setting.env}]",
            )


def load_config(
    flags: Mapping[str, Any], env: Mapping[str, str], *, cpu_count: int | None = None
) -> Config:
    """Resolve every setting from flags, then environment, then default; freeze the result."""
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = flags.get(setting.name)
        source = setting.flag
        if raw is None:
            for name in (setting.env, *setting.extra_env):
                if name in env:
                    raw, source = env[name], name
                    break
        if raw is None:
            values[setting.name] = setting.default
            continue
        if isinstance(raw, bool):
            values[setting.name] = raw
            continue
        try:
            values[setting.name] = setting.parse(str(raw))
        except (ValueError, ArithmeticError):
            shown = str(raw)[:40]
            raise ConfigError(
                f"{source} must be {setting.allowed}, not {shown!r} (setting {setting.label})."
            ) from None
    if values["processes"] is None:
        # An explicit worker ID names a one-process node; otherwise one process per CPU.
        # The CPUs this process may run on (a container's cpuset, not the host's count), and
        # never more than a node has slots: an unset default should not refuse to start.
        one = values["worker_id"] is not None
        available = cpu_count or len(os.sched_getaffinity(0)) or 1
        values["processes"] = 1 if one else min(available, 1 << (WORKER_BITS - values["node_bits"]))
    if values["state_dir"] is None:
        values["state_dir"] = default_state_dir(env)
    if values["metrics_host"] and values["metrics_port"] is None:
        raise ConfigError(
            "--metrics-host needs --metrics-port / SNOWFLAKE_TRACKER_METRICS_PORT as well."
        )
    if not values["metrics"] and values["metrics_port"] is not None:
        raise ConfigError(
            "--metrics-port / SNOWFLAKE_TRACKER_METRICS_PORT has no use with --no-metrics / "
            "SNOWFLAKE_TRACKER_METRICS=false; drop one of them."
        )
    if values["metrics_port"] is not None and not values["metrics_host"]:
        values["metrics_host"] = values["host"]
    if (
        values["metrics_port"] is not None
        and values["metrics_port"] != 0
        and values["metrics_port"] == values["port"]
        and values["metrics_host"] == values["host"]
    ):
        raise ConfigError(
            "--metrics-port must differ from --port (or leave it unset to serve /metrics "
            "on the service port)."
        )
    if values["lease_seconds"] * 1000 <= values["max_lead_ms"]:
        raise ConfigError(
            "--lease-seconds must reach further than --max-lead-ms, or IDs borrowed ahead "
            "of the clock would outrun the lease."
        )
    return Config(**values)


def parse_flags(argv: Sequence[str]) -> dict[str, Any]:
    """Parse ``serve`` flags alone (for tests and tools); see ``__main__`` for the CLI."""
    parser = argparse.ArgumentParser(prog="snowflake-tracker serve", exit_on_error=False)
    add_arguments(parser)
    return vars(parser.parse_args(list(argv)))
