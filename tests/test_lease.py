"""Worker leases on real files and processes: one holder per worker ID, a floor that only rises."""

from __future__ import annotations

import json
import os
import selectors
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from snowflake_tracker.lease import (
    LeaseError,
    LeaseHeldError,
    LeaseWriteError,
    WorkerLease,
    default_state_dir,
    start_floor_ms,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 20.0

# A process that takes a lease, optionally writes one, reports, and then obeys commands on stdin
# until stdin closes. Exit status 3 means the lease was held by someone else.
HOLDER = """
import sys
from pathlib import Path
from snowflake_tracker.lease import LeaseHeldError, WorkerLease

lease = WorkerLease(Path(sys.argv[1]), int(sys.argv[2]))
try:
    stored = lease.acquire()
except LeaseHeldError as exc:
    print("held", exc, flush=True)
    sys.exit(3)
if len(sys.argv) > 3:
    lease.write(int(sys.argv[3]))
print("acquired", stored, flush=True)
for line in sys.stdin:
    if line.strip() == "release":
        lease.release()
        print("released", flush=True)
"""


class Holder:
    """A lease-holding child process, read line by line with a deadline."""

    def __init__(self, state_dir: Path, worker_id: int, lease_ms: int | None = None) -> None:
        args = [sys.executable, "-c", HOLDER, str(state_dir), str(worker_id)]
        if lease_ms is not None:
            args.append(str(lease_ms))
        python_path = [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, python_path))}
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0
        )
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_line(self) -> str:
        """The child's next output line; fails the test if none comes in time."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + TIMEOUT_S
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    pytest.fail(f"child {self.pid} said nothing within {TIMEOUT_S} s")
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    pytest.fail(f"child {self.pid} exited with {self.proc.wait(TIMEOUT_S)}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{command}\n".encode())

    def stop(self) -> None:
        """End the child however it is doing, and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT_S)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    """Child processes started by a test, every one killed and reaped afterwards."""
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.stop()


def start_holder(
    holders: list[Holder], state_dir: Path, worker_id: int, lease_ms: int | None = None
) -> Holder:
    holder = Holder(state_dir, worker_id, lease_ms)
    holders.append(holder)
    return holder


def lease_record(lease: WorkerLease) -> dict[str, object]:
    record = json.loads(lease.path.read_text())
    assert isinstance(record, dict)
    return record


# One process.


def test_files_are_named_after_the_worker_id(tmp_path: Path) -> None:
    """The lock and lease files carry the zero-padded worker ID."""
    lease = WorkerLease(tmp_path, 42)
    assert lease.lock_path == tmp_path / "worker-0042.lock"
    assert lease.path == tmp_path / "worker-0042.lease"


@pytest.mark.parametrize("worker_id", [-1, 1024])
def test_worker_id_must_fit_the_worker_bits(tmp_path: Path, worker_id: int) -> None:
    """A lease is only for a worker ID that fits 10 bits."""
    with pytest.raises(ValueError, match=r"outside 0\.\.1023"):
        WorkerLease(tmp_path, worker_id)


def test_first_acquire_has_no_stored_lease(tmp_path: Path) -> None:
    """With no lease file the stored lease is 0 and no lease file is made up."""
    with WorkerLease(tmp_path, 1) as lease:
        assert lease.stored_until_ms == 0
        assert not lease.path.exists()


def test_written_lease_is_returned_by_the_next_acquire(tmp_path: Path) -> None:
    """A lease written, released and acquired again comes back as the stored lease."""
    lease = WorkerLease(tmp_path, 7)
    assert lease.acquire() == 0
    before_ms = time.time_ns() // 1_000_000
    lease.write(1_800_000_000_000)
    lease.release()
    assert lease.path.exists()
    record = lease_record(lease)
    assert record["worker_id"] == 7
    assert record["lease_until_ms"] == 1_800_000_000_000
    assert isinstance(record["written_at_ms"], int)
    assert record["written_at_ms"] >= before_ms
    again = WorkerLease(tmp_path, 7)
    assert again.acquire() == 1_800_000_000_000
    assert again.stored_until_ms == 1_800_000_000_000
    again.release()


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    """After any number of writes the directory holds only the lock file and the lease file."""
    with WorkerLease(tmp_path, 3) as lease:
        for lease_ms in range(1_000, 1_050):
            lease.write(lease_ms)
        assert {p.name for p in tmp_path.iterdir()} == {lease.lock_path.name, lease.path.name}
        assert lease_record(lease)["lease_until_ms"] == 1_049


