"""A keyed permutation of the 63-bit ID space, so that neighbours do not look like neighbours.

Consecutive Snowflake IDs differ only in their last few bits; rendered as they are, anyone
holding one tracking number can read off the numbers of other parcels minted around it. With a
secret configured, an ID goes through :class:`FeistelPermutation` before it is rendered, and
consecutive IDs come out as unrelated 63-bit values (DESIGN §6).

**Why uniqueness survives.** ``encrypt`` is a bijection of ``[0, 2**bits)`` onto itself: each
Feistel round is invertible whatever its round function computes (the next paragraph shows the
inverse), and a composition of bijections is a bijection. Two distinct IDs therefore never
give the same value, and ``decrypt`` recovers the ID. The tests check this exhaustively at
small widths, with this very class.

**Construction: an alternating Feistel network on exactly ``bits`` bits.** The value is split
into a left part of ``bits // 2`` bits and a right part of the rest (31 and 32 bits for 63).
A round maps ``(L, R)`` to ``(R, L XOR F_i(R))``, with ``F_i(R)`` cut to the width of ``L``;
the two parts swap widths each round, as in NIST SP 800-38G's FF1. The inverse of a round is
``(L', R') -> (R' XOR F_i(L'), L')``. ``F_i`` is keyed BLAKE2b (RFC 7693's MAC mode) under
round key ``i``, over the input part's little-endian bytes.

The alternative is a balanced Feistel network on 64 bits with cycle walking: encrypt, and
while the result is 2**63 or more, encrypt that result again. The walk terminates because it
follows the cycle of the 64-bit permutation through the input, which is finite and contains the
input itself, an in-range value; and since half of the 64-bit space is in range, the number of
passes is geometric with mean 2 (more than ``k`` passes with probability 2**-k). That is twice
the cost on average, a running time that depends on the value, and a second code path to test.
The alternating network needs none of it: exactly ``rounds`` round functions per call, for any
width from 2 bits up.

**Rounds.** Four rounds of a balanced Feistel network with a pseudorandom round function
already give a strong pseudorandom permutation (Luby and Rackoff); extra rounds raise the
number of queries an attacker needs toward the size of the domain. Eight, the default, leave a
margin for the one-bit imbalance of the halves; fewer than four are refused.

**Keys.** The secret is never a BLAKE2b key itself: each round key is
``BLAKE2b(secret, person="sft-round-key", salt=(bits, rounds, i))``, so secrets of any length
work, and every round of every width and round count gets an unrelated key.
:func:`fingerprint` hashes the secret under another personalisation string, so it says nothing
about the round keys; it lets operators compare deployments without ever showing a secret.

**Speed.** The keyed BLAKE2b object of each round is built once; a call copies it, which is
faster than building one from the key each time. At 63 bits a call takes about 4 µs, nearly
all of it the eight hash calls. Hashing the round key as a message prefix (one compression
instead of two) would save about a quarter, but keyed mode is the construction RFC 7693
specifies as a MAC, and the saving is small beside the cost of a request.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Final

from snowflake_tracker.ids.layout import ID_BITS

DEFAULT_ROUNDS: Final = 8
MIN_ROUNDS: Final = 4
# Anyone holding a tracking number and the ID it decodes to can test guessed secrets offline,
# so a secret must be random and long enough: 16 random bytes are 128 bits, beyond any search.
MIN_KEY_BYTES: Final = 16
MIN_BITS: Final = 2
# A round function cannot produce more than BLAKE2b's longest digest.
MAX_BITS: Final = 2 * 8 * hashlib.blake2b.MAX_DIGEST_SIZE
FINGERPRINT_BYTES: Final = 6

_ROUND_KEY_PERSON: Final = b"sft-round-key"
_FINGERPRINT_PERSON: Final = b"sft-fingerprint"
_ROUND_KEY_BYTES: Final = 32
_ROUND_KEY_SALT: Final = struct.Struct("<HHH")


def fingerprint(key: bytes) -> str:
    """A short hex fingerprint of ``key``: equal keys match, and the key cannot be read back.

    48 bits of a one-way hash: replicas with different secrets practically never share a
    fingerprint. It hides a random secret; a guessable one is exposed anyway (see
    ``MIN_KEY_BYTES``), fingerprint or not.
    """
    return hashlib.blake2b(
        key, digest_size=FINGERPRINT_BYTES, person=_FINGERPRINT_PERSON
    ).hexdigest()


def _round_key(key: bytes, bits: int, rounds: int, index: int) -> bytes:
    """Round key ``index`` of the permutation of ``bits`` bits in ``rounds`` rounds."""
    salt = _ROUND_KEY_SALT.pack(bits, rounds, index)
    return hashlib.blake2b(
        key, digest_size=_ROUND_KEY_BYTES, person=_ROUND_KEY_PERSON, salt=salt
    ).digest()


class FeistelPermutation:
    """A keyed bijection of ``[0, 2**bits)``: ``encrypt`` scatters, ``decrypt`` restores."""

    __slots__ = (
        "_final_right_bits",
        "_final_right_mask",
        "_fingerprint",
        "_right_bits",
        "_right_mask",
        "_rounds",
        "bits",
        "rounds",
    )

    def __init__(self, key: bytes, *, bits: int = ID_BITS, rounds: int = DEFAULT_ROUNDS) -> None:
        if not isinstance(key, bytes):
            raise TypeError(f"key must be bytes, not {type(key).__name__}")
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"key must be at least {MIN_KEY_BYTES} bytes")
        if not MIN_BITS <= bits <= MAX_BITS:
            raise ValueError(f"bits must be within {MIN_BITS}..{MAX_BITS}, not {bits}")
        if rounds < MIN_ROUNDS:
            raise ValueError(f"rounds must be at least {MIN_ROUNDS}, not {rounds}")
        self.bits = bits
        self.rounds = rounds
        self._fingerprint = fingerprint(key)

        left_bits = bits // 2
        right_bits = bits - left_bits
        self._right_bits = right_bits
        self._right_mask = (1 << right_bits) - 1
        # Widths swap every round, so after an odd count the right part has the left's width.
        self._final_right_bits = right_bits if rounds % 2 == 0 else left_bits
        self._final_right_mask = (1 << self._final_right_bits) - 1

        # Per round: a copier of the keyed hash, the input part's byte count, and the mask of
        # the part it is XORed into (the output width).
        steps = []
        for index in range(rounds):
            in_bits, out_bits = (
                (right_bits, left_bits) if index % 2 == 0 else (left_bits, right_bits)
            )
            hasher = hashlib.blake2b(
                key=_round_key(key, bits, rounds, index), digest_size=(out_bits + 7) // 8
            )
            steps.append((hasher.copy, (in_bits + 7) // 8, (1 << out_bits) - 1))
        self._rounds = tuple(steps)

    @property
    def fingerprint(self) -> str:
        """The fingerprint of the key (see :func:`fingerprint`)."""
        return self._fingerprint

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(bits={self.bits}, rounds={self.rounds}, "
            f"fingerprint={self._fingerprint!r})"
        )

    def _out_of_range(self, value: int) -> ValueError:
        return ValueError(f"{value} is outside 0..2**{self.bits} - 1")

    def encrypt(self, value: int) -> int:
        """The image of ``value`` under the permutation; unique for every ``value``."""
        if value < 0 or value >> self.bits:
            raise self._out_of_range(value)
        from_bytes = int.from_bytes
        left = value >> self._right_bits
        right = value & self._right_mask
        for copy, in_bytes, out_mask in self._rounds:
            h = copy()
            h.update(right.to_bytes(in_bytes, "little"))
            left, right = right, left ^ (from_bytes(h.digest(), "little") & out_mask)
        return (left << self._final_right_bits) | right

    def decrypt(self, value: int) -> int:
        """The ``value`` that ``encrypt`` maps to the given one."""
        if value < 0 or value >> self.bits:
            raise self._out_of_range(value)
        from_bytes = int.from_bytes
        left = value >> self._final_right_bits
        right = value & self._final_right_mask
        for copy, in_bytes, out_mask in reversed(self._rounds):
            h = copy()
            h.update(left.to_bytes(in_bytes, "little"))
            left, right = right ^ (from_bytes(h.digest(), "little") & out_mask), left
        return (left << self._right_bits) | right
