from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradews.domain.pricing import quote_prices
from tradews.domain.random_walk import RandomWalk

references = st.fractions(min_value=Fraction(1, 1000), max_value=Fraction(10**12)).filter(
    lambda f: f > 0
)
spreads = st.decimals(min_value=0, max_value=5000, places=2)


@given(references, spreads)
def test_buy_never_above_sell_and_rounded_away_from_the_client(ref: Fraction, bps: Decimal) -> None:
    p = quote_prices(ref, bps)
    assert p.buy_ticks <= p.sell_ticks
    half = ref * Fraction(bps) / 10_000
    # The desk buys at or below its configured price, sells at or above it...
    assert p.sell_ticks >= ref + half
    assert p.buy_ticks <= max(ref - half, Fraction(1))
    # ...by less than one tick: rounding is to the next tick, not further.
    assert p.sell_ticks - (ref + half) < 1
    if ref - half >= 1:
        assert (ref - half) - p.buy_ticks < 1


def test_known_values() -> None:
    p = quote_prices(Fraction(6_500_000), Decimal("5"))  # 65,000.00 at 5 bps, tick 0.01
    assert (p.buy_ticks, p.sell_ticks) == (6_496_750, 6_503_250)
    p = quote_prices(Fraction(1001, 10), Decimal("0"))
    assert (p.buy_ticks, p.sell_ticks) == (100, 101)


def test_reference_must_be_positive() -> None:
    with pytest.raises(ValueError):
        quote_prices(0, Decimal("1"))


def test_random_walk_is_reproducible_and_positive() -> None:
    a = RandomWalk(1000, seed=7, volatility=5.0)
    b = RandomWalk(1000, seed=7, volatility=5.0)
    path_a = [a.step(1.0) for _ in range(500)]
    assert path_a == [b.step(1.0) for _ in range(500)]
    assert all(p >= 1 for p in path_a)
    assert len(set(path_a)) > 400
    still = RandomWalk(1000, seed=7, volatility=0.0)
    assert {still.step(1.0) for _ in range(10)} == {Fraction(1000)}
