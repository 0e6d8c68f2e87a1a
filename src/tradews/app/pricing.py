"""Where RFQ prices come from: a reference price from outside the book, the book's depth without
the requester's own orders, and the house's inventory. The rule itself is
``domain/pricing.py``'s :func:`~tradews.domain.pricing.rfq_prices`."""

from __future__ import annotations

from collections.abc import Container, Iterable
from decimal import Decimal
from fractions import Fraction
from typing import Any

from tradews.domain.instrument import Instrument
from tradews.domain.orders import Side
from tradews.domain.pricing import (
    DEFAULT_BAND_BPS,
    NoQuote,
    ReferencePrice,
    TwoWayPrice,
    rfq_prices,
)
from tradews.engine.engine import Engine
from tradews.session.view import TradingView

# How long an operator's reference price stays usable unless it says otherwise. A reference is
# only as good as it is recent: the desk sells at the reference plus a markup of a few basis
# points, and markets move that much in seconds. A minute lets a feed (a script running
# `tradews price set` every few seconds) miss a few beats, and stops quoting soon after it dies.
DEFAULT_MAX_AGE_MS = 60_000

_NO_ACCOUNTS: frozenset[int] = frozenset()
_UNITS = ((86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s"))


def format_duration(ms: int) -> str:
    """``90000`` -> ``90s``, ``300000`` -> ``5m``: the largest unit that divides it exactly."""
    for size, unit in _UNITS:
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


class ReferencePrices:
    """Each instrument's reference: the operator's price where one is set, else the price feed's
    (``--price-feed``) where it has one, else the demo walk's.

    An operator's or a feed's price older than its maximum age is stale, and then there is no
    reference (the next source does not stand in for it: the operator or the feed said what the
    price is, and that is out of date).
    """

    def __init__(
        self, walks: dict[str, Fraction], *, default_max_age_ms: int = DEFAULT_MAX_AGE_MS
    ) -> None:
        self.walks = walks  # symbol -> price in ticks, stepped by the server in demo mode
        self.default_max_age_ms = default_max_age_ms
        self._operator: dict[str, ReferencePrice] = {}
        self._feed: dict[str, ReferencePrice] = {}

    def set_operator_prices(self, prices: Iterable[ReferencePrice]) -> None:
        self._operator = {p.symbol: p for p in prices}

    def set_feed_price(self, symbol: str, price: Decimal, at_ms: int) -> None:
        """A price from the feed, true at ``at_ms`` (an older one than held is ignored)."""
        held = self._feed.get(symbol)
        if held is None or held.set_at <= at_ms:
            self._feed[symbol] = ReferencePrice(symbol, price, at_ms, None)

    def get(self, inst: Instrument, now_ms: int) -> Fraction | NoQuote:
        """The reference of ``inst`` in ticks at ``now_ms``, or why there is none."""
        op = self._operator.get(inst.symbol)
        if op is not None:
            default = self.default_max_age_ms
            if op.is_stale(now_ms, default):
                age = format_duration(op.max_age(default))
                return NoQuote(f"the desk's reference price is stale (older than {age})")
            return Fraction(op.price) / Fraction(inst.tick)
        fed = self._feed.get(inst.symbol)
        if fed is not None:
            if fed.is_stale(now_ms, self.default_max_age_ms):
                age = format_duration(self.default_max_age_ms)
                return NoQuote(f"the price feed's reference price is stale (older than {age})")
            return Fraction(fed.price) / Fraction(inst.tick)
        walk = self.walks.get(inst.symbol)
        if walk is None:
            return NoQuote("the desk has no reference price for it")
        return walk


class DeskPricer:
    """The RFQ desk's :class:`~tradews.session.quote_desk.Pricer`.

    It reads the engine's live book (a quote is an offer, not an acknowledgement: execution
    re-checks everything) and the house's balances from the durable view (what the house is
    known to hold for certain, never funds of a batch still being written).
    """

    def __init__(
        self,
        engine: Engine,
        view: TradingView[Any],
        references: ReferencePrices,
        *,
        house_account_id: int,
        band_bps: Decimal = DEFAULT_BAND_BPS,
    ) -> None:
        self._engine = engine
        self._view = view
        self.references = references
        self._house = house_account_id
        self.band_bps = band_bps

    def accounts_in(self, symbol: str) -> Container[int]:
        book = self._engine.books.get(symbol)
        return _NO_ACCOUNTS if book is None else book.owners

    def price(
        self, inst: Instrument, lots: int, exclude: int | None, now_ms: int
    ) -> TwoWayPrice | NoQuote:
        symbol = inst.symbol
        book = self._engine.books.get(symbol)
        market = self._engine.markets.get(symbol)
        if book is None or market is None:
            return NoQuote(f"no price for {symbol}: it is not trading yet")
        spread = inst.spread_for(lots)
        if spread is None:
            return NoQuote(
                f"the desk quotes at most {inst.largest_quote} {symbol}", desk_limit=True
            )
        reference = self.references.get(inst, now_ms)
        if isinstance(reference, NoQuote):
            return NoQuote(f"no price for {symbol}: {reference.reason}")
        priced = rfq_prices(
            book.vwap(Side.BUY, lots, exclude),
            book.vwap(Side.SELL, lots, exclude),
            reference,
            spread,
            self.band_bps,
        )
        if isinstance(priced, NoQuote):
            return NoQuote(f"no price for {symbol}: {priced.reason}")
        # The house must be able to take either side: deliver the base asset if the client buys,
        # pay the quote asset if it sells.
        view, house = self._view, self._house
        if (
            view.available(house, inst.base) < lots * market.lot_atoms
            or view.available(house, inst.quote) < priced.buy_ticks * lots * market.notional_atoms
        ):
            return NoQuote(
                f"the desk cannot quote {inst.format_quantity(lots)} {symbol} now "
                "(its inventory does not cover it)",
                desk_limit=True,
            )
        return priced
