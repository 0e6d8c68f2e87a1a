"""Where RFQ prices come from: the order book's depth, with the demo reference as fallback."""

from __future__ import annotations

from fractions import Fraction

from tradews.domain.instrument import Instrument
from tradews.domain.orders import Side
from tradews.domain.pricing import TwoWayPrice, rfq_prices
from tradews.engine.engine import Engine


class BookPricer:
    """Prices ``lots`` of an instrument from the engine's book (volume-weighted over the
    quantity) plus the instrument's markup; a side too thin falls back to ``references``.

    It reads the engine's live book: a quote is an offer, not an acknowledgement, so pricing off
    state that is still being made durable is safe (execution re-checks everything).
    """

    def __init__(
        self, engine: Engine, references: dict[str, Fraction], *, fallback: bool = True
    ) -> None:
        self._engine = engine
        self.references = references
        self.fallback = fallback

    def __call__(self, inst: Instrument, lots: int) -> TwoWayPrice | None:
        book = self._engine.books.get(inst.symbol)
        if book is None:
            return None
        return rfq_prices(
            book.vwap(Side.BUY, lots),
            book.vwap(Side.SELL, lots),
            self.references.get(inst.symbol) if self.fallback else None,
            inst.spread_bps,
        )
