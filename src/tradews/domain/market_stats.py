"""Rolling 24-hour statistics (open, high, low, volume) kept in one-minute buckets.

Memory is bounded (at most 1,440 buckets per instrument) and every operation is O(1) amortised
except :meth:`RollingStats.snapshot`, which walks the buckets and is called once a refresh.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

WINDOW_MS = 24 * 60 * 60 * 1000
BUCKET_MS = 60 * 1000


@dataclass(slots=True)
class _Bucket:
    start_ms: int
    open: int
    high: int
    low: int
    volume: int


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """Figures over the last 24 hours, in ticks and lots; ``open`` is the first price seen."""

    last: int
    open: int
    high: int
    low: int
    volume: int


class RollingStats:
    __slots__ = ("_buckets", "_last")

    def __init__(self) -> None:
        self._buckets: deque[_Bucket] = deque()
        self._last: int | None = None

    def observe(self, price: int, volume: int, now_ms: int) -> None:
        """Record a price (a trade, or the reference when nothing trades) and traded volume."""
        start = now_ms - now_ms % BUCKET_MS
        buckets = self._buckets
        if buckets and buckets[-1].start_ms == start:
            b = buckets[-1]
            if price > b.high:
                b.high = price
            elif price < b.low:
                b.low = price
            b.volume += volume
        else:
            buckets.append(_Bucket(start, price, price, price, volume))
        self._last = price
        self._expire(now_ms)

    def _expire(self, now_ms: int) -> None:
        cutoff = now_ms - WINDOW_MS
        buckets = self._buckets
        while buckets and buckets[0].start_ms + BUCKET_MS <= cutoff:
            buckets.popleft()

    def snapshot(self, now_ms: int) -> StatsSnapshot | None:
        """Return the 24h figures, or None if nothing was observed in the window."""
        self._expire(now_ms)
        if not self._buckets or self._last is None:
            return None
        high = max(b.high for b in self._buckets)
        low = min(b.low for b in self._buckets)
        volume = sum(b.volume for b in self._buckets)
        return StatsSnapshot(self._last, self._buckets[0].open, high, low, volume)
