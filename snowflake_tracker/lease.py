"""Restart safety for one worker ID: an exclusive lock and a durable time lease (DESIGN §4).

Two files per worker ID live in the state directory::

    worker-0042.lock    flock()ed for the life of the worker; holds the holder's PID
    worker-0042.lease   {"worker_id": 42, "lease_until_ms": L, "written_at_ms": W}

The lock makes a second live process with the same worker ID on this host refuse to start. It
sits on its own file because the lease file is replaced by rename on every write, and a lock on
a renamed-over inode guards nothing: the next process would lock the new file and succeed. The
lock file is never deleted either, for the same reason: a process that opened it just before an
unlink would lock an orphaned inode while a newcomer locks a fresh file under the same name.

The lease is the restart floor. Before a worker issues an ID past time ``L`` it has written
``L`` here durably (temporary file, fsync, rename, fsync of the directory), and at start it
begins at ``max(wall clock, L)``: so a worker killed with ``kill -9`` and restarted with its
clock set back cannot reissue an ID. The lease only ever rises, and a lease file that cannot be
read stops the start instead of being taken as 0.

flock() belongs to the open file description, so it is shared across fork(): acquire a lease in
the process that will use the worker ID, after forking. The state directory should be on a
local file system (or a Kubernetes volume of the pod's own): flock() over NFS is emulated and
has been unreliable. This module does blocking I/O; the async layer runs ``write`` in an
executor.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TypeGuard

from snowflake_tracker.ids.layout import check_worker_id

STATE_DIR_SETTING = "--state-dir (SNOWFLAKE_TRACKER_STATE_DIR)"
STATE_DIR_MODE = 0o700
FILE_MODE = 0o600
APP_DIR_NAME = "snowflake-tracker"

# A lease file is a few dozen bytes; anything much larger is not one of ours.
_MAX_LEASE_BYTES = 4096
_MAX_PID_BYTES = 32


class LeaseError(RuntimeError):
    """The worker ID's lease cannot be taken or kept; the message says what to do."""


class LeaseHeldError(LeaseError):
    """Another live process holds the lock on this worker ID."""


class LeaseWriteError(LeaseError, OSError):
    """A lease could not be made durable; the stored lease is still the previous one.

    Also an ``OSError``, since the fault is the file system's: a caller that handles I/O
    failures (by retrying later and issuing nothing past the old lease meanwhile) handles it.
    """


def start_floor_ms(wall_ms: int, stored_lease_ms: int) -> int:
    """The first millisecond a restarted worker may use: past both its clock and its lease."""
    return max(wall_ms, stored_lease_ms)


