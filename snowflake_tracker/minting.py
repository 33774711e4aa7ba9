"""From a validated origin to a rendered tracking number: generator, optional key, codec.

Pure: no aiohttp, no I/O. The web layer calls :meth:`Minter.mint` per request and
:meth:`Minter.mint_many` per batch; both raise :class:`~snowflake_tracker.ids.generator.MustWait`
without consuming anything when the caller must wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from itertools import groupby
from typing import Protocol

from snowflake_tracker.ids.codec import render, render_range
from snowflake_tracker.ids.generator import SnowflakeGenerator
from snowflake_tracker.ids.layout import EPOCH_MS, TIMESTAMP_SHIFT


class KeyedEncoder(Protocol):
    """What the minter needs of a key ring: the version in use and the permutation."""

    @property
    def current_version(self) -> int: ...

    def encode(self, snowflake_id: int) -> tuple[int, int]: ...


def make_rfc3339_ms() -> Callable[[int], str]:
    """A formatter of Unix milliseconds as ``YYYY-MM-DDTHH:MM:SS.mmmZ``, caching the second.

    Numbers minted in the same second share the expensive part of the string.
    """
    cache_second = -1
    cache_prefix = ""

    def format_ms(unix_ms: int) -> str:
        nonlocal cache_second, cache_prefix
        second, millis = divmod(unix_ms, 1000)
        if second != cache_second:
            cache_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            cache_second = second
        return f"{cache_prefix}.{millis:03d}Z"

    return format_ms


class Minter:
    """Mints tracking numbers for one worker: ID, optional keyed permutation, rendering."""

    __slots__ = ("_encode", "_format_ms", "generator", "key_version")

    def __init__(
        self, generator: SnowflakeGenerator, *, keyring: KeyedEncoder | None = None
    ) -> None:
        self.generator = generator
        self.key_version = 0 if keyring is None else keyring.current_version
        self._encode = keyring.encode if keyring is not None and self.key_version else None
        self._format_ms = make_rfc3339_ms()

    def mint(self, origin: str) -> tuple[str, str]:
        """One tracking number for a parcel from ``origin``, and its mint time (RFC 3339)."""
        snowflake_id = self.generator.next_id()
        unix_ms = (snowflake_id >> TIMESTAMP_SHIFT) + EPOCH_MS
        if self._encode is None:
            return render(snowflake_id, origin), self._format_ms(unix_ms)
        version, value = self._encode(snowflake_id)
        return render(value, origin, version), self._format_ms(unix_ms)

    def mint_many(self, origins: Sequence[str]) -> list[tuple[str, str]]:
        """Numbers for a batch, in order, reserved all at once (all or nothing)."""
        runs = self.generator.next_ids(len(origins))
        out: list[tuple[str, str]] = []
        format_ms = self._format_ms
        for run in runs:
            minted_at = format_ms((run.start >> TIMESTAMP_SHIFT) + EPOCH_MS)
            run_origins = origins[len(out) : len(out) + len(run)]
            if self._encode is None:
                # Consecutive parcels from one origin take consecutive IDs: render them as
                # one range, which shares the work of the leading symbols.
                first = run.start
                for origin, group in groupby(run_origins):
                    count = sum(1 for _ in group)
                    numbers = render_range(range(first, first + count), origin)
                    out.extend([(number, minted_at) for number in numbers])
                    first += count
            else:
                for snowflake_id, origin in zip(run, run_origins, strict=True):
                    version, value = self._encode(snowflake_id)
                    out.append((render(value, origin, version), minted_at))
        return out
