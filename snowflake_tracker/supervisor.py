"""The node supervisor: bind once, fork workers into fixed slots, reap, respawn, drain.

Why not Gunicorn: its workers have no stable index, and a reload overlaps old and new workers;
either would let two live processes share a worker ID (DESIGN §7). Here slot ``s`` always
runs worker ID ``f(node, s)``, and a slot is refilled only after its previous process has been
reaped, so two live processes never share an ID. The worker's own ``flock`` on the ID's lock
file backs this up across supervisors on one host.

Signals are blocked in the supervisor and taken synchronously with ``sigtimedwait``, so there
is no handler to race with ``waitpid``; each child unblocks them before it starts its loop.

Metrics (web/metrics.py) are one view of the whole node: every process counts into files in
one directory, private to this node run. The supervisor makes it empty at start, names it in
PROMETHEUS_MULTIPROC_DIR before anything imports prometheus_client, tells the metrics of each
reaped worker, and removes the directory when the node stops. With ``--metrics-port`` it binds
that socket once too, and every worker serves ``/metrics`` on it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from snowflake_tracker.config import Config
from snowflake_tracker.lease import LeaseError, LeaseHeldError, WorkerLease
from snowflake_tracker.logs import configure_logging
from snowflake_tracker.secrets import SecretFileError, load_keys
from snowflake_tracker.worker import WorkerSpec, run_worker
from snowflake_tracker.worker_id import WorkerIdError, plan_worker_ids

log = logging.getLogger("snowflake_tracker.supervisor")

HANDLED_SIGNALS = frozenset({signal.SIGCHLD, signal.SIGTERM, signal.SIGINT})

# A worker that exits with this status could not start in a way a restart will not fix
# (its worker ID is held elsewhere, its state directory is unusable): the node stops.
EXIT_FATAL = 3
EXIT_CRASHED = 70

RESPAWN_BACKOFF_MIN_S = 0.1
RESPAWN_BACKOFF_MAX_S = 10.0
# A worker that lived this long before dying resets its slot's backoff.
STABLE_AFTER_S = 30.0
# After the drain deadline, stragglers get this long after SIGKILL to be reaped.
KILL_GRACE_S = 5.0
LISTEN_BACKLOG = 2048
# prometheus_client's switch to multiprocess mode; it reads it when it is first imported.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_DIR_PREFIX = "snowflake-tracker-metrics-"


@dataclass(slots=True)
class Slot:
    """One fixed place in the node: its worker ID and the process now in it (if any)."""

    spec: WorkerSpec
    pid: int = 0
    started: float = 0.0
    backoff: float = RESPAWN_BACKOFF_MIN_S
    respawn_at: float = 0.0


def bind(config: Config) -> socket.socket:
    """Bind the listening socket once; every worker accepts on it."""
    return _listen(config.host, config.port)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server(
        (host, port), family=family, backlog=LISTEN_BACKLOG, reuse_port=False
    )
    sock.setblocking(False)
    return sock


def make_metrics_dir() -> Path:
    """A new, empty directory for this node run's metrics, named in PROMETHEUS_MULTIPROC_DIR.

    A fresh private directory (under TMPDIR) per run: no count survives from a previous run,
    and two nodes on one host never share one. It must be set before prometheus_client is
    first imported, which nothing in the supervisor has done yet (tests/test_metrics.py).
    The supervisor's PID is in the name, so a later node can remove the directory of one
    that was killed before it could (:func:`remove_stale_metrics_dirs`).
    """
    parent = Path(tempfile.gettempdir())
    remove_stale_metrics_dirs(parent)
    path = Path(tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-", dir=parent))
    os.environ[METRICS_DIR_ENV] = str(path)
    return path


def remove_stale_metrics_dirs(parent: Path) -> None:
    """Remove metrics directories whose supervisor no longer runs (it was SIGKILLed).

    In a container /tmp often outlives the process (an emptyDir survives a restart), and
    each such leftover would hold a few files per worker for good.
    """
    for path in parent.glob(METRICS_DIR_PREFIX + "*-*"):
        pid_text = path.name[len(METRICS_DIR_PREFIX) :].split("-", 1)[0]
        if pid_text.isdigit() and not _process_exists(int(pid_text)) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_worker_ids_free(config: Config, worker_ids: list[int]) -> None:
    """Refuse at once, before binding, when another live process holds one of our IDs."""
    for worker_id in worker_ids:
        lease = WorkerLease(config.state_dir, worker_id)
        lease.acquire()
        lease.release()


def spawn(
    config: Config,
    slot: Slot,
    sock: socket.socket,
    before_exec: Callable[[], None],
    metrics_sock: socket.socket | None = None,
) -> int:
    """Fork a worker into ``slot``; the child never returns from here."""
    pid = os.fork()
    if pid:
        return pid
    status = EXIT_CRASHED
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        before_exec()
        status = run_worker(config, slot.spec, sock, metrics_sock)
    except LeaseHeldError as exc:
        log.error(str(exc), extra={"event": "worker_refused", "worker_id": slot.spec.worker_id})
        status = EXIT_FATAL
    except SecretFileError as exc:
        log.error(str(exc), extra={"event": "worker_refused", "worker_id": slot.spec.worker_id})
        status = EXIT_FATAL
    except (LeaseError, OSError) as exc:
        log.error(
            f"worker could not claim its ID: {exc}",
            extra={"event": "worker_refused", "worker_id": slot.spec.worker_id},
        )
        status = EXIT_FATAL
    except BaseException:
        traceback.print_exc()
    finally:
        # Never fall back into the supervisor's code in the child.
        logging.shutdown()
        os._exit(status)


def describe_exit(status: int) -> tuple[str, int]:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}", -os.WTERMSIG(status)
    code = os.WEXITSTATUS(status)
    return f"exited with status {code}", code


class Supervisor:
    """Keeps one process in each slot until told to stop."""

    def __init__(
        self,
        config: Config,
        slots: list[Slot],
        sock: socket.socket,
        before_exec: Callable[[], None] = lambda: None,
        on_death: Callable[[int], None] = lambda pid: None,
        *,
        on_respawn: Callable[[WorkerSpec], None] = lambda spec: None,
        metrics_sock: socket.socket | None = None,
    ) -> None:
        self.config = config
        self.slots = slots
        self.sock = sock
        self.before_exec = before_exec
        self.on_death = on_death
        self.on_respawn = on_respawn
        self.metrics_sock = metrics_sock
        self.fatal = False

    def _start(self, slot: Slot) -> None:
        slot.pid = spawn(self.config, slot, self.sock, self.before_exec, self.metrics_sock)
        slot.started = time.monotonic()
        log.info(
            "worker spawned",
            extra={
                "event": "worker_spawn",
                "slot": slot.spec.slot,
                "worker_id": slot.spec.worker_id,
                "child_pid": slot.pid,
            },
        )

    def _reap(self, stopping: bool) -> None:
        """Collect every dead child; schedule its slot's refill (after the reap, never before)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is None:
                continue
            how, code = describe_exit(status)
            self.on_death(pid)
            slot.pid = 0
            lived = time.monotonic() - slot.started
            level = logging.INFO if stopping and code in (0, -signal.SIGTERM) else logging.ERROR
            log.log(
                level,
                f"worker {how}",
                extra={
                    "event": "worker_exit",
                    "slot": slot.spec.slot,
                    "worker_id": slot.spec.worker_id,
                    "child_pid": pid,
                    "exit": code,
                    "lived_s": round(lived, 3),
                },
            )
            if code == EXIT_FATAL:
                self.fatal = True
            if lived > STABLE_AFTER_S:
                slot.backoff = RESPAWN_BACKOFF_MIN_S
            slot.respawn_at = time.monotonic() + slot.backoff
            slot.backoff = min(slot.backoff * 2, RESPAWN_BACKOFF_MAX_S)

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; return the node's exit status."""
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        for slot in self.slots:
            self._start(slot)
        stop_signal = 0
        while not stop_signal and not self.fatal:
            now = time.monotonic()
            for slot in self.slots:
                if slot.pid == 0 and slot.respawn_at <= now:
                    self.on_respawn(slot.spec)
                    self._start(slot)
            due = [s.respawn_at - now for s in self.slots if s.pid == 0]
            timeout = max(0.01, min(due)) if due else 1.0
            info = signal.sigtimedwait(HANDLED_SIGNALS, timeout)
            if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                stop_signal = info.si_signo
            self._reap(stopping=False)
        return self.stop(stop_signal)

    def _close_listeners(self) -> None:
        self.sock.close()
        if self.metrics_sock is not None:
            self.metrics_sock.close()

    def stop(self, signum: int) -> int:
        """Tell every worker to drain, wait for them within the grace period, then exit."""
        reason = signal.Signals(signum).name if signum else "a worker could not start"
        log.info("node stopping", extra={"event": "node_stop", "reason": reason})
        for slot in self.slots:
            if slot.pid:
                os.kill(slot.pid, signal.SIGTERM)
        # Our copy of the listening socket would keep the kernel accepting connections that
        # no worker will ever answer; closed, new clients are refused at once once the
        # workers close theirs.
        self._close_listeners()
        deadline = time.monotonic() + self.config.drain_seconds + 1.0
        killed = False
        while any(s.pid for s in self.slots):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if killed:
                    break
                for slot in self.slots:
                    if slot.pid:
                        log.error(
                            "worker did not drain in time; killing it",
                            extra={"event": "worker_kill", "worker_id": slot.spec.worker_id},
                        )
                        os.kill(slot.pid, signal.SIGKILL)
                killed = True
                deadline = time.monotonic() + KILL_GRACE_S
                continue
            signal.sigtimedwait(HANDLED_SIGNALS, min(remaining, 0.5))
            self._reap(stopping=True)
        self._close_listeners()
        if self.fatal:
            return 1
        return 0


