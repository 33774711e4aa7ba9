"""Worker ID sources and refusals: every source in order, and no guessed or overlapping IDs."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snowflake_tracker.ids.layout import MAX_WORKER_ID, WORKER_BITS, WORKER_COUNT
from snowflake_tracker.worker_id import (
    DEFAULT_NODE_BITS,
    MAX_NODE_BITS,
    NodeIdentity,
    WorkerIdError,
    parse_int_setting,
    plan_worker_ids,
    resolve_node_id,
)

K8S = {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}
DEPLOYMENT_POD = "web-7d9f8b6c5-x2k4z"

# Values a loose int() would take, or that are not numbers at all.
NOT_PLAIN_DECIMALS = [
    "abc",
    "+3",
    " 3",
    "3 ",
    "3\n",
    "\t3",
    "03",
    "007",
    "3.0",
    "3e0",
    "0x3",
    "1_0",
    "\u0663",
    "-",
    "--1",
    "-0",
    " ",
]


def resolve(
    env: dict[str, str] | None = None,
    hostname: str = "laptop",
    explicit: int | None = None,
    node_bits: int = DEFAULT_NODE_BITS,
) -> NodeIdentity:
    return resolve_node_id(explicit=explicit, env=env or {}, hostname=hostname, node_bits=node_bits)


# Sources, in order.


def test_explicit_node_id_wins_over_every_other_source() -> None:
    """An explicit node ID is used even when POD_INDEX and a StatefulSet host name disagree."""
    identity = resolve({**K8S, "POD_INDEX": "5"}, "tracker-9", explicit=3)
    assert (identity.node_id, identity.source) == (3, "--node-id")


def test_pod_index_wins_over_the_host_name() -> None:
    """POD_INDEX is preferred to the host name's ordinal."""
    identity = resolve({**K8S, "POD_INDEX": "5"}, "tracker-9")
    assert (identity.node_id, identity.source) == (5, "POD_INDEX")


def test_pod_index_counts_outside_kubernetes_too() -> None:
    """POD_INDEX is an explicit statement of the node, so it is used without Kubernetes."""
    assert resolve({"POD_INDEX": "12"}).node_id == 12


def test_statefulset_host_name_ordinal_in_kubernetes() -> None:
    """In Kubernetes a host name '<set>-<N>' gives node N, and the source names the host."""
    identity = resolve(K8S, "tracker-3")
    assert (identity.node_id, identity.source) == (3, "host name 'tracker-3'")


@pytest.mark.parametrize(
    ("hostname", "node_id"),
    [
        ("tracker-0", 0),
        ("snowflake-tracker-127", 127),
        ("tracker-3.tracker.parcels.svc.cluster.local", 3),
    ],
)
def test_host_name_ordinal_forms(hostname: str, node_id: int) -> None:
    """Ordinal 0, dashed set names and a fully qualified name all give the trailing ordinal."""
    assert resolve(K8S, hostname).node_id == node_id


def test_empty_pod_index_falls_through_to_the_host_name() -> None:
    """A declared but empty POD_INDEX is no source, so the StatefulSet ordinal is used."""
    assert resolve({**K8S, "POD_INDEX": ""}, "tracker-2").node_id == 2


def test_empty_pod_index_in_a_deployment_is_still_refused() -> None:
    """An empty POD_INDEX never becomes node 0 in Kubernetes."""
    with pytest.raises(WorkerIdError, match="StatefulSet"):
        resolve({**K8S, "POD_INDEX": ""}, DEPLOYMENT_POD)


def test_empty_pod_index_outside_kubernetes_is_refused() -> None:
    """A declared but empty POD_INDEX says replicas are intended, so it never means node 0."""
    with pytest.raises(WorkerIdError, match=r"^POD_INDEX is set but empty"):
        resolve({"POD_INDEX": ""}, "tracker-5")


def test_outside_kubernetes_without_sources_is_node_zero() -> None:
    """With nothing suggesting replicas, the node is 0 and the source says so."""
    identity = resolve({}, "laptop")
    assert (identity.node_id, identity.source) == (0, "default (single node)")


def test_outside_kubernetes_the_host_name_is_ignored() -> None:
    """A machine named like a StatefulSet pod is not taken for replica 5 outside Kubernetes."""
    assert resolve({}, "tracker-5").node_id == 0


# Refusals in Kubernetes: never a fallback to 0 or a random ID.


