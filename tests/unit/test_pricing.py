"""The RFQ desk's pricing rule (``domain/pricing.py``), held to its properties."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tradews.domain.pricing import NoQuote, TwoWayPrice, rfq_prices
from tradews.domain.random_walk import RandomWalk

references = st.fractions(min_value=Fraction(1, 1000), max_value=Fraction(10**12)).filter(
    lambda f: f > 0
)
markups = st.decimals(min_value=0, max_value=5000, places=2)
bands = st.decimals(min_value=1, max_value=5000, places=0)
# A book price as a multiple of the reference: mostly near it, sometimes far, sometimes absent.
offsets = st.none() | st.fractions(min_value=Fraction(1, 2), max_value=Fraction(2))


def book(ref: Fraction, offset: Fraction | None) -> Fraction | None:
    return None if offset is None else ref * offset


@given(references, offsets, offsets, markups, bands)
def test_the_pricing_rule(
    ref: Fraction, bid_at: Fraction | None, ask_at: Fraction | None, bps: Decimal, band: Decimal
) -> None:
    bid, ask = book(ref, bid_at), book(ref, ask_at)
    p = rfq_prices(bid, ask, ref, bps, band)
    m = Fraction(bps) / 10_000
    width = ref * Fraction(band) / 10_000
    outside = [v for v in (bid, ask) if v is not None and abs(v - ref) > width]
    # Within the band, or no quote.
    if outside:
        assert isinstance(p, NoQuote) and "band" in p.reason
        return
    if isinstance(p, NoQuote):  # the only other refusal: a buy price below one tick
        assert (min(ref, bid or ref) * (1 - m)).__floor__() < 1
        return
    assert p.buy_ticks <= p.sell_ticks
    # Never better for the client than the reference +- markup...
    assert p.sell_ticks >= ref * (1 + m)
    assert p.buy_ticks <= ref * (1 - m)
    # ...nor than the book (others' orders) +- markup, where the book is worse...
    sell_from = max(ref, ask) if ask is not None else ref
    buy_from = min(ref, bid) if bid is not None else ref
    assert p.sell_ticks >= sell_from * (1 + m)
    assert p.buy_ticks <= buy_from * (1 - m)
    # ...and rounded away from the client by less than a tick: no further than that.
    assert p.sell_ticks - sell_from * (1 + m) < 1
    assert buy_from * (1 - m) - p.buy_ticks < 1


@given(references, markups, bands, st.fractions(min_value=0, max_value=Fraction(1, 20)))
def test_cheap_asks_and_rich_bids_never_help_the_client(
    ref: Fraction, bps: Decimal, band: Decimal, within: Fraction
) -> None:
    """What one client can do to the book (rest cheap asks, rich bids) leaves the quote where
    the reference alone puts it, or stops the desk: never a better price for anyone."""
    assume(within * 10_000 <= band)
    alone = rfq_prices(None, None, ref, bps, band)
    rich_bids, cheap_asks = ref * (1 + within), ref * (1 - within)
    moved = rfq_prices(rich_bids, cheap_asks, ref, bps, band)
    assert moved == alone


def test_known_values() -> None:
    # 65,000.00 at 5 bps, tick 0.01, empty book: the reference alone.
    p = rfq_prices(None, None, Fraction(6_500_000), Decimal("5"))
    assert p == TwoWayPrice(6_496_750, 6_503_250)
    p = rfq_prices(None, None, Fraction(1001, 10), Decimal("0"))
    assert p == TwoWayPrice(100, 101)
    # Asks above the reference (within 5 %) price the desk's sell; bids below it its buy.
    p = rfq_prices(Fraction(6_400_000), Fraction(6_600_000), Fraction(6_500_000), Decimal("5"))
    assert p == TwoWayPrice(6_396_800, 6_603_300)
    # A book 6 % away: no quote, and the reason says so.
    p = rfq_prices(None, Fraction(6_890_000), Fraction(6_500_000), Decimal("5"))
    assert p == NoQuote(
        "the order book's asks for this quantity are 6.00% from the reference price, "
        "outside the desk's 5% band"
    )
    p = rfq_prices(Fraction(6_890_000), None, Fraction(6_500_000), Decimal("5"), Decimal(700))
    assert isinstance(p, TwoWayPrice) and p.buy_ticks == 6_496_750  # rich bids: 6 % < 7 %


def test_no_reference_no_quote() -> None:
    assert rfq_prices(Fraction(99), Fraction(100), None, Decimal("5")) == NoQuote(
        "there is no reference price"
    )


def test_a_buy_price_below_one_tick_is_no_quote() -> None:
    p = rfq_prices(None, None, Fraction(1), Decimal("5"))
    assert isinstance(p, NoQuote) and "one tick" in p.reason


def test_reference_must_be_positive() -> None:
    with pytest.raises(ValueError):
        rfq_prices(None, None, 0, Decimal("1"))


def test_random_walk_is_reproducible_and_positive() -> None:
    a = RandomWalk(1000, seed=7, volatility=5.0)
    b = RandomWalk(1000, seed=7, volatility=5.0)
    path_a = [a.step(1.0) for _ in range(500)]
    assert path_a == [b.step(1.0) for _ in range(500)]
    assert all(p >= 1 for p in path_a)
    assert len(set(path_a)) > 400
    still = RandomWalk(1000, seed=7, volatility=0.0)
    assert {still.step(1.0) for _ in range(10)} == {Fraction(1000)}