def test_leftover_temporary_file_is_cleared_and_the_lease_kept(tmp_path: Path) -> None:
    """A temporary file left by a writer that died before its rename neither counts nor stays."""
    with WorkerLease(tmp_path, 3) as lease:
        lease.write(5_000)
    leftover = tmp_path / "worker-0003.lease.tmp"
    leftover.write_bytes(b'{"worker_id": 3, "lease_')
    with WorkerLease(tmp_path, 3) as lease:
        assert lease.stored_until_ms == 5_000
        assert not leftover.exists()


def test_write_never_lowers_the_stored_lease(tmp_path: Path) -> None:
    """Writing an earlier lease leaves the later one on disk and in memory."""
    with WorkerLease(tmp_path, 9) as lease:
        lease.write(5_000)
        lease.write(3_000)
        lease.write(5_000)
        assert lease.stored_until_ms == 5_000
        assert lease_record(lease)["lease_until_ms"] == 5_000
    with WorkerLease(tmp_path, 9) as lease:
        lease.write(4_000)
        assert lease_record(lease)["lease_until_ms"] == 5_000


def test_concurrent_writes_from_threads_keep_the_highest(tmp_path: Path) -> None:
    """Writes racing in executor threads leave the highest lease, never a lower one."""
    values = list(range(10_000, 10_400))
    with WorkerLease(tmp_path, 11) as lease:

        def write_all(chunk: list[int]) -> None:
            for value in chunk:
                lease.write(value)

        threads = [threading.Thread(target=write_all, args=(values[i::8],)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT_S)
        assert lease.stored_until_ms == max(values)
        assert lease_record(lease)["lease_until_ms"] == max(values)


def test_failed_write_keeps_the_previous_lease(tmp_path: Path) -> None:
    """A write the file system refuses raises, leaves the old lease in force and no debris."""
    with WorkerLease(tmp_path, 12) as lease:
        lease.write(5_000)
        lease.path.unlink()
        # Renaming a file over a non-empty directory fails, even for root.
        (lease.path / "blocker").mkdir(parents=True)
        with pytest.raises(LeaseWriteError) as caught:
            lease.write(9_000)
        assert isinstance(caught.value, LeaseError)
        assert isinstance(caught.value, OSError)
        assert str(lease.path) in str(caught.value)
        assert lease.stored_until_ms == 5_000
        assert {p.name for p in tmp_path.iterdir()} == {lease.lock_path.name, lease.path.name}


@pytest.mark.parametrize("bad", [-1, True])
def test_write_refuses_a_value_that_is_not_a_time(tmp_path: Path, bad: int) -> None:
    """A negative or boolean lease is a caller's bug, refused rather than stored."""
    with WorkerLease(tmp_path, 1) as lease, pytest.raises((ValueError, TypeError)):
        lease.write(bad)


def test_lease_must_be_held_to_be_written(tmp_path: Path) -> None:
    """Writing or reading the stored lease without holding it is refused."""
    lease = WorkerLease(tmp_path, 1)
    with pytest.raises(LeaseError, match="not been acquired"):
        _ = lease.stored_until_ms
    with pytest.raises(LeaseError, match="not held"):
        lease.write(1)
    lease.acquire()
    lease.release()
    with pytest.raises(LeaseError, match="not held"):
        lease.write(1)


def test_release_is_idempotent_and_acquire_is_not(tmp_path: Path) -> None:
    """Releasing twice is harmless; acquiring twice on one lease is refused."""
    lease = WorkerLease(tmp_path, 1)
    lease.acquire()
    with pytest.raises(LeaseError, match="already held"):
        lease.acquire()
    lease.release()
    lease.release()
    assert not lease.held


def test_lock_file_names_the_holder(tmp_path: Path) -> None:
    """The lock file holds the PID of the process holding it."""
    with WorkerLease(tmp_path, 1) as lease:
        assert lease.lock_path.read_text() == f"{os.getpid()}\n"


def test_second_lease_in_the_same_process_is_refused(tmp_path: Path) -> None:
    """flock is per open file, so a second claim is refused even from the holder's own process."""
    with WorkerLease(tmp_path, 5) as first:
        with pytest.raises(LeaseHeldError) as caught:
            WorkerLease(tmp_path, 5).acquire()
        assert str(caught.value).startswith(
            f"worker ID 5 is already held by process {os.getpid()} (lock file {first.lock_path})"
        )
    with WorkerLease(tmp_path, 5):
        pass


def test_different_worker_ids_do_not_contend(tmp_path: Path) -> None:
    """Leases on different worker IDs are independent."""
    with WorkerLease(tmp_path, 1), WorkerLease(tmp_path, 2) as second:
        assert second.held


# Corrupt or unusable lease files and state directories.


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not JSON"),
        (b'{"worker_id": 4, "lease_until_ms": 17', "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[4, 1000]", "not a JSON object"),
        (b'{"lease_until_ms": 1000}', "does not name worker ID 4"),
        (b'{"worker_id": 5, "lease_until_ms": 1000}', "does not name worker ID 4"),
        (b'{"worker_id": true, "lease_until_ms": 1000}', "does not name worker ID 4"),
        (b'{"worker_id": 4}', "lease_until_ms"),
        (b'{"worker_id": 4, "lease_until_ms": -1}', "lease_until_ms"),
        (b'{"worker_id": 4, "lease_until_ms": "1000"}', "lease_until_ms"),
        (b'{"worker_id": 4, "lease_until_ms": 1000.5}', "lease_until_ms"),
        (b'{"worker_id": 4, "lease_until_ms": false}', "lease_until_ms"),
        (b'{"worker_id": 4, "lease_until_ms": 1}' + b" " * 5000, "larger than"),
    ],
)
def test_corrupt_lease_file_stops_the_start(tmp_path: Path, content: bytes, reason: str) -> None:
    """A lease file that cannot be trusted is refused, never read as 0, and the lock is let go."""
    lease = WorkerLease(tmp_path, 4)
    lease.path.write_bytes(content)
    with pytest.raises(LeaseError) as caught:
        lease.acquire()
    message = str(caught.value)
    assert not isinstance(caught.value, LeaseHeldError)
    assert reason in message
    assert str(lease.path) in message
    assert "clock is known to be right" in message
    assert not lease.held
    # The refusal released the lock: once the file is fixed, the start goes through.
    lease.path.write_text('{"worker_id": 4, "lease_until_ms": 1000}')
    with WorkerLease(tmp_path, 4) as fixed:
        assert fixed.stored_until_ms == 1000


