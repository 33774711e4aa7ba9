"""The command line, run as a real process: help, decode, and refusals in a sentence."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from livenode import node_env

from snowflake_tracker.config import SETTINGS
from snowflake_tracker.ids.codec import ALPHABET, render
from snowflake_tracker.ids.layout import EPOCH_MS, compose

CLI = [sys.executable, "-m", "snowflake_tracker"]
CLI_TIMEOUT_S = 20.0
# A refusal happens before anything is bound or forked; waiting longer means it did not come.
REFUSAL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Run:
    """How a command ended."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, timeout: float = CLI_TIMEOUT_S, tmp_dir: Path | None = None) -> Run:
    """Run the CLI in a session of its own; kill the whole group if it outlives ``timeout``.

    ``tmp_dir`` becomes the command's TMPDIR, so a node killed here leaves nothing elsewhere.
    """
    env = {"COLUMNS": "200", **({"TMPDIR": str(tmp_dir)} if tmp_dir is not None else {})}
    proc = subprocess.Popen(
        [*CLI, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=node_env(env),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"{' '.join(args)} was still running after {timeout} s:\n{err.decode()[-2000:]}"
        ) from None
    finally:
        # A command that forked (serve) may leave children behind even once it has exited.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    return Run(proc.returncode, out.decode(), err.decode())


def serve_args(state_dir: Path, *extra: str) -> list[str]:
    """``serve`` on loopback, a free port and a private state directory, plus ``extra``."""
    return ["serve", "--host", "127.0.0.1", "--port", "0", "--state-dir", str(state_dir), *extra]


def assert_refusal(run: Run, *named: str) -> None:
    """A non-zero exit with a sentence on stderr that names each of ``named``; no traceback."""
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr
    for name in named:
        assert name in run.stderr, run.stderr
    assert run.stderr.rstrip().endswith("."), run.stderr


def fresh_number(worker_id: int = 300, sequence: int = 17) -> tuple[str, int, int]:
    """A number rendered from an ID minted now: (number, snowflake ID, Unix ms)."""
    now_ms = time.time_ns() // 1_000_000
    snowflake_id = compose(now_ms - EPOCH_MS, worker_id, sequence)
    return render(snowflake_id, "MY"), snowflake_id, now_ms


def test_help_lists_the_commands() -> None:
    """``python -m snowflake_tracker --help`` exits 0 and names both commands."""
    run = run_cli("--help")
    assert run.returncode == 0, run.stderr
    assert "serve" in run.stdout
    assert "decode" in run.stdout


def test_serve_help_shows_every_flag_and_its_environment_twin() -> None:
    """``serve --help`` exits 0 and lists every setting's flag beside its environment twin."""
    run = run_cli("serve", "--help")
    assert run.returncode == 0, run.stderr
    for setting in SETTINGS:
        assert setting.flag in run.stdout
        assert setting.env in run.stdout


def test_no_command_is_a_usage_error() -> None:
    """Without a command the CLI prints its usage and exits 2."""
    run = run_cli()
    assert run.returncode == 2
    assert "usage" in run.stderr.lower()


def test_decode_prints_what_a_fresh_number_holds() -> None:
    """``decode`` of a just-rendered number prints its parts as JSON and exits 0."""
    number, snowflake_id, now_ms = fresh_number()

    run = run_cli("decode", number)

    assert run.returncode == 0, run.stderr
    answer = orjson.loads(run.stdout)
    minted = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_ms // 1000))
    assert answer["tracking_number"] == number
    assert answer["origin_country_id"] == "MY"
    assert answer["minted_at"] == f"{minted}.{now_ms % 1000:03d}Z"
    assert answer["worker_id"] == 300
    assert answer["sequence"] == 17
    assert answer["key_version"] == 0
    assert answer["snowflake_id"] == str(snowflake_id)


def test_decode_reads_a_number_as_people_type_it() -> None:
    """``decode`` accepts lower case and hyphens and answers with the canonical number."""
    number, _, _ = fresh_number()
    typed = "-".join([number[:2], number[2:9], number[9:]]).lower()

    run = run_cli("decode", typed)

    assert run.returncode == 0, run.stderr
    assert orjson.loads(run.stdout)["tracking_number"] == number


@pytest.mark.parametrize("position", [0, 8, 15])
def test_decode_refuses_a_number_with_one_character_changed(position: int) -> None:
    """A number with one character changed exits 1 with the reason on stderr, nothing on stdout."""
    number, _, _ = fresh_number()
    replacement = "Z" if number[position] != "Z" else "X"
    if position >= 2:
        replacement = ALPHABET[(ALPHABET.index(number[position]) + 1) % len(ALPHABET)]
    changed = number[:position] + replacement + number[position + 1 :]

    run = run_cli("decode", changed)

    assert run.returncode == 1
    assert run.stdout == ""
    assert "not a valid tracking number" in run.stderr
    assert "Traceback" not in run.stderr


def test_decode_with_a_missing_secret_file_refuses(tmp_path: Path) -> None:
    """``decode --secret-file`` naming no file exits 2 (a setting, not the number, is wrong),
    naming the file and the setting."""
    number, _, _ = fresh_number()
    missing = tmp_path / "missing-keys.txt"

    run = run_cli("decode", number, "--secret-file", str(missing))

    assert run.returncode == 2
    assert_refusal(run, str(missing), "--secret-file")
    assert "not a valid tracking number" not in run.stderr


def test_serve_with_a_port_that_is_no_number_exits_2_naming_the_flag(tmp_path: Path) -> None:
    """``serve --port abc`` exits 2 with a sentence naming --port, before binding anything."""
    run = run_cli("serve", "--port", "abc", "--state-dir", str(tmp_path), timeout=REFUSAL_TIMEOUT_S)
    assert run.returncode == 2
    assert_refusal(run, "--port", "'abc'")
    assert re.fullmatch(r"snowflake-tracker: [^\n]+\.\n?", run.stderr), run.stderr


def test_serve_with_a_worker_id_and_two_processes_refuses(tmp_path: Path) -> None:
    """``serve --worker-id 5 --processes 2`` refuses: a worker ID names one process."""
    run = run_cli(
        *serve_args(tmp_path, "--worker-id", "5", "--processes", "2"),
        timeout=REFUSAL_TIMEOUT_S,
        tmp_dir=tmp_path,
    )
    assert run.returncode == 2
    assert_refusal(run, "--worker-id", "--processes")
    assert not list(tmp_path.glob("worker-*.lock")), "it claimed a worker ID before refusing"


def test_serve_with_a_missing_secret_file_refuses(tmp_path: Path) -> None:
    """``serve --secret-file`` naming no file exits non-zero at once, naming the file."""
    missing = tmp_path / "missing-keys.txt"
    run = run_cli(
        *serve_args(tmp_path / "state", "--processes", "1", "--secret-file", str(missing)),
        timeout=REFUSAL_TIMEOUT_S / 2,
        tmp_dir=tmp_path,
    )
    assert_refusal(run, str(missing), "--secret-file")
