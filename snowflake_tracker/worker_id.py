"""Where a process's worker ID comes from, decided once at start-up.

The 10 worker bits of a Snowflake ID are split, deployment-wide, into node bits and slot bits::

     9                    3 2        0
    +----------------------+----------+
    | node ID (node_bits)  | slot     |     worker ID = (node ID << slot_bits) | slot
    +----------------------+----------+
       default 7 bits: 128 nodes, 3 slot bits: up to 8 processes per node

Each node (replica) owns the block of worker IDs ``[node << slot_bits, (node + 1) << slot_bits)``
whatever number of processes it runs. The obvious alternative, ``node * processes + slot``,
makes a node's block depend on its own process count: node 1 with 4 processes holds 4..7, and if
node 0 is restarted with 8 processes it takes 0..7 and mints node 1's IDs. With a fixed split a
node can run fewer processes than its slots, never more, and never reaches into a neighbour.

The split itself must be the same on every node. Changing it moves every block, so it is
changed only with the whole deployment stopped: during a rolling change a node on the old split
and a node on the new one can hold the same worker ID on different hosts, where no lock sees it.

Node ID sources, first match wins:

1. an explicit node ID (``--node-id`` / ``SNOWFLAKE_TRACKER_NODE_ID``, resolved by the caller);
2. ``POD_INDEX``: the StatefulSet pod-index label (``apps.kubernetes.io/pod-index``) passed in
   through the downward API;
3. in Kubernetes (``KUBERNETES_SERVICE_HOST`` is set): the ``-N`` ordinal that ends a
   StatefulSet pod's host name, ``<set>-<N>``;
4. outside Kubernetes, with no other source and no ``POD_INDEX`` declared (even empty): node 0,
   the single-node default.

In Kubernetes with none of the first three the service refuses to start: a Deployment's pods
all look alike, and defaulting them to one node ID (or a random one) would duplicate IDs.
Outside Kubernetes the host name is never read: machines are routinely named ``build-3`` or
``ip-10-0-0-5``, and such a name says nothing about which replica this is.

Everything here is pure: the environment arrives as a Mapping and the host name as a string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from snowflake_tracker.ids.layout import MAX_WORKER_ID, WORKER_BITS, check_worker_id

DEFAULT_NODE_BITS = 7
MIN_NODE_BITS = 0
MAX_NODE_BITS = WORKER_BITS

POD_INDEX_ENV = "POD_INDEX"
KUBERNETES_ENV = "KUBERNETES_SERVICE_HOST"

# How the settings are named in messages: the flag and its environment twin (DESIGN §7).
NODE_ID_SETTING = "--node-id (SNOWFLAKE_TRACKER_NODE_ID)"
WORKER_ID_SETTING = "--worker-id (SNOWFLAKE_TRACKER_WORKER_ID)"
PROCESSES_SETTING = "--processes (SNOWFLAKE_TRACKER_PROCESSES)"
NODE_BITS_SETTING = "--node-bits (SNOWFLAKE_TRACKER_NODE_BITS)"

# A plain decimal: ASCII digits, no sign, no leading zeros, no padding, no '_'. int() alone would
# take ' 7', '+7', '0_7' and digits of other scripts, and a node ID read that loosely is a
# guess. Negatives are matched so that they get the range message, not a syntax one.
_DECIMAL = re.compile(r"0|-?[1-9][0-9]*")
# Longer than any setting here can be; stops a huge string before int() spends time on it.
_MAX_DIGITS = 19
# How much of a rejected value a message repeats.
_ECHO_CHARS = 24

# A StatefulSet pod is named '<set>-<ordinal>' and its host name is the pod name. The ordinal is
# written without leading zeros, so 'tracker-007' is not ordinal 7 of anything. Pods of a
# Deployment end in a 5-character suffix from an alphabet without 0, 1 and 3, which can be all
# digits ('web-7d9f8b6c5-24567'); such a suffix is at least 22222, beyond every node budget, so
# it is refused rather than taken for an ordinal.
_ORDINAL = re.compile(rf".+-(?P<ordinal>0|[1-9][0-9]{{0,{_MAX_DIGITS - 1}}})")


class WorkerIdError(ValueError):
    """No safe worker ID can be derived; the message is a sentence naming the setting."""


@dataclass(frozen=True)
class NodeIdentity:
    """A node's ID, where it came from, and the deployment-wide node/slot split."""

    node_id: int
    source: str
    node_bits: int = DEFAULT_NODE_BITS

    def __post_init__(self) -> None:
        check_node_bits(self.node_bits)
        _check_node_budget(self.node_id, self.source, self.node_bits)

    @property
    def slot_bits(self) -> int:
        """Bits of the worker ID left for the process's slot on this node."""
        return WORKER_BITS - self.node_bits

    @property
    def max_processes(self) -> int:
        """How many processes (slots) one node may run under this split."""
        return 1 << self.slot_bits

    def worker_id(self, slot: int) -> int:
        """The worker ID of ``slot`` on this node."""
        if isinstance(slot, bool) or not isinstance(slot, int):
            raise TypeError(f"slot must be an int, not {type(slot).__name__}")
        if not 0 <= slot < self.max_processes:
            raise WorkerIdError(
                f"Slot {slot} is outside 0..{self.max_processes - 1}, the slots a node has "
                f"with {self.node_bits} node bits."
            )
        return check_worker_id((self.node_id << self.slot_bits) | slot)

    def worker_ids(self, processes: int) -> list[int]:
        """The worker IDs of slots 0 to ``processes - 1``, refusing more processes than slots."""
        check_processes(processes, self.node_bits)
        return [self.worker_id(slot) for slot in range(processes)]


