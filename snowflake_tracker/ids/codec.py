"""Tracking numbers, format version 1: ``render()`` a Snowflake ID, ``parse()`` one back.

::

      0 1   2                       14  15
    +-----+---------------------------+---+
    | M Y | 0 7 1 V 7 M K P G 4 M 0 5 | G |
    +-----+---------------------------+---+
      |     |                           '- check symbol: Damm over GF(32) of the 15 values
      |     |                              before it
      |     '- body: 13 Crockford base32 symbols = 65 bits, big-endian:
      |          bits 64-63 the key version, bits 62-0 the Snowflake ID (see ``layout``)
      '- origin country (ISO 3166-1 alpha-2), so staff can read where a parcel started

Sixteen characters, always, ``[A-Z0-9]``. The first body symbol holds the two key-version bits
and the top three bits of the ID. Key version 0 carries the plain, time-ordered ID; versions 1
to 3 carry it after the keyed permutation of ``permute`` (this module does not care which).

**The check symbol.** The Damm algorithm over the quasigroup ``x * y = 2x XOR y`` in GF(32)
(field polynomial x^5 + x^2 + 1). The fold starts at 0 and takes ``interim = 2 * interim XOR v``
for each value ``v``; the check symbol is the one that brings the fold over all 16 values back
to 0. Because ``(c*x)*y == (c*y)*x`` only when ``x == y``, it catches every single substitution
and every swap of neighbouring values.

**Values of the prefix letters.** Body symbols take their Crockford value. Prefix letters take
their Crockford value too where they have one (A = 10 ... Z = 31), and the four letters
Crockford leaves out take ``O`` = 0, ``I`` = 1, ``L`` = 2, ``U`` = 3; digits never occur in the
prefix, so the mapping is one-to-one. The reason is the boundary: a reader who swaps the second
country letter with the first body symbol moves a letter into the body (or a digit into the
prefix, which is rejected outright). With this mapping the letter keeps its value on either
side (``O`` and ``I`` read as 0 and 1 in the body; ``L`` and ``U`` are never valid there), so
the swap is a true swap of values and the Damm property applies. Numbering the prefix letters
0 to 25 instead lets a few boundary swaps through.

**Speed.** ``2x`` is linear over GF(2), so the check symbol is the XOR of independent
contributions of each position: ``render`` adds up a few table entries per 10-bit chunk and
builds the text from precomputed two-symbol strings. ``render_range`` goes further: within a
block of 1,024 consecutive IDs (aligned to 1,024) only the last two body symbols and the check
change, so a block is one shared 13-character head plus a slice of a precomputed row of
1,024 three-character tails.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass

from snowflake_tracker.ids.layout import ID_BITS, MAX_ID

FORMAT_VERSION = 1

KEY_VERSION_BITS = 2
MAX_KEY_VERSION = (1 << KEY_VERSION_BITS) - 1

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
SYMBOL_BITS = 5
RADIX = 1 << SYMBOL_BITS
FIELD_POLYNOMIAL = 0b100101  # x^5 + x^2 + 1

PREFIX_LENGTH = 2
BODY_BITS = KEY_VERSION_BITS + ID_BITS
BODY_LENGTH = -(-BODY_BITS // SYMBOL_BITS)
CHECK_LENGTH = 1
LENGTH = PREFIX_LENGTH + BODY_LENGTH + CHECK_LENGTH
BODY_END = PREFIX_LENGTH + BODY_LENGTH

# Readers paste numbers with separators and padding; anything longer than this is not a
# tracking number, and looking no further keeps hostile input cheap.
MAX_INPUT_LENGTH = 64

CANONICAL_PATTERN = f"^[A-Z]{{{PREFIX_LENGTH}}}[{ALPHABET}]{{{BODY_LENGTH + CHECK_LENGTH}}}$"

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SYMBOL_VALUE = {symbol: value for value, symbol in enumerate(ALPHABET)}
# The letters Crockford leaves out take the values no other letter has; O and I the values a
# reader's O and I get in the body (see the module docstring).
_PREFIX_VALUE = {
    letter: _SYMBOL_VALUE[letter] for letter in _LETTERS if letter in _SYMBOL_VALUE
} | {"O": 0, "I": 1, "L": 2, "U": 3}
# Python's int(text, 32) reads the digits 0-9A-V.
_TO_INT_DIGITS = str.maketrans(ALPHABET, "0123456789ABCDEFGHIJKLMNOPQRSTUV")
_CANONICAL = re.compile(CANONICAL_PATTERN)
_ALLOWED_INPUT = frozenset(_LETTERS + _LETTERS.lower() + "0123456789- ")

assert sorted(_PREFIX_VALUE) == list(_LETTERS)
assert len(set(_PREFIX_VALUE.values())) == len(_LETTERS)  # one-to-one
assert BODY_LENGTH * SYMBOL_BITS == BODY_BITS  # no padding bits: every body decodes

# ``render`` is unrolled for this split of the body, with literal shifts 60, 50, ..., 10: one
# symbol, then six 10-bit pairs, the last of which shares a table with the check symbol.
_PAIR_BITS = 2 * SYMBOL_BITS
_PAIR_MASK = (1 << _PAIR_BITS) - 1
_HEAD_LENGTH = LENGTH - _PAIR_BITS // SYMBOL_BITS - CHECK_LENGTH
assert BODY_BITS == SYMBOL_BITS + 6 * _PAIR_BITS


# The name reads as the sentence it stands for in ``except InvalidTrackingNumber``.
class InvalidTrackingNumber(ValueError):
    """Text that is not a well-formed tracking number; the message says why, briefly."""


@dataclass(frozen=True, slots=True)
class TrackingNumber:
    """A parsed tracking number: its canonical text and what it carries."""

    text: str
    origin: str
    snowflake_id: int
    key_version: int

    def __str__(self) -> str:
        return self.text


def _mul2(x: int) -> int:
    """Multiply by 2 (the polynomial x) in GF(32)."""
    x <<= 1
    return x ^ FIELD_POLYNOMIAL if x & RADIX else x


_MUL2 = bytes(_mul2(x) for x in range(RADIX))


def _weight(position: int) -> list[int]:
    """The check-symbol contribution of each value at ``position`` (0 to LENGTH - 2).

    Unrolling the fold, the check is ``XOR over i of 2^(LENGTH - 1 - i) * v_i``.
    """
    table = list(range(RADIX))
    for _ in range(LENGTH - 1 - position):
        table = [_MUL2[x] for x in table]
    return table


def _pair_weight(position: int) -> list[int]:
    """The check contribution of each 10-bit pair whose first symbol sits at ``position``."""
    high, low = _weight(position), _weight(position + 1)
    return [h ^ low_value for h in high for low_value in low]


# Lists rather than bytes or str: CPython specialises indexing a list by an int.
_SYMBOLS = list(ALPHABET)
_PAIRS = [a + b for a in ALPHABET for b in ALPHABET]

_W0, _W1 = _weight(0), _weight(1)
_PREFIX_CHECK = {
    a + b: _W0[_PREFIX_VALUE[a]] ^ _W1[_PREFIX_VALUE[b]] for a in _LETTERS for b in _LETTERS
}
_FIRST_CHECK = _weight(PREFIX_LENGTH)
_PAIR_CHECK_1 = _pair_weight(PREFIX_LENGTH + 1)
_PAIR_CHECK_2 = _pair_weight(PREFIX_LENGTH + 3)
_PAIR_CHECK_3 = _pair_weight(PREFIX_LENGTH + 5)
_PAIR_CHECK_4 = _pair_weight(PREFIX_LENGTH + 7)
_PAIR_CHECK_5 = _pair_weight(PREFIX_LENGTH + 9)
_LAST_CHECK = _pair_weight(BODY_END - 2)
# _TAILS[k][p]: the last pair p and its check symbol, when everything before the last pair
# contributes k to the check. 32 rows of 1,024 short strings: about 2 MB, built in a few ms.
_TAILS = [
    [pair + _SYMBOLS[k ^ c] for pair, c in zip(_PAIRS, _LAST_CHECK, strict=True)]
    for k in range(RADIX)
]


def render(snowflake_id: int, origin: str, key_version: int = 0) -> str:
    """Render an ID as a tracking number; ``origin`` is an upper-case ISO alpha-2 code."""
    if not 0 <= snowflake_id <= MAX_ID:
        raise ValueError(f"{snowflake_id} is not a {ID_BITS}-bit Snowflake ID")
    if not 0 <= key_version <= MAX_KEY_VERSION:
        raise ValueError(f"key version {key_version} is outside 0..{MAX_KEY_VERSION}")
    try:
        check = _PREFIX_CHECK[origin]
    except KeyError:
        raise ValueError(f"origin must be two letters A-Z, not {origin!r:.8}") from None
    n = (key_version << ID_BITS) | snowflake_id
    first = n >> 60
    p1 = (n >> 50) & _PAIR_MASK
    p2 = (n >> 40) & _PAIR_MASK
    p3 = (n >> 30) & _PAIR_MASK
    p4 = (n >> 20) & _PAIR_MASK
    p5 = (n >> 10) & _PAIR_MASK
    check ^= (
        _FIRST_CHECK[first]
        ^ _PAIR_CHECK_1[p1]
        ^ _PAIR_CHECK_2[p2]
        ^ _PAIR_CHECK_3[p3]
        ^ _PAIR_CHECK_4[p4]
        ^ _PAIR_CHECK_5[p5]
    )
    return (
        f"{origin}{_SYMBOLS[first]}{_PAIRS[p1]}{_PAIRS[p2]}{_PAIRS[p3]}{_PAIRS[p4]}"
        f"{_PAIRS[p5]}{_TAILS[check][n & _PAIR_MASK]}"
    )


def render_range(ids: range, origin: str, key_version: int = 0) -> list[str]:
    """Render consecutive IDs (a ``range`` with step 1), as ``[render(i) for i in ids]``."""
    if ids.step != 1:
        raise ValueError(f"IDs must be consecutive (step 1), not step {ids.step}")
    if not ids:
        return []
    if ids.start < 0 or ids.stop - 1 > MAX_ID:
        raise ValueError(f"{ids} holds IDs outside the {ID_BITS}-bit Snowflake range")
    numbers: list[str] = []
    start, stop = ids.start, ids.stop
    while start < stop:
        end = min(stop, (start | _PAIR_MASK) + 1)
        # Render the block's first ID fully (validating the arguments on the way); its head
        # is shared by the whole block, and its check symbol gives back the tail row.
        first = render(start, origin, key_version)
        low = start & _PAIR_MASK
        row = _TAILS[_SYMBOL_VALUE[first[-1]] ^ _LAST_CHECK[low]]
        numbers += map(first[:_HEAD_LENGTH].__add__, row[low : low + end - start])
        start = end
    return numbers


def _position(text: str, index: int) -> int:
    """The 1-based position in ``text`` of the ``index``-th character that is not a separator."""
    return [position for position, char in enumerate(text, 1) if char not in "- "][index]


def _explain_bad_character(text: str, canonical: str | None) -> str:
    """Why ``text`` failed the shape check: the first character out of place, and where."""
    if canonical is None:
        position, char = next((p, c) for p, c in enumerate(text, 1) if c not in _ALLOWED_INPUT)
        return f"character {char!a} at position {position} is not allowed"
    index, char = next(
        (i, c)
        for i, c in enumerate(canonical)
        if c not in (_PREFIX_VALUE if i < PREFIX_LENGTH else _SYMBOL_VALUE)
    )
    where = (
        "the first two characters are the country, letters only"
        if index < PREFIX_LENGTH
        else "L and U never occur after the country"
    )
    return f"character {char!r} at position {_position(text, index)} is not allowed: {where}"


def parse(text: str, *, origins: Container[str] | None = None) -> TrackingNumber:
    """Read a tracking number as a person may type it; raise InvalidTrackingNumber if wrong.

    Lower case, hyphens and spaces are accepted, and ``O`` and ``I`` read as ``0`` and ``1``
    after the country letters. Given ``origins``, the country must be one of them.
    """
    if len(text) > MAX_INPUT_LENGTH:
        raise InvalidTrackingNumber(f"too long: more than {MAX_INPUT_LENGTH} characters")
    compact = text.replace("-", "").replace(" ", "")
    if compact and not (compact.isascii() and compact.isalnum()):
        raise InvalidTrackingNumber(_explain_bad_character(text, None))
    if len(compact) != LENGTH:
        raise InvalidTrackingNumber(
            f"wrong length: {len(compact)} characters, expected {LENGTH} "
            "(spaces and hyphens do not count)"
        )
    compact = compact.upper()
    origin = compact[:PREFIX_LENGTH]
    canonical = origin + compact[PREFIX_LENGTH:].replace("O", "0").replace("I", "1")
    if not _CANONICAL.fullmatch(canonical):
        raise InvalidTrackingNumber(_explain_bad_character(text, canonical))
    if origins is not None and origin not in origins:
        raise InvalidTrackingNumber(f"unknown origin country {origin!r}")
    n = int(canonical[PREFIX_LENGTH:BODY_END].translate(_TO_INT_DIGITS), RADIX)
    snowflake_id, key_version = n & MAX_ID, n >> ID_BITS
    # Prefix and body decode one-to-one, so rendering them again differs from the input in the
    # check symbol or not at all.
    if render(snowflake_id, origin, key_version) != canonical:
        raise InvalidTrackingNumber(
            "wrong check character: a character is mistyped or two are swapped"
        )
    return TrackingNumber(canonical, origin, snowflake_id, key_version)


def is_valid(text: str, *, origins: Container[str] | None = None) -> bool:
    """Whether ``parse`` accepts ``text``."""
    try:
        parse(text, origins=origins)
    except InvalidTrackingNumber:
        return False
    return True