@pytest.mark.parametrize(
    "hostname", [DEPLOYMENT_POD, "tracker", "tracker-", "tracker-007", "tracker-03", "7"]
)
def test_kubernetes_without_a_node_source_is_refused(hostname: str) -> None:
    """In Kubernetes with no node ID, no POD_INDEX and no clean ordinal, start-up is refused."""
    with pytest.raises(WorkerIdError) as caught:
        resolve(K8S, hostname)
    message = str(caught.value)
    for setting in ("--node-id", "SNOWFLAKE_TRACKER_NODE_ID", "POD_INDEX", "StatefulSet"):
        assert setting in message
    assert "apps.kubernetes.io/pod-index" in message


def test_all_digit_deployment_suffix_is_refused() -> None:
    """A Deployment pod whose random suffix is all digits is refused, not taken as a node."""
    with pytest.raises(WorkerIdError, match="node ID 24567"):
        resolve(K8S, "web-7d9f8b6c5-24567")


def test_overlong_host_name_is_echoed_only_as_a_prefix() -> None:
    """A refusal repeats only a short prefix of a long host name."""
    with pytest.raises(WorkerIdError) as caught:
        resolve(K8S, "x" * 200)
    assert "x" * 30 not in str(caught.value)


# Strict parsing.


@pytest.mark.parametrize("value", NOT_PLAIN_DECIMALS)
def test_pod_index_junk_is_refused_naming_the_setting(value: str) -> None:
    """A POD_INDEX that is not a plain decimal is refused with a sentence naming POD_INDEX."""
    with pytest.raises(WorkerIdError, match=r"^POD_INDEX must be a whole number in plain digits"):
        resolve({"POD_INDEX": value})


def test_negative_pod_index_is_refused_with_the_budget() -> None:
    """A negative POD_INDEX is refused, saying which node IDs are allowed."""
    with pytest.raises(WorkerIdError, match=r"^POD_INDEX gives node ID -1.*from 0 to 127"):
        resolve({"POD_INDEX": "-1"})


@pytest.mark.parametrize("value", NOT_PLAIN_DECIMALS)
def test_parse_int_setting_refuses_what_is_not_a_plain_decimal(value: str) -> None:
    """The shared parser refuses signs, padding, leading zeros and foreign digits."""
    with pytest.raises(WorkerIdError, match=r"^SOME_SETTING must be"):
        parse_int_setting("SOME_SETTING", value, minimum=-100, maximum=100)


@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_parse_int_setting_round_trips_every_integer_in_range(number: int) -> None:
    """Any integer's own decimal form parses back to it when it is in range."""
    assert parse_int_setting("N", str(number), minimum=-(10**6), maximum=10**6) == number


@given(st.text(max_size=8))
def test_parse_int_setting_accepts_only_canonical_decimals(value: str) -> None:
    """Whatever text is given, it is accepted only if it is the canonical form of its number."""
    try:
        number = parse_int_setting("N", value, minimum=-(10**9), maximum=10**9)
    except WorkerIdError:
        return
    assert str(number) == value


def test_parse_int_setting_refuses_out_of_range_with_the_range() -> None:
    """An in-syntax number outside the range is refused, naming the setting and the range."""
    with pytest.raises(WorkerIdError, match=r"^PORT must be from 1 to 65535, not 65536\.$"):
        parse_int_setting("PORT", "65536", minimum=1, maximum=65535)


def test_parse_int_setting_refuses_huge_numbers_without_echoing_them() -> None:
    """A very long digit string is refused, and the message repeats only a prefix of it."""
    with pytest.raises(WorkerIdError) as caught:
        parse_int_setting("N", "9" * 5000, minimum=0, maximum=10)
    assert "9" * 30 not in str(caught.value)


# Budgets.


@pytest.mark.parametrize(
    ("env", "hostname", "explicit", "source"),
    [
        ({}, "laptop", 128, "--node-id"),
        ({}, "laptop", -1, "--node-id"),
        ({"POD_INDEX": "128"}, "laptop", None, "POD_INDEX"),
        (K8S, "tracker-128", None, "host name 'tracker-128'"),
    ],
)
def test_node_id_beyond_the_budget_is_refused(
    env: dict[str, str], hostname: str, explicit: int | None, source: str
) -> None:
    """A node ID outside 0..2**node_bits - 1 is refused, naming its source and the budget."""
    with pytest.raises(WorkerIdError) as caught:
        resolve(env, hostname, explicit)
    message = str(caught.value)
    assert message.lower().startswith(source.lower())
    assert "from 0 to 127 (128 nodes of up to 8 processes)" in message
    assert "--node-bits" in message


