"""The ``market_data`` stream: every listed instrument's last, bid, ask and 24h figures.

One snapshot is built per refresh and the same bytes go to every subscriber. Until the order book
exists the ``last`` price is the reference price rounded to the tick and the 24h volume is zero;
bid and ask are the desk's firm prices at each instrument's standard quote size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Generic, TypeVar

from tradews.api.messages import InstrumentMarketData, MarketData
from tradews.codecs.jsonrpc import encode_notification
from tradews.domain.instrument import Instrument
from tradews.domain.market_stats import RollingStats
from tradews.session.quote_desk import QuoteDesk

C = TypeVar("C")

MARKET_DATA_METHOD = "market_data"


class MarketDataDesk(Generic[C]):
    def __init__(self, quotes: QuoteDesk[C], instruments: Callable[[], Iterable[Instrument]]):
        self._quotes = quotes
        self._instruments = instruments
        self._stats: dict[str, RollingStats] = {}
        self._subscribers: dict[int, C] = {}
        self._seq = 0

    def observe(self, now_ms: int) -> None:
        """Record the current reference prices into the rolling 24h statistics."""
        for inst in self._instruments():
            ref = self._quotes.reference(inst.symbol)
            if ref is None:
                continue
            stats = self._stats.get(inst.symbol)
            if stats is None:
                stats = self._stats[inst.symbol] = RollingStats()
            stats.observe(round(ref), 0, now_ms)

    def subscribe(self, key: int, conn: C) -> None:
        self._subscribers[key] = conn

    def unsubscribe(self, key: int) -> bool:
        return self._subscribers.pop(key, None) is not None

    @property
    def subscribers(self) -> list[C]:
        return list(self._subscribers.values())

    def symbols(self) -> list[str]:
        return [inst.symbol for inst in self._instruments()]

    def snapshot(self, now_ms: int) -> bytes:
        """Build the next ``market_data`` notification (one ``seq`` per snapshot)."""
        self._seq += 1
        rows = [self._row(inst, now_ms) for inst in self._instruments()]
        return encode_notification(
            MARKET_DATA_METHOD, MarketData(seq=self._seq, timestamp=now_ms, instruments=rows)
        )

    def _row(self, inst: Instrument, now_ms: int) -> InstrumentMarketData:
        price = self._quotes.price(inst, inst.quote_size_lots)
        stats = self._stats.get(inst.symbol)
        snap = stats.snapshot(now_ms) if stats is not None else None
        fmt = inst.format_price
        if snap is None:
            return InstrumentMarketData(
                symbol=inst.symbol,
                last=None,
                bid=fmt(price.buy_ticks) if price else None,
                ask=fmt(price.sell_ticks) if price else None,
                open24h=None,
                high24h=None,
                low24h=None,
                volume24h=inst.format_quantity(0),
                change24h=None,
                change24h_pct=None,
                timestamp=now_ms,
            )
        change = snap.last - snap.open
        pct = (Decimal(change) * 100 / Decimal(snap.open)).quantize(Decimal("0.01"))
        return InstrumentMarketData(
            symbol=inst.symbol,
            last=fmt(snap.last),
            bid=fmt(price.buy_ticks) if price else None,
            ask=fmt(price.sell_ticks) if price else None,
            open24h=fmt(snap.open),
            high24h=fmt(snap.high),
            low24h=fmt(snap.low),
            volume24h=inst.format_quantity(snap.volume),
            change24h=fmt(change),
            change24h_pct=f"{pct:f}",
            timestamp=now_ms,
        )
