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
