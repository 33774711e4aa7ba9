"""The keyed permutation: a bijection at every width, and neighbours that stop looking alike."""

from __future__ import annotations

import hashlib
import itertools
import random
import re

import pytest

from snowflake_tracker.ids.layout import ID_BITS, MAX_ID, compose
from snowflake_tracker.ids.permute import (
    DEFAULT_ROUNDS,
    MIN_KEY_BYTES,
    FeistelPermutation,
    fingerprint,
)

KEY = b"correct horse battery staple!!"
OTHER_KEY = b"an entirely different secret..."

BODY_SYMBOLS = 13
SYMBOL_BITS = 5


@pytest.fixture(scope="module")
def permutation() -> FeistelPermutation:
    return FeistelPermutation(KEY)


def assert_is_bijection(permutation: FeistelPermutation) -> None:
    """Every value of the width maps to a distinct value of the width, and back."""
    size = 1 << permutation.bits
    images = [permutation.encrypt(value) for value in range(size)]
    assert sorted(images) == list(range(size))
    assert [permutation.decrypt(image) for image in images] == list(range(size))


@pytest.mark.parametrize("bits", range(2, 17))
def test_is_a_bijection_at_every_small_width(bits: int) -> None:
    """At every width from 2 to 16 bits, odd and even, the permutation is a bijection."""
    assert_is_bijection(FeistelPermutation(KEY, bits=bits))


@pytest.mark.parametrize("rounds", [4, 5, 7, 9])
def test_is_a_bijection_for_any_round_count(rounds: int) -> None:
    """Odd round counts, which leave the halves' widths swapped, still give a bijection."""
    assert_is_bijection(FeistelPermutation(KEY, bits=15, rounds=rounds))


def test_round_trips_the_extremes(permutation: FeistelPermutation) -> None:
    """The smallest and largest IDs, and the powers of two between, survive a round trip."""
    values = [0, 1, MAX_ID - 1, MAX_ID, *(1 << shift for shift in range(ID_BITS))]
    for value in values:
        image = permutation.encrypt(value)
        assert 0 <= image <= MAX_ID
        assert permutation.decrypt(image) == value


def assert_round_trips(permutation: FeistelPermutation, count: int, seed: int) -> None:
    """Random 63-bit values come back from encrypt and decrypt unchanged, and stay in range."""
    rng = random.Random(seed)
    for _ in range(count):
        value = rng.getrandbits(ID_BITS)
        image = permutation.encrypt(value)
        assert image >> ID_BITS == 0
        assert permutation.decrypt(image) == value, value


def test_round_trips_random_ids(permutation: FeistelPermutation) -> None:
    """200,000 random 63-bit IDs decrypt back to themselves."""
    assert_round_trips(permutation, 200_000, seed=1)


@pytest.mark.slow
def test_round_trips_a_million_random_ids(permutation: FeistelPermutation) -> None:
    """A further 1,000,000 random 63-bit IDs decrypt back to themselves."""
    assert_round_trips(permutation, 1_000_000, seed=2)


def leading_equal_symbols(a: int, b: int) -> int:
    """How many leading base32 symbols two 65-bit tracking-number bodies share."""
    for index in range(BODY_SYMBOLS):
        shift = SYMBOL_BITS * (BODY_SYMBOLS - 1 - index)
        if (a >> shift) & 31 != (b >> shift) & 31:
            return index
    return BODY_SYMBOLS


def mean_shared_prefix(values: list[int], key_version: int) -> float:
    """The mean count of leading symbols shared by the bodies of neighbouring values."""
    bodies = [(key_version << ID_BITS) | value for value in values]
    shared = [leading_equal_symbols(a, b) for a, b in itertools.pairwise(bodies)]
    return sum(shared) / len(shared)


START_MS = 20_000_000_000  # mid-2025
WORKER = 517

# A burst takes consecutive sequence numbers within a millisecond; a trickle takes one ID a
# millisecond. Plain numbers share about 12 and about 8 leading symbols respectively.
STREAMS = {
    "burst": ([compose(START_MS, WORKER, 0) + i for i in range(10_000)], 11.5),
    "trickle": ([compose(START_MS + i, WORKER, 0) for i in range(10_000)], 7.5),
}