def test_smaller_node_bits_shrink_the_budget() -> None:
    """With 2 node bits a StatefulSet ordinal of 4 no longer fits."""
    assert resolve(K8S, "tracker-3", node_bits=2).node_id == 3
    with pytest.raises(WorkerIdError, match=r"from 0 to 3 \(4 nodes of up to 256 processes\)"):
        resolve(K8S, "tracker-4", node_bits=2)


@pytest.mark.parametrize("node_bits", [-1, MAX_NODE_BITS + 1, 64])
def test_node_bits_outside_the_worker_bits_are_refused(node_bits: int) -> None:
    """The node bits must be a split of the 10 worker bits."""
    with pytest.raises(WorkerIdError, match=r"^--node-bits \(SNOWFLAKE_TRACKER_NODE_BITS\)"):
        resolve(node_bits=node_bits)


def test_zero_node_bits_is_one_node_of_1024_processes() -> None:
    """With 0 node bits only node 0 exists and its slots are every worker ID."""
    identity = resolve(node_bits=0)
    assert identity.slot_bits == WORKER_BITS
    assert identity.worker_ids(WORKER_COUNT) == list(range(WORKER_COUNT))
    with pytest.raises(WorkerIdError, match="from 0 to 0"):
        resolve({"POD_INDEX": "1"}, node_bits=0)
    with pytest.raises(WorkerIdError, match="at most 1024 processes"):
        identity.worker_ids(WORKER_COUNT + 1)


def test_ten_node_bits_is_1024_nodes_of_one_process() -> None:
    """With 10 node bits the node ID is the worker ID and a node runs one process."""
    identity = resolve({"POD_INDEX": str(MAX_WORKER_ID)}, node_bits=MAX_NODE_BITS)
    assert identity.slot_bits == 0
    assert identity.worker_ids(1) == [MAX_WORKER_ID]
    with pytest.raises(WorkerIdError, match="at most 1 processes"):
        identity.worker_ids(2)


# Planning the worker IDs of a node.


def test_plan_gives_each_slot_its_worker_id() -> None:
    """A node's worker IDs are (node << slot_bits) | slot for slots 0..processes-1."""
    identity, ids = plan_worker_ids(
        processes=4, worker_id=None, node_id=None, env={"POD_INDEX": "5"}, hostname="x"
    )
    assert identity is not None
    assert identity.node_id == 5
    assert ids == [40, 41, 42, 43]


def test_explicit_worker_id_is_a_one_process_node() -> None:
    """--worker-id alone gives that one worker ID and no node identity."""
    assert plan_worker_ids(
        processes=1, worker_id=MAX_WORKER_ID, node_id=None, env={}, hostname="x"
    ) == (None, [MAX_WORKER_ID])


@pytest.mark.parametrize("worker_id", [-1, WORKER_COUNT])
def test_explicit_worker_id_outside_10_bits_is_refused(worker_id: int) -> None:
    """An explicit worker ID must fit the worker bits."""
    with pytest.raises(WorkerIdError, match=r"^--worker-id .* must be from 0 to 1023"):
        plan_worker_ids(processes=1, worker_id=worker_id, node_id=None, env={}, hostname="x")


@pytest.mark.parametrize(
    ("processes", "node_id", "env", "names"),
    [
        (2, None, {}, "--processes"),
        (1, 0, {}, "--node-id"),
        (1, None, {"POD_INDEX": "3"}, "POD_INDEX"),
        (1, None, {"POD_INDEX": ""}, "POD_INDEX"),
    ],
)
def test_explicit_worker_id_with_other_sources_is_conflicting(
    processes: int, node_id: int | None, env: dict[str, str], names: str
) -> None:
    """--worker-id with several processes, a node ID or a pod index is refused as a conflict."""
    with pytest.raises(WorkerIdError, match=r"^Conflicting settings") as caught:
        plan_worker_ids(processes=processes, worker_id=7, node_id=node_id, env=env, hostname="x")
    assert names in str(caught.value)


