"""Rate limits: token buckets per connection, per API key and per address, sans-I/O.

Every call costs its method's ``cost`` (see the method table in ``session.py``). A call is
served only if *every* bucket that applies to it holds that many tokens: the connection's own, the
API key's (shared by all of that key's connections, once logged in) and, before login, the
client address's (shared by all of that address's anonymous connections, so that opening more
connections buys an attacker nothing). Buckets refill continuously at ``rate`` tokens a second
up to ``burst``. A refused call changes nothing and is answered with error 3002 and
``retryAfter``, the milliseconds until the call would be served.

The pure core: callers pass ``now_ms``; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"200/400"``: 200 a second, bursts of 400 (``"200"`` alone: burst = 2 x rate)."""
        rate, _, burst = text.partition("/")
        value = float(rate)
        return cls(value, float(burst) if burst else 2 * value)


@dataclass(frozen=True, slots=True)
class RateLimits:
    connection: Rate = Rate(200, 400)
    key: Rate = Rate(400, 800)
    address: Rate = Rate(200, 1000)  # anonymous connections of one address, together
    # Refused calls in a row after which a client that ignores ``retryAfter`` is disconnected.
    max_refusals: int = 100


class TokenBucket:
    __slots__ = ("_burst", "_per_ms", "_stamp", "tokens")

    def __init__(self, rate: Rate, now_ms: int) -> None:
        self._per_ms = rate.rate / 1000
        self._burst = rate.burst
        self.tokens = rate.burst
        self._stamp = now_ms

    def _refill(self, now_ms: int) -> None:
        if now_ms > self._stamp:
            tokens = self.tokens + (now_ms - self._stamp) * self._per_ms
            self.tokens = tokens if tokens < self._burst else self._burst
            self._stamp = now_ms

    def wait_ms(self, cost: float, now_ms: int) -> int:
        """0 if ``cost`` tokens are there now, else the milliseconds until they will be.
        (Every call goes through here: plain comparisons, no min().)"""
        if now_ms > self._stamp:
            self._refill(now_ms)
        if cost > self._burst:
            cost = self._burst
        missing = cost - self.tokens
        return 0 if missing <= 0 else int(missing / self._per_ms) + 1

    def take(self, cost: float) -> None:
        self.tokens -= cost if cost < self._burst else self._burst

    def try_take(self, cost: float, now_ms: int) -> int:
        """Take ``cost`` tokens and return 0, or take nothing and return the milliseconds until
        they will be there: :meth:`wait_ms` and :meth:`take` in one call (the hot path)."""
        if now_ms > self._stamp:
            tokens = self.tokens + (now_ms - self._stamp) * self._per_ms
            self.tokens = tokens if tokens < self._burst else self._burst
            self._stamp = now_ms
        if cost > self._burst:
            cost = self._burst
        missing = cost - self.tokens
        if missing <= 0:
            self.tokens -= cost
            return 0
        return int(missing / self._per_ms) + 1

    @property
    def limit(self) -> int:
        return int(self._burst)

    def full_at(self, now_ms: int) -> int:
        """When the bucket will be full again, if nothing more is taken."""
        self._refill(now_ms)
        return now_ms + int((self._burst - self.tokens) / self._per_ms)

    def idle(self, now_ms: int) -> bool:
        self._refill(now_ms)
        return self.tokens >= self._burst


class SharedBuckets:
    """Buckets shared by many connections (per key, per address), forgotten once full again."""

    def __init__(self, rate: Rate) -> None:
        self._rate = rate
        self._buckets: dict[str, TokenBucket] = {}

    def get(self, name: str, now_ms: int) -> TokenBucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = TokenBucket(self._rate, now_ms)
        return bucket

    def prune(self, now_ms: int) -> None:
        """Forget full buckets: a new one starts full, so nothing is lost (call now and then)."""
        for name in [n for n, b in self._buckets.items() if b.idle(now_ms)]:
            del self._buckets[name]

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimiter:
    """The shared part of rate limiting: one per server."""

    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self.keys = SharedBuckets(limits.key)
        self.addresses = SharedBuckets(limits.address)
        self.refused = 0

    def prune(self, now_ms: int) -> None:
        self.keys.prune(now_ms)
        self.addresses.prune(now_ms)