def serve(config: Config, env: Mapping[str, str]) -> int:
    """``snowflake-tracker serve``: plan worker IDs, bind, supervise. Returns the exit status."""
    configure_logging(config.log_level)
    try:
        node, worker_ids = plan_worker_ids(
            processes=config.processes,
            worker_id=config.worker_id,
            node_id=config.node_id,
            env=env,
            hostname=socket.gethostname(),
            node_bits=config.node_bits,
        )
        check_worker_ids_free(config, worker_ids)
        # Read once here so a bad key file stops the start with its sentence, rather than
        # every worker failing after the fork; each worker reads it again for itself.
        load_keys(config.secret_file)
    except (WorkerIdError, LeaseError, SecretFileError) as exc:
        print(f"snowflake-tracker: {exc}", file=sys.stderr)
        return 2
    try:
        sock = bind(config)
    except OSError as exc:
        print(
            f"snowflake-tracker: cannot listen on {config.host}:{config.port} "
            f"(--host/--port): {exc.strerror or exc}.",
            file=sys.stderr,
        )
        return 2
    metrics_sock = None
    if config.metrics and config.metrics_port is not None:
        try:
            metrics_sock = _listen(config.metrics_host, config.metrics_port)
        except OSError as exc:
            sock.close()
            print(
                f"snowflake-tracker: cannot listen on {config.metrics_host}:"
                f"{config.metrics_port} (--metrics-host/--metrics-port): "
                f"{exc.strerror or exc}.",
                file=sys.stderr,
            )
            return 2
    # From here on a SIGTERM waits for Supervisor.run to take it, so the node always stops
    # through its cleanup (which removes the metrics directory), even during start-up.
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    metrics_dir = make_metrics_dir() if config.metrics else None
    try:
        specs = [
            WorkerSpec(slot, worker_id, node, tuple(worker_ids), metrics_dir)
            for slot, worker_id in enumerate(worker_ids)
        ]
        host, port = sock.getsockname()[:2]
        listening: dict[str, object] = {"host": host, "port": port}
        if metrics_sock is not None:
            metrics_host, metrics_port = metrics_sock.getsockname()[:2]
            listening.update(metrics_host=metrics_host, metrics_port=metrics_port)
        log.info(
            "node listening",
            extra={
                "event": "node_start",
                **listening,
                "node_id": None if node is None else node.node_id,
                "node_id_source": "--worker-id" if node is None else node.source,
                "worker_ids": worker_ids,
                "state_dir": str(config.state_dir),
                "metrics_dir": None if metrics_dir is None else str(metrics_dir),
            },
        )
        return supervise(config, specs, sock, metrics_sock)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def supervise(
    config: Config,
    specs: list[WorkerSpec],
    sock: socket.socket,
    metrics_sock: socket.socket | None = None,
) -> int:
    """Run the slots of ``specs`` until the node stops, counting restarts when metrics are on."""
    slots = [Slot(spec) for spec in specs]
    metrics_dir = specs[0].metrics_dir if specs else None
    if metrics_dir is None:
        return Supervisor(config, slots, sock, metrics_sock=metrics_sock).run()
    # Only now, with PROMETHEUS_MULTIPROC_DIR set (make_metrics_dir).
    from snowflake_tracker.web.metrics import NodeMetrics

    node_metrics = NodeMetrics(len(specs), multiprocess_dir=metrics_dir)
    for spec in specs:
        node_metrics.watch_slot(spec.slot, spec.worker_id)

    def on_death(pid: int) -> None:
        # Called while the reaped process is still the slot's, before the slot is refilled.
        for slot in slots:
            if slot.pid == pid:
                node_metrics.worker_died(slot.spec.slot)

    return Supervisor(
        config,
        slots,
        sock,
        on_death=on_death,
        on_respawn=lambda spec: node_metrics.worker_restarted(spec.slot, spec.worker_id),
        metrics_sock=metrics_sock,
    ).run()
