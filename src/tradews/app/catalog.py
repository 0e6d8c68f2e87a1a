"""The instruments a running server lists, reloaded when the database changes."""

from __future__ import annotations

from tradews.domain.instrument import Instrument


class Catalog:
    """In-memory view of the instruments table (implements ``session.ports.InstrumentCatalog``)."""

    def __init__(self, instruments: list[Instrument]) -> None:
        self._by_symbol: dict[str, Instrument] = {}
        self.replace(instruments)

    def replace(self, instruments: list[Instrument]) -> None:
        self._by_symbol = {i.symbol: i for i in instruments}
        self._all = sorted(self._by_symbol.values(), key=lambda i: i.symbol)

    def get(self, symbol: str) -> Instrument | None:
        return self._by_symbol.get(symbol)

    def all(self) -> list[Instrument]:
        return self._all