def test_unreadable_lease_file_stops_the_start(tmp_path: Path) -> None:
    """A lease path that cannot be read as a file is refused with the reason."""
    lease = WorkerLease(tmp_path, 4)
    lease.path.mkdir()
    with pytest.raises(LeaseError, match="cannot be used"):
        lease.acquire()
    assert not lease.held


def test_state_dir_is_created_private(tmp_path: Path) -> None:
    """A new state directory, and its missing parents, are made; the directory is mode 0o700."""
    state_dir = tmp_path / "a" / "b" / "state"
    old_umask = os.umask(0o002)
    try:
        with WorkerLease(state_dir, 1):
            pass
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700


def test_existing_state_dir_keeps_its_mode(tmp_path: Path) -> None:
    """A state directory set up beforehand (a mounted volume, say) is used as it is."""
    tmp_path.chmod(0o750)
    with WorkerLease(tmp_path, 1):
        pass
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o750


def test_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    """A state directory path that is a file is refused, naming the setting to change."""
    state_dir = tmp_path / "state"
    state_dir.write_text("")
    with pytest.raises(LeaseError, match=r"--state-dir \(SNOWFLAKE_TRACKER_STATE_DIR\)"):
        WorkerLease(state_dir, 1).acquire()


# Other processes.


def test_lease_held_by_another_process_is_refused_until_released(
    tmp_path: Path, holders: list[Holder]
) -> None:
    """A claim fails naming the holder's PID while another process holds it, and works after."""
    holder = start_holder(holders, tmp_path, 6)
    assert holder.read_line() == "acquired 0"
    lease = WorkerLease(tmp_path, 6)
    with pytest.raises(LeaseHeldError) as caught:
        lease.acquire()
    assert str(caught.value).startswith(
        f"worker ID 6 is already held by process {holder.pid} (lock file {lease.lock_path})"
    )
    holder.send("release")
    assert holder.read_line() == "released"
    assert holder.proc.poll() is None
    assert lease.acquire() == 0
    lease.release()