@pytest.mark.parametrize("stream", STREAMS)
def test_neighbours_share_no_prefix_under_a_key(
    permutation: FeistelPermutation, stream: str
) -> None:
    """Neighbouring IDs share most leading symbols in plain numbers and almost none when keyed."""
    ids, plain_floor = STREAMS[stream]
    assert mean_shared_prefix(ids, key_version=0) > plain_floor
    # With random 63-bit values behind a fixed version, the first symbol (2 version bits and
    # 3 random ones) matches 1 time in 8, the rest 1 in 32: a mean of about 0.13.
    keyed = [permutation.encrypt(snowflake_id) for snowflake_id in ids]
    assert mean_shared_prefix(keyed, key_version=1) < 0.2


def test_keeps_numbers_already_printed() -> None:
    """A fixed key gives fixed values, so numbers printed by an earlier release still decode."""
    wide = FeistelPermutation(KEY)
    assert [wide.encrypt(value) for value in (0, 1, 2, MAX_ID)] == [
        0x2274E7EEC6B134A0,
        0x7F406AFEB191BF9B,
        0x4078DBB609CCFEB4,
        0x5E38A589C753FC7A,
    ]
    narrow = FeistelPermutation(KEY, bits=16)
    assert [narrow.encrypt(value) for value in (0, 1, 2, 0xFFFF)] == [8861, 57871, 49378, 29796]
    assert fingerprint(KEY) == "03dc8020ab34"


def test_different_keys_give_unrelated_permutations() -> None:
    """Two keys agree on about as few points as two random permutations would."""
    one = FeistelPermutation(KEY, bits=16)
    other = FeistelPermutation(OTHER_KEY, bits=16)
    agreements = sum(one.encrypt(v) == other.encrypt(v) for v in range(1 << 16))
    assert agreements < 10  # one expected
    wide_one, wide_other = FeistelPermutation(KEY), FeistelPermutation(OTHER_KEY)
    assert all(wide_one.encrypt(v) != wide_other.encrypt(v) for v in range(1000))


def test_round_counts_give_unrelated_permutations() -> None:
    """The same key with another round count is another permutation, not a prefix of it."""
    eight = FeistelPermutation(KEY, rounds=DEFAULT_ROUNDS)
    ten = FeistelPermutation(KEY, rounds=DEFAULT_ROUNDS + 2)
    assert all(eight.encrypt(v) != ten.encrypt(v) for v in range(1000))


def test_fingerprint_is_short_stable_and_distinct() -> None:
    """The fingerprint is 12 hex digits, the same every time, and different for each key."""
    assert fingerprint(KEY) == fingerprint(KEY) == FeistelPermutation(KEY).fingerprint
    assert re.fullmatch("[0-9a-f]{12}", fingerprint(KEY))
    keys = [KEY + str(n).encode() for n in range(1000)]
    assert len({fingerprint(key) for key in keys}) == len(keys)


def test_fingerprint_reveals_no_part_of_the_key() -> None:
    """The fingerprint is no prefix of the key, in text or hex, nor its plain hash."""
    key = b"0123456789abcdef0123456789abcdef"
    shown = fingerprint(key)
    assert not key.startswith(shown.encode())
    assert shown not in key.decode()
    assert not key.hex().startswith(shown)
    assert shown not in hashlib.blake2b(key).hexdigest()
    assert shown != hashlib.blake2b(key, digest_size=6).hexdigest()


def test_repr_shows_no_key() -> None:
    """A permutation's repr names its width, rounds and fingerprint, never the key."""
    text = repr(FeistelPermutation(KEY))
    assert KEY.decode() not in text
    assert fingerprint(KEY) in text


@pytest.mark.parametrize("value", [-1, 1 << ID_BITS])
def test_refuses_values_outside_the_width(permutation: FeistelPermutation, value: int) -> None:
    """Values outside the width are refused both ways, rather than silently truncated."""
    with pytest.raises(ValueError, match="outside"):
        permutation.encrypt(value)
    with pytest.raises(ValueError, match="outside"):
        permutation.decrypt(value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": KEY[: MIN_KEY_BYTES - 1]}, "at least 16 bytes"),
        ({"key": KEY, "bits": 1}, "bits must be within"),
        ({"key": KEY, "rounds": 3}, "rounds must be at least 4"),
    ],
)
def test_refuses_weak_parameters(kwargs: dict[str, object], message: str) -> None:
    """Short keys, one-bit widths and fewer than four rounds are refused."""
    with pytest.raises(ValueError, match=message):
        FeistelPermutation(**kwargs)  # type: ignore[arg-type]


def test_refuses_a_text_key() -> None:
    """A key given as text is refused: which encoding it meant is not ours to guess."""
    with pytest.raises(TypeError, match="bytes"):
        FeistelPermutation(KEY.decode())  # type: ignore[arg-type]
