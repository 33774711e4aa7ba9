"""The bit layout of a Snowflake ID.

::

     63  62                                      22 21          12 11            0
    +---+------------------------------------------+--------------+---------------+
    | 0 | 41 bits: milliseconds since EPOCH        | 10 bits:     | 12 bits:      |
    |   | (2025-01-01T00:00:00Z)                   | worker ID    | sequence      |
    +---+------------------------------------------+--------------+---------------+

The top bit is always 0, so an ID fits a signed 64-bit integer and the 63 bits below it are
what a tracking number carries (beside a 2-bit key version, see ``codec``). Every constant
below is derived from the three widths; change a width and the rest follows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

TIMESTAMP_BITS = 41
WORKER_BITS = 10
SEQUENCE_BITS = 12
ID_BITS = TIMESTAMP_BITS + WORKER_BITS + SEQUENCE_BITS

WORKER_SHIFT = SEQUENCE_BITS
TIMESTAMP_SHIFT = WORKER_BITS + SEQUENCE_BITS

MAX_TIMESTAMP = (1 << TIMESTAMP_BITS) - 1
MAX_WORKER_ID = (1 << WORKER_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1
MAX_ID = (1 << ID_BITS) - 1
IDS_PER_MS = MAX_SEQUENCE + 1
WORKER_COUNT = MAX_WORKER_ID + 1

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
EPOCH_MS = int(EPOCH.timestamp()) * 1000
END_OF_LIFETIME = EPOCH + timedelta(milliseconds=MAX_TIMESTAMP)


class LifetimeExceeded(ValueError):
    """A time outside the span the 41 timestamp bits can represent."""


class SnowflakeParts(NamedTuple):
    """An ID taken apart: milliseconds since EPOCH, worker ID, sequence."""

    timestamp: int
    worker_id: int
    sequence: int

    @property
    def unix_ms(self) -> int:
        """Milliseconds since the Unix epoch when the ID was minted."""
        return self.timestamp + EPOCH_MS

    @property
    def minted_at(self) -> datetime:
        """The mint time, as an aware UTC datetime."""
        return EPOCH + timedelta(milliseconds=self.timestamp)


def check_worker_id(worker_id: int) -> int:
    """Return ``worker_id`` if it fits the worker bits, else raise ``ValueError``."""
    if isinstance(worker_id, bool) or not isinstance(worker_id, int):
        raise TypeError(f"worker ID must be an int, not {type(worker_id).__name__}")
    if not 0 <= worker_id <= MAX_WORKER_ID:
        raise ValueError(
            f"worker ID {worker_id} is outside 0..{MAX_WORKER_ID} ({WORKER_BITS} bits)"
        )
    return worker_id


def compose(timestamp: int, worker_id: int, sequence: int) -> int:
    """Pack milliseconds since EPOCH, a worker ID and a sequence into one ID."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise LifetimeExceeded(
            f"timestamp {timestamp} ms is outside the ID lifetime "
            f"({EPOCH.isoformat()} to {END_OF_LIFETIME.isoformat()})"
        )
    check_worker_id(worker_id)
    if not 0 <= sequence <= MAX_SEQUENCE:
        raise ValueError(f"sequence {sequence} is outside 0..{MAX_SEQUENCE}")
    return (timestamp << TIMESTAMP_SHIFT) | (worker_id << WORKER_SHIFT) | sequence


def decompose(snowflake_id: int) -> SnowflakeParts:
    """Take an ID apart into its timestamp, worker ID and sequence."""
    if not 0 <= snowflake_id <= MAX_ID:
        raise ValueError(f"{snowflake_id} is not a {ID_BITS}-bit Snowflake ID")
    return SnowflakeParts(
        snowflake_id >> TIMESTAMP_SHIFT,
        (snowflake_id >> WORKER_SHIFT) & MAX_WORKER_ID,
        snowflake_id & MAX_SEQUENCE,
    )


def years_left(unix_ms: int) -> float:
    """How many years of ID space remain after ``unix_ms``."""
    return (MAX_TIMESTAMP - (unix_ms - EPOCH_MS)) / (365.2425 * 86_400_000)
