"""The ``market_data`` stream: every listed instrument's last, bid, ask and 24h figures.

One snapshot is built per refresh and the same bytes go to every subscriber. Figures come from
the durable trading view: ``last`` and the 24h statistics from trades, ``bid`` and ``ask`` from
the best levels of the book.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from tradews.codecs.push import Push
from tradews.domain.instrument import Instrument
from tradews.session.view import TradingView

C = TypeVar("C")

MARKET_DATA_METHOD = "market_data"


class MarketDataDesk(Generic[C]):
    def __init__(self, view: TradingView[C], instruments: Callable[[], Iterable[Instrument]]):
        self._view = view
        self._instruments = instruments
        self._subscribers: dict[int, C] = {}
        self._seq = 0

    def subscribe(self, key: int, conn: C) -> None:
        self._subscribers[key] = conn

    def unsubscribe(self, key: int) -> bool:
        return self._subscribers.pop(key, None) is not None

    @property
    def subscribers(self) -> list[C]:
        return list(self._subscribers.values())

    def symbols(self) -> list[str]:
        return [inst.symbol for inst in self._instruments()]

    def snapshot(self, now_ms: int) -> Push:
        """Build the next ``market_data`` push (one ``seq`` per snapshot)."""
        self._seq += 1
        return Push(
            MARKET_DATA_METHOD, self._view.market_data(self._instruments(), self._seq, now_ms)
        )