def parse_int_setting(name: str, value: str, *, minimum: int, maximum: int) -> int:
    """Parse ``value`` as a plain decimal in ``minimum..maximum``, or say what ``name`` needs."""
    number = _parse_decimal(name, value)
    if not minimum <= number <= maximum:
        raise WorkerIdError(f"{name} must be from {minimum} to {maximum}, not {number}.")
    return number


def check_node_bits(node_bits: int) -> int:
    """Return ``node_bits`` if it is a valid node/slot split of the worker bits."""
    if (
        isinstance(node_bits, bool)
        or not isinstance(node_bits, int)
        or not MIN_NODE_BITS <= node_bits <= MAX_NODE_BITS
    ):
        raise WorkerIdError(
            f"{NODE_BITS_SETTING} must be a whole number from {MIN_NODE_BITS} to "
            f"{MAX_NODE_BITS} (the worker ID has {WORKER_BITS} bits), not {node_bits!r}."
        )
    return node_bits


def check_processes(processes: int, node_bits: int) -> int:
    """Return ``processes`` if a node has that many slots under ``node_bits``."""
    check_node_bits(node_bits)
    max_processes = 1 << (WORKER_BITS - node_bits)
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise WorkerIdError(f"{PROCESSES_SETTING} must be at least 1, not {processes!r}.")
    if processes > max_processes:
        raise WorkerIdError(
            f"{PROCESSES_SETTING} is {processes}, but with {node_bits} node bits a node has "
            f"{max_processes} slots, so at most {max_processes} processes; run fewer "
            f"processes, or lower {NODE_BITS_SETTING} for the whole deployment with every node "
            f"stopped."
        )
    return processes


def is_kubernetes(env: Mapping[str, str]) -> bool:
    """Whether the environment says this process runs in a Kubernetes pod."""
    # The kubelet sets this in every container, even with enableServiceLinks: false, because it
    # is how a pod finds the API server.
    return KUBERNETES_ENV in env


def resolve_node_id(
    *,
    explicit: int | None,
    env: Mapping[str, str],
    hostname: str,
    node_bits: int = DEFAULT_NODE_BITS,
) -> NodeIdentity:
    """Decide this node's ID from the first source that gives one, or refuse."""
    check_node_bits(node_bits)
    if explicit is not None:
        if isinstance(explicit, bool) or not isinstance(explicit, int):
            raise TypeError(f"explicit node ID must be an int, not {type(explicit).__name__}")
        _check_node_budget(explicit, NODE_ID_SETTING, node_bits)
        return NodeIdentity(explicit, "--node-id", node_bits)

    # Declared but empty carries no index, so the host name may still give one; but it does say
    # that replicas are intended, so it never ends in the single-node default below.
    pod_index = env.get(POD_INDEX_ENV, "")
    if pod_index != "":
        node_id = _parse_decimal(POD_INDEX_ENV, pod_index)
        _check_node_budget(node_id, POD_INDEX_ENV, node_bits)
        return NodeIdentity(node_id, POD_INDEX_ENV, node_bits)

    if is_kubernetes(env):
        # A pod's host name is its pod name, but a caller may hand over a fully qualified one.
        pod_name = hostname.split(".", 1)[0]
        match = _ORDINAL.fullmatch(pod_name)
        if match is None:
            raise WorkerIdError(
                f"Running in Kubernetes, but no node ID is set and the host name "
                f"{_echo(hostname)} does not end in a StatefulSet ordinal '-N': set "
                f"{NODE_ID_SETTING} to a different number on each replica, or run as a "
                f"StatefulSet with {POD_INDEX_ENV} taken from the pod label "
                f"apps.kubernetes.io/pod-index through the downward API."
            )
        source = f"host name {_echo(pod_name)}"
        node_id = int(match["ordinal"])
        _check_node_budget(node_id, source, node_bits)
        return NodeIdentity(node_id, source, node_bits)

    if POD_INDEX_ENV in env:
        raise WorkerIdError(
            f"{POD_INDEX_ENV} is set but empty, which says this is one of several replicas "
            f"without saying which: give it the replica's index, set {NODE_ID_SETTING}, or "
            f"unset {POD_INDEX_ENV} for a single node."
        )
    return NodeIdentity(0, "default (single node)", node_bits)


