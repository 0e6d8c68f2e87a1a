"""RFQ pricing: firm two-sided prices that no single client can move in its favour.

The desk quotes ``buyPrice`` (where it buys, the client sells) and ``sellPrice`` (where it sells,
the client buys) for a quantity, in ticks of the instrument:

- **The reference anchors the price.** The desk sells at no less than ``reference x (1 +
  markup)`` and buys at no more than ``reference x (1 - markup)``. The reference comes from
  outside the order book (an operator's price, or the demo's random walk): anything in the book
  can be put there by one client, on an empty or thin book cheaply. Without a reference there is
  no quote.
- **The book can only make the price worse for the client.** Where taking the quantity from the
  book (others' orders only: the caller leaves the requester's own out) costs more than the
  reference, the desk sells at that cost plus the markup; where selling it into the bids fetches
  less than the reference, it buys at that plus the markup. A side too thin for the quantity adds
  nothing and the reference alone prices it.
- **A book far from the reference stops the desk.** If either side's volume-weighted price for the
  quantity is further than ``band`` from the reference, the book is disorderly, manipulated, or the
  reference is wrong: no quote rather than a guess.
- **Rounding is away from the client**: the buy price down, the sell price up, to the tick. So
  ``buy <= reference <= sell`` and ``buy <= sell`` always. A buy price that would round to
  nothing (below one tick) is no quote.

Everything is exact rational arithmetic. Where the reference and the book come from is the
caller's business (``app/pricing.py``); this module only states the rule, and hypothesis tests
hold it to every property above.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

_BPS = Fraction(10_000)

DEFAULT_BAND_BPS = Decimal(500)  # 5 %: see docs/architecture.md, "RFQ: the desk's pricing rules"


@dataclass(frozen=True, slots=True)
class TwoWayPrice:
    """A firm two-sided price in ticks of the instrument."""

    buy_ticks: int
    sell_ticks: int


@dataclass(frozen=True, slots=True)
class NoQuote:
    """Why the desk makes no quote now, in words a client can read.

    ``desk_limit`` is set when there is a price but the house cannot fill the quantity (its
    inventory); otherwise there is no acceptable price.
    """

    reason: str
    desk_limit: bool = False


@dataclass(frozen=True, slots=True)
class ReferencePrice:
    """A reference price an operator set (``tradews price set``)."""

    symbol: str
    price: Decimal  # in units of the quote asset
    set_at: int  # ms since the epoch
    max_age_ms: int | None  # None: the server's default

    def max_age(self, default_ms: int) -> int:
        return default_ms if self.max_age_ms is None else self.max_age_ms

    def is_stale(self, now_ms: int, default_max_age_ms: int) -> bool:
        return now_ms - self.set_at > self.max_age(default_max_age_ms)


def rfq_prices(
    bid_vwap: Fraction | None,
    ask_vwap: Fraction | None,
    reference: Fraction | int | None,
    markup_bps: Decimal,
    band_bps: Decimal = DEFAULT_BAND_BPS,
) -> TwoWayPrice | NoQuote:
    """Firm prices for an RFQ, or why there are none.

    ``bid_vwap`` / ``ask_vwap``: the average price of selling into / buying from the book the
    quoted quantity, None where the book is too thin; ``reference`` in ticks (possibly
    fractional); ``markup_bps`` the desk's half-spread; ``band_bps`` how far from the reference
    the book may be before the desk stops quoting.
    """
    if reference is None:
        return NoQuote("there is no reference price")
    ref = Fraction(reference)
    if ref <= 0:
        raise ValueError("reference price must be positive")
    band = ref * Fraction(band_bps) / _BPS
    for vwap, side in ((ask_vwap, "asks"), (bid_vwap, "bids")):
        if vwap is not None and abs(vwap - ref) > band:
            away = float(abs(vwap - ref) / ref * 100)
            return NoQuote(
                f"the order book's {side} for this quantity are {away:.2f}% from the reference "
                f"price, outside the desk's {band_bps / 100:g}% band"
            )
    m = Fraction(markup_bps) / _BPS
    sell_from = ref if ask_vwap is None or ask_vwap < ref else ask_vwap
    buy_from = ref if bid_vwap is None or bid_vwap > ref else bid_vwap
    sell = (sell_from * (1 + m)).__ceil__()
    buy = (buy_from * (1 - m)).__floor__()
    if buy < 1:
        return NoQuote("the desk's buy price would be below one tick")
    return TwoWayPrice(buy_ticks=buy, sell_ticks=sell)
