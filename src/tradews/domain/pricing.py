"""RFQ pricing: two-sided firm prices around a reference price.

The desk quotes ``buyPrice`` (where it buys, the client sells) below the reference and
``sellPrice`` (where it sells, the client buys) above it, each ``spread_bps`` basis points away,
rounded on the tick *away from the client*: the buy price down, the sell price up. So
``buy <= sell`` always, and rounding never gives the client a better price than configured.

The reference price is an input. In demo mode it is a random walk; the order book feeds it
(volume-weighted over the quoted quantity) once matching exists. This module does not care where
it comes from, which is the seam.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

_BPS = Fraction(10_000)


@dataclass(frozen=True, slots=True)
class TwoWayPrice:
    """A firm two-sided price in ticks of the instrument."""

    buy_ticks: int
    sell_ticks: int


def quote_prices(reference: Fraction | int, spread_bps: Decimal) -> TwoWayPrice:
    """Price both sides around ``reference`` (in ticks, possibly fractional).

    ``buy = floor(ref * (1 - bps/10^4))`` and ``sell = ceil(ref * (1 + bps/10^4))``, computed in
    exact rational arithmetic. The buy price never falls below one tick.
    """
    ref = Fraction(reference)
    if ref <= 0:
        raise ValueError("reference price must be positive")
    half = ref * Fraction(spread_bps) / _BPS
    buy = (ref - half).__floor__()
    sell = (ref + half).__ceil__()
    return TwoWayPrice(buy_ticks=max(1, buy), sell_ticks=max(1, sell))


def rfq_prices(
    bid_vwap: Fraction | None,
    ask_vwap: Fraction | None,
    reference: Fraction | None,
    markup_bps: Decimal,
) -> TwoWayPrice | None:
    """Firm prices for an RFQ of a given size, from the book where it is deep enough.

    The desk buys from the client at what selling the quantity into the bids would fetch
    (``bid_vwap``) less the markup, and sells at what buying it from the asks would cost
    (``ask_vwap``) plus the markup, both rounded away from the client. A side whose book is too
    thin (None) falls back to the reference price, if there is one; with neither, no quote.
    """
    if reference is not None:
        fallback = quote_prices(reference, markup_bps)
    if bid_vwap is None and ask_vwap is None:
        return fallback if reference is not None else None
    if (bid_vwap is None or ask_vwap is None) and reference is None:
        return None
    m = Fraction(markup_bps) / _BPS
    buy = (bid_vwap * (1 - m)).__floor__() if bid_vwap is not None else fallback.buy_ticks
    sell = (ask_vwap * (1 + m)).__ceil__() if ask_vwap is not None else fallback.sell_ticks
    buy = max(1, buy)
    if buy > sell:  # a thin side priced off a reference far from the book: quote both from it
        if reference is None:
            return None
        return fallback
    return TwoWayPrice(buy_ticks=buy, sell_ticks=sell)
