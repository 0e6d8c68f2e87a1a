"""A seeded geometric random walk used as the demo reference price.

Deterministic for a given seed and sequence of time steps, so a demo can be replayed and tests
can predict it. Prices are returned as exact fractions of a tick so that pricing stays exact.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction


class RandomWalk:
    """``step(dt)`` moves the price by a log-normal increment with the given annual volatility.

    ``volatility`` is the standard deviation of log returns over one *hour*, which is easier to
    reason about for a demo than an annualised figure (0.01 = about 1 % an hour).
    """

    __slots__ = ("_price", "_rng", "_sigma_per_sqrt_s")

    def __init__(self, start_ticks: int, *, seed: int, volatility: float = 0.01) -> None:
        if start_ticks <= 0:
            raise ValueError("start price must be positive")
        self._price = float(start_ticks)
        self._rng = random.Random(seed)
        self._sigma_per_sqrt_s = volatility / math.sqrt(3600.0)

    def step(self, dt: float) -> Fraction:
        """Advance ``dt`` seconds and return the new reference price in ticks."""
        if dt > 0:
            z = self._rng.gauss(0.0, 1.0)
            self._price *= math.exp(self._sigma_per_sqrt_s * math.sqrt(dt) * z)
            self._price = max(self._price, 1.0)
        return self.price

    @property
    def price(self) -> Fraction:
        # Round to 1/1000 of a tick: exact, and small enough that quotes still move tick by tick.
        return Fraction(round(self._price * 1000), 1000)
