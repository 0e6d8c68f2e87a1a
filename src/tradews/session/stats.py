"""What the API did, counted for ``/metrics``: requests by method and encoding with their latency,
and refusals by error. Plain integers bumped on the request path; ``app/metrics.py`` reads them
when scraped, so counting costs a clock read and a few list updates per request.

Labels are bounded: a method the API does not have is counted as ``unknown`` (a client choosing
method names must not choose the metrics' cardinality), and errors are counted by their code's
name, of which there are a fixed few.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection

# Upper bounds of the latency buckets, in ns: from 50 us (a read answered from memory) to 5 s (a
# request that waited out an engine or database outage).
BUCKETS_NS: tuple[int, ...] = (
    50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
    25_000_000, 50_000_000, 100_000_000, 250_000_000, 1_000_000_000, 5_000_000_000,
)  # fmt: skip


class Histogram:
    """Counts per bucket (the last one: above every bound), their total and sum."""

    __slots__ = ("counts", "count", "sum_ns")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_NS) + 1)
        self.count = 0
        self.sum_ns = 0

    def observe(self, ns: int) -> None:
        self.counts[bisect.bisect_left(BUCKETS_NS, ns)] += 1
        self.count += 1
        self.sum_ns += ns

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus buckets: (upper bound in seconds, observations at or below it)."""
        out, running = [], 0
        for bound, n in zip(BUCKETS_NS, self.counts, strict=False):
            running += n
            out.append((f"{bound / 1e9:g}", running))
        out.append(("+Inf", self.count))
        return out


class RequestStats:
    """Every request's latency, by (method, encoding); every error reply, by (method, code)."""

    def __init__(self, methods: Collection[str]) -> None:
        self._methods = frozenset(methods)
        self.latency: dict[tuple[str, str], Histogram] = {}
        self.errors: dict[tuple[str, str], int] = {}

    def record(self, method: str, encoding: str, elapsed_ns: int, error: str | None) -> None:
        """One reply sent: ``error`` is its error code's name, None for a result."""
        if method not in self._methods:
            method = "unknown"
        key = (method, encoding)
        hist = self.latency.get(key)
        if hist is None:
            hist = self.latency[key] = Histogram()
        hist.observe(elapsed_ns)
        if error is not None:
            ekey = (method, error)
            self.errors[ekey] = self.errors.get(ekey, 0) + 1
