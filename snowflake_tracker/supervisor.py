"""The node supervisor: bind once, fork workers into fixed slots, reap, respawn, drain.

Why not Gunicorn: its workers have no stable index, and a reload overlaps old and new workers;
either would let two live processes share a worker ID (DESIGN §7). Here slot ``s`` always
runs worker ID ``f(node, s)``, and a slot is refilled only after its previous process has been
reaped, so two live processes never share an ID. The worker's own ``flock`` on the ID's lock
file backs this up across supervisors on one host.

Signals are blocked in the supervisor and taken synchronously with ``sigtimedwait``, so there
is no handler to race with ``waitpid``; each child unblocks them before it starts its loop.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from snowflake_tracker.config import Config
from snowflake_tracker.lease import LeaseError, LeaseHeldError, WorkerLease
from snowflake_tracker.logs import configure_logging
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
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.create_server(
        (config.host, config.port), family=family, backlog=LISTEN_BACKLOG, reuse_port=False
    )
    sock.setblocking(False)
    return sock


def check_worker_ids_free(config: Config, worker_ids: list[int]) -> None:
    """Refuse at once, before binding, when another live process holds one of our IDs."""
    for worker_id in worker_ids:
        lease = WorkerLease(config.state_dir, worker_id)
        lease.acquire()
        lease.release()


def spawn(config: Config, slot: Slot, sock: socket.socket, before_exec: Callable[[], None]) -> int:
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
        status = run_worker(config, slot.spec, sock)
    except LeaseHeldError as exc:
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
    ) -> None:
        self.config = config
        self.slots = slots
        self.sock = sock
        self.before_exec = before_exec
        self.on_death = on_death
        self.fatal = False

    def _start(self, slot: Slot) -> None:
        slot.pid = spawn(self.config, slot, self.sock, self.before_exec)
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
                    self._start(slot)
            due = [s.respawn_at - now for s in self.slots if s.pid == 0]
            timeout = max(0.01, min(due)) if due else 1.0
            info = signal.sigtimedwait(HANDLED_SIGNALS, timeout)
            if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                stop_signal = info.si_signo
            self._reap(stopping=False)
        return self.stop(stop_signal)

    def stop(self, signum: int) -> int:
        """Tell every worker to drain, wait for them within the grace period, then exit."""
        reason = signal.Signals(signum).name if signum else "a worker could not start"
        log.info("node stopping", extra={"event": "node_stop", "reason": reason})
        for slot in self.slots:
            if slot.pid:
                os.kill(slot.pid, signal.SIGTERM)
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
        self.sock.close()
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
    except (WorkerIdError, LeaseError) as exc:
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
    host, port = sock.getsockname()[:2]
    log.info(
        "node listening",
        extra={
            "event": "node_start",
            "host": host,
            "port": port,
            "node_id": None if node is None else node.node_id,
            "node_id_source": "--worker-id" if node is None else node.source,
            "worker_ids": worker_ids,
            "state_dir": str(config.state_dir),
        },
    )
    specs = [
        WorkerSpec(slot, worker_id, node, tuple(worker_ids))
        for slot, worker_id in enumerate(worker_ids)
    ]
    return Supervisor(config, [Slot(spec) for spec in specs], sock).run()
