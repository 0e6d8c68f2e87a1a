"""The instruments a running server lists, reloaded when the database changes."""

from __future__ import annotations

from tradews.domain.instrument import Instrument


class Catalog:
    """In-memory view of the instruments table (implements ``session.ports.InstrumentCatalog``)."""

    def __init__(
        self, instruments: list[Instrument], elsewhere: dict[str, str] | None = None
    ) -> None:
        self._by_symbol: dict[str, Instrument] = {}
        self._elsewhere: dict[str, str] = {}
        self.replace(instruments, elsewhere)

    def replace(
        self, instruments: list[Instrument], elsewhere: dict[str, str] | None = None
    ) -> None:
        """``elsewhere``: the symbols other engine shards trade, with their shard's name."""
        self._by_symbol = {i.symbol: i for i in instruments}
        self._all = sorted(self._by_symbol.values(), key=lambda i: i.symbol)
        if elsewhere is not None:
            self._elsewhere = {s: n for s, n in elsewhere.items() if s not in self._by_symbol}

    def unknown(self, symbol: str) -> str:
        shard = self._elsewhere.get(symbol)
        if shard is None:
            return f"unknown symbol {symbol!r}"
        return (
            f"{symbol} is traded by another engine shard ({shard}): connect to a gateway of "
            "that shard"
        )

    def get(self, symbol: str) -> Instrument | None:
        return self._by_symbol.get(symbol)

    def all(self) -> list[Instrument]:
        return self._all