def test_more_processes_than_slots_is_refused_with_the_maximum() -> None:
    """With 7 node bits a node may run 8 processes, and a 9th is refused naming the maximum."""
    _, ids = plan_worker_ids(processes=8, worker_id=None, node_id=1, env={}, hostname="x")
    assert ids == list(range(8, 16))
    with pytest.raises(WorkerIdError, match=r"^--processes .* at most 8 processes"):
        plan_worker_ids(processes=9, worker_id=None, node_id=1, env={}, hostname="x")


@pytest.mark.parametrize("processes", [0, -1])
def test_fewer_than_one_process_is_refused(processes: int) -> None:
    """A node runs at least one process."""
    with pytest.raises(WorkerIdError, match=r"^--processes .* at least 1"):
        plan_worker_ids(processes=processes, worker_id=None, node_id=0, env={}, hostname="x")


def test_plan_refuses_before_returning_anything_in_a_deployment() -> None:
    """Planning in a Kubernetes Deployment with no node source refuses, never plans node 0."""
    with pytest.raises(WorkerIdError, match="StatefulSet"):
        plan_worker_ids(processes=1, worker_id=None, node_id=None, env=K8S, hostname=DEPLOYMENT_POD)


def test_slot_outside_the_node_is_refused() -> None:
    """A slot beyond the node's slot bits would reach into the next node, so it is refused."""
    identity = NodeIdentity(2, "--node-id")
    assert identity.worker_id(7) == 23
    with pytest.raises(WorkerIdError, match="Slot 8"):
        identity.worker_id(8)


# Uniqueness of the split.


def test_default_split_gives_1024_distinct_worker_ids() -> None:
    """Nodes 0..127 with slots 0..7 give every worker ID exactly once."""
    ids = [
        NodeIdentity(node, "--node-id").worker_id(slot)
        for node in range(1 << DEFAULT_NODE_BITS)
        for slot in range(1 << (WORKER_BITS - DEFAULT_NODE_BITS))
    ]
    assert sorted(ids) == list(range(WORKER_COUNT))


@pytest.mark.parametrize("node_bits", range(MAX_NODE_BITS + 1))
def test_every_split_is_a_bijection_onto_the_worker_ids(node_bits: int) -> None:
    """For every node_bits, (node, slot) pairs map one-to-one onto 0..1023."""
    slot_bits = WORKER_BITS - node_bits
    ids = {
        NodeIdentity(node, "--node-id", node_bits).worker_id(slot)
        for node in range(1 << node_bits)
        for slot in range(1 << slot_bits)
    }
    assert ids == set(range(WORKER_COUNT))


@given(
    node_bits=st.integers(0, MAX_NODE_BITS),
    data=st.data(),
)
def test_neighbours_never_overlap_whatever_their_process_counts(
    node_bits: int, data: st.DataObject
) -> None:
    """Two different nodes share no worker ID, whatever number of processes each runs."""
    node_count, slot_count = 1 << node_bits, 1 << (WORKER_BITS - node_bits)
    a, b = data.draw(st.integers(0, node_count - 1)), data.draw(st.integers(0, node_count - 1))
    ids_a = NodeIdentity(a, "a", node_bits).worker_ids(data.draw(st.integers(1, slot_count)))
    ids_b = NodeIdentity(b, "b", node_bits).worker_ids(data.draw(st.integers(1, slot_count)))
    if a != b:
        assert not set(ids_a) & set(ids_b)
    # Each node stays inside its own block, so no process count can reach a neighbour's.
    assert all(a * slot_count <= i < (a + 1) * slot_count for i in ids_a)


def test_messages_are_sentences() -> None:
    """Every refusal ends as a sentence, so it reads cleanly in a start-up log."""
    cases: list[Callable[[], object]] = [
        lambda: resolve(K8S, DEPLOYMENT_POD),
        lambda: resolve({"POD_INDEX": "x"}),
        lambda: resolve({"POD_INDEX": ""}),
        lambda: resolve(explicit=999),
        lambda: resolve(K8S, "tracker-999"),
        lambda: plan_worker_ids(processes=2, worker_id=1, node_id=None, env={}, hostname="x"),
        lambda: plan_worker_ids(processes=99, worker_id=None, node_id=0, env={}, hostname="x"),
    ]
    for case in cases:
        with pytest.raises(WorkerIdError) as caught:
            case()
        assert re.fullmatch(r"[A-Z\-].*\.", str(caught.value), re.DOTALL)