def test_lease_of_a_killed_process_is_free_and_keeps_its_floor(
    tmp_path: Path, holders: list[Holder]
) -> None:
    """After kill -9 the kernel frees the lock, and the killed worker's lease is the new floor."""
    holder = start_holder(holders, tmp_path, 8, lease_ms=1_900_000_000_000)
    assert holder.read_line() == "acquired 0"
    with pytest.raises(LeaseHeldError, match=str(holder.pid)):
        WorkerLease(tmp_path, 8).acquire()
    os.kill(holder.pid, signal.SIGKILL)
    assert holder.proc.wait(TIMEOUT_S) == -signal.SIGKILL
    with WorkerLease(tmp_path, 8) as lease:
        assert lease.stored_until_ms == 1_900_000_000_000
        assert lease.lock_path.read_text() == f"{os.getpid()}\n"


def test_another_process_cannot_take_a_lease_held_here(
    tmp_path: Path, holders: list[Holder]
) -> None:
    """A child process claiming a worker ID this process holds is refused, naming this PID."""
    with WorkerLease(tmp_path, 2):
        holder = start_holder(holders, tmp_path, 2)
        line = holder.read_line()
        assert line.startswith(f"held worker ID 2 is already held by process {os.getpid()} ")
        assert holder.proc.wait(TIMEOUT_S) == 3


def test_exactly_one_of_many_racing_processes_wins(tmp_path: Path, holders: list[Holder]) -> None:
    """Processes started together on one worker ID: one acquires it, every other is refused."""
    racers = [start_holder(holders, tmp_path, 10) for _ in range(6)]
    outcomes = [racer.read_line().split(" ", 1)[0] for racer in racers]
    assert sorted(outcomes) == ["acquired"] + ["held"] * 5


# Pure helpers.


@pytest.mark.parametrize(
    ("wall_ms", "stored_ms", "floor_ms"),
    [(5_000, 0, 5_000), (5_000, 7_000, 7_000), (7_000, 7_000, 7_000)],
)
def test_start_floor_is_past_both_clock_and_lease(
    wall_ms: int, stored_ms: int, floor_ms: int
) -> None:
    """A restart begins at the later of the wall clock and the stored lease."""
    assert start_floor_ms(wall_ms, stored_ms) == floor_ms


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"XDG_CACHE_HOME": "/var/cache/u", "HOME": "/home/u"}, "/var/cache/u/snowflake-tracker"),
        ({"XDG_CACHE_HOME": "rel/cache", "HOME": "/home/u"}, "/home/u/.cache/snowflake-tracker"),
        ({"XDG_CACHE_HOME": "", "HOME": "/home/u"}, "/home/u/.cache/snowflake-tracker"),
        ({"HOME": "/home/u"}, "/home/u/.cache/snowflake-tracker"),
    ],
)
def test_default_state_dir_follows_xdg(env: dict[str, str], expected: str) -> None:
    """The default state directory is under XDG_CACHE_HOME when absolute, else ~/.cache."""
    assert default_state_dir(env) == Path(expected)


def test_default_state_dir_without_home_uses_the_account() -> None:
    """With no HOME in the environment the account's home directory is used."""
    assert default_state_dir({}).parts[-2:] == (".cache", "snowflake-tracker")


def test_settle_lowers_the_lease_to_what_was_issued_and_never_raises_it(tmp_path: Path) -> None:
    """A clean stop records the last issued millisecond, below the lease but never above it."""
    with WorkerLease(tmp_path, 3) as lease:
        lease.write(10_000)
        lease.settle(7_500)
        assert lease.stored_until_ms == 7_500
        lease.settle(9_000)
        assert lease.stored_until_ms == 7_500
    with WorkerLease(tmp_path, 3) as again:
        assert again.stored_until_ms == 7_500
        assert json.loads(again.path.read_text())["lease_until_ms"] == 7_500