def plan_worker_ids(
    *,
    processes: int,
    worker_id: int | None,
    node_id: int | None,
    env: Mapping[str, str],
    hostname: str,
    node_bits: int = DEFAULT_NODE_BITS,
) -> tuple[NodeIdentity | None, list[int]]:
    """The worker ID of each slot ``0..processes - 1``, after every refusal check.

    With ``worker_id`` the node is a single process with that ID and no node identity.
    """
    check_node_bits(node_bits)
    if worker_id is not None:
        if isinstance(worker_id, bool) or not isinstance(worker_id, int):
            raise TypeError(f"worker ID must be an int, not {type(worker_id).__name__}")
        _check_single_worker(processes, node_id, env)
        if not 0 <= worker_id <= MAX_WORKER_ID:
            raise WorkerIdError(
                f"{WORKER_ID_SETTING} must be from 0 to {MAX_WORKER_ID} "
                f"({WORKER_BITS} bits), not {worker_id}."
            )
        return None, [worker_id]

    check_processes(processes, node_bits)
    identity = resolve_node_id(explicit=node_id, env=env, hostname=hostname, node_bits=node_bits)
    return identity, identity.worker_ids(processes)


def _check_single_worker(processes: int, node_id: int | None, env: Mapping[str, str]) -> None:
    """Refuse an explicit worker ID beside anything that says there are several workers."""
    if node_id is not None:
        raise WorkerIdError(
            f"Conflicting settings: {WORKER_ID_SETTING} names the whole worker ID, so "
            f"{NODE_ID_SETTING} cannot be given with it; set one or the other."
        )
    if processes != 1:
        raise WorkerIdError(
            f"Conflicting settings: {WORKER_ID_SETTING} is for a one-process node, but "
            f"{PROCESSES_SETTING} is {processes!r}; set --processes 1, or use "
            f"{NODE_ID_SETTING} and let each process take its slot."
        )
    # In a StatefulSet every replica shares one pod template, so a worker ID set there would be
    # the same on every replica, on different hosts where no lock can see the clash.
    if POD_INDEX_ENV in env:
        raise WorkerIdError(
            f"Conflicting settings: {WORKER_ID_SETTING} is given, but {POD_INDEX_ENV} says "
            f"this is one of several replicas, which would all share that worker ID; use "
            f"{POD_INDEX_ENV} or {NODE_ID_SETTING} alone."
        )


def _parse_decimal(name: str, value: str) -> int:
    if len(value) > _MAX_DIGITS or _DECIMAL.fullmatch(value) is None:
        raise WorkerIdError(
            f"{name} must be a whole number in plain digits (no sign, spaces or leading "
            f"zeros), not {_echo(value)}."
        )
    return int(value)


def _check_node_budget(node_id: int, source: str, node_bits: int) -> None:
    node_count = 1 << node_bits
    if not 0 <= node_id < node_count:
        slots = 1 << (WORKER_BITS - node_bits)
        subject = source[:1].upper() + source[1:]
        raise WorkerIdError(
            f"{subject} gives node ID {node_id}, but with {node_bits} node bits a node ID must "
            f"be from 0 to {node_count - 1} ({node_count} nodes of up to {slots} processes); "
            f"use a smaller node ID, or change {NODE_BITS_SETTING} for the whole deployment "
            f"with every node stopped."
        )


def _echo(value: str) -> str:
    """A short, quoted prefix of ``value``, safe to put in a message."""
    if len(value) > _ECHO_CHARS:
        return repr(value[:_ECHO_CHARS] + "...")
    return repr(value)