def default_state_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/snowflake-tracker``, else ``~/.cache/snowflake-tracker``."""
    # The XDG base directory spec says a relative XDG_CACHE_HOME is invalid and to be ignored.
    xdg_cache = env.get("XDG_CACHE_HOME", "")
    if xdg_cache and Path(xdg_cache).is_absolute():
        return Path(xdg_cache) / APP_DIR_NAME
    home = env.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
    return Path(home) / ".cache" / APP_DIR_NAME


class WorkerLease:
    """The lock and the time lease of one worker ID in one state directory."""

    def __init__(self, state_dir: Path, worker_id: int) -> None:
        self._state_dir = Path(state_dir)
        self._worker_id = check_worker_id(worker_id)
        stem = f"worker-{worker_id:04d}"
        self._lock_path = self._state_dir / f"{stem}.lock"
        self._path = self._state_dir / f"{stem}.lease"
        # One fixed name is enough: the flock admits one writing process and _mutex one thread.
        self._tmp_path = self._state_dir / f"{stem}.lease.tmp"
        self._lock_fd: int | None = None
        self._stored_ms: int | None = None
        # Serialises write() and release() when write() runs in executor threads.
        self._mutex = threading.Lock()

    @property
    def worker_id(self) -> int:
        return self._worker_id

    @property
    def path(self) -> Path:
        """The lease file."""
        return self._path

    @property
    def lock_path(self) -> Path:
        """The lock file, which is never renamed or removed."""
        return self._lock_path

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._lock_fd is not None

    @property
    def stored_until_ms(self) -> int:
        """The lease last known to be on disk (0 if there was none)."""
        if self._stored_ms is None:
            raise LeaseError(f"The lease on worker ID {self._worker_id} has not been acquired.")
        return self._stored_ms

    def acquire(self) -> int:
        """Take the lock and return the stored ``lease_until_ms`` (0 if none), or refuse."""
        with self._mutex:
            if self._lock_fd is not None:
                raise LeaseError(f"The lease on worker ID {self._worker_id} is already held.")
            self._make_state_dir()
            fd = self._lock()
            try:
                # Only the lock holder writes the temporary file, so a leftover one is from a
                # writer that died before its rename: the lease file itself is still whole.
                with contextlib.suppress(FileNotFoundError):
                    self._tmp_path.unlink()
                stored = self._read_stored()
            except BaseException:
                _unlock_and_close(fd)
                raise
            self._lock_fd = fd
            self._stored_ms = stored
            return stored

    def write(self, lease_until_ms: int) -> None:
        """Record ``lease_until_ms`` durably; a lease at or below the stored one is kept as is.

        Raises ``LeaseWriteError`` when the file system fails; the stored lease is then unchanged.
        """
        if isinstance(lease_until_ms, bool) or not isinstance(lease_until_ms, int):
            raise TypeError(f"lease_until_ms must be an int, not {type(lease_until_ms).__name__}")
        if lease_until_ms < 0:
            raise ValueError(f"lease_until_ms must not be negative, not {lease_until_ms}")
        with self._mutex:
            if self._lock_fd is None or self._stored_ms is None:
                raise LeaseError(
                    f"The lease on worker ID {self._worker_id} is not held, so it cannot be "
                    f"written."
                )
            # Lowering the floor would let a restart reuse milliseconds already issued.
            if lease_until_ms <= self._stored_ms:
                return
            self._replace_lease_file(lease_until_ms)
            self._stored_ms = lease_until_ms

    def settle(self, last_issued_ms: int) -> None:
        """On a clean stop, bring the lease down to the last millisecond actually issued.

        Safe only once nothing more will be issued under this lock (the caller has stopped
        its generator): then every issued ID is at or below ``last_issued_ms``, and a clean
        restart starts from the wall clock instead of up to a lease period in the future.
        After a crash the full lease stays, which is what makes ``kill -9`` safe.
        """
        with self._mutex:
            if self._lock_fd is None or self._stored_ms is None:
                raise LeaseError(f"The lease on worker ID {self._worker_id} is not held.")
            if last_issued_ms < self._stored_ms:
                self._replace_lease_file(last_issued_ms)
                self._stored_ms = last_issued_ms

    def release(self) -> None:
        """Unlock and close; the lease file stays, as the next start's floor."""
        with self._mutex:
            fd, self._lock_fd = self._lock_fd, None
            if fd is not None:
                _unlock_and_close(fd)

    def __enter__(self) -> WorkerLease:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _make_state_dir(self) -> None:
        try:
            self._state_dir.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._state_dir.mkdir(mode=STATE_DIR_MODE)
            except FileExistsError:
                # An existing directory keeps its mode: it may be a volume set up by an operator.
                pass
            else:
                # mkdir's mode is filtered by the umask; the leases are this user's alone.
                self._state_dir.chmod(STATE_DIR_MODE)
        except OSError as exc:
            raise self._state_dir_error(exc) from exc

    def _lock(self) -> int:
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            raise self._state_dir_error(exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder is not None else "another process"
            raise LeaseHeldError(
                f"worker ID {self._worker_id} is already held by {who} "
                f"(lock file {self._lock_path}); two processes with one worker ID would "
                f"mint the same IDs, so this one will not start."
            ) from None
        except OSError as exc:
            os.close(fd)
            raise self._state_dir_error(exc) from exc
        try:
            # The PID is only for the message above; it is not what keeps the ID exclusive.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            _unlock_and_close(fd)
            raise self._state_dir_error(exc) from exc
        return fd

    def _read_stored(self) -> int:
        try:
            with self._path.open("rb") as file:
                raw = file.read(_MAX_LEASE_BYTES + 1)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise self._corrupt(exc.strerror or type(exc).__name__) from exc
        if len(raw) > _MAX_LEASE_BYTES:
            raise self._corrupt(f"it is larger than {_MAX_LEASE_BYTES} bytes")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self._corrupt("it is not JSON") from exc
        if not isinstance(data, dict):
            raise self._corrupt("it is not a JSON object")
        if not _is_plain_int(data.get("worker_id")) or data["worker_id"] != self._worker_id:
            raise self._corrupt(f"it does not name worker ID {self._worker_id}")
        lease = data.get("lease_until_ms")
        if not _is_plain_int(lease) or lease < 0:
            raise self._corrupt("lease_until_ms is not a non-negative whole number")
        return lease

    def _replace_lease_file(self, lease_until_ms: int) -> None:
        record = {
            "worker_id": self._worker_id,
            "lease_until_ms": lease_until_ms,
            "written_at_ms": time.time_ns() // 1_000_000,
        }
        payload = (json.dumps(record) + "\n").encode()
        try:
            fd = os.open(
                self._tmp_path,
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                FILE_MODE,
            )
            try:
                _write_all(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._tmp_path, self._path)
            # The rename is durable only once the directory entry is on disk too.
            dir_fd = os.open(self._state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                self._tmp_path.unlink()
            raise LeaseWriteError(
                f"Could not record the lease of worker ID {self._worker_id} in {self._path} "
                f"({exc.strerror or type(exc).__name__}); IDs past the previous lease must not "
                f"be issued until it is written."
            ) from exc

    def _corrupt(self, reason: str) -> LeaseError:
        return LeaseError(
            f"The lease file {self._path} cannot be used ({reason}), so worker ID "
            f"{self._worker_id} does not know which times it may already have issued and "
            f"will not start; remove the file only if this host's clock is known to be right."
        )

    def _state_dir_error(self, exc: OSError) -> LeaseError:
        return LeaseError(
            f"Cannot use the state directory {self._state_dir} for worker ID "
            f"{self._worker_id} ({exc.strerror or type(exc).__name__}); set "
            f"{STATE_DIR_SETTING} to a writable local directory."
        )


def _is_plain_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_pid(fd: int) -> int | None:
    """The PID a lock holder wrote, or None if it has not written one yet."""
    try:
        text = os.pread(fd, _MAX_PID_BYTES, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _unlock_and_close(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
