"""What clients may see: trading state as of the last *durable* event, and who watches what.

The engine's own state runs ahead of the disk by up to one journal batch. Everything a client
reads (book snapshots, open orders, balances) and every stream message comes from this view
instead, which moves only when the engine host publishes a durable batch. So a snapshot and the
deltas that follow it always line up, and nothing unacknowledged leaks out.

Channels: ``book.SYMBOL``, ``trades.SYMBOL``, ``ticker.SYMBOL`` (public), ``orders`` and
``balances`` (private to the subscriber's account).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Generic, TypeVar

from tradews.api.checksum import book_checksum
from tradews.api.errors import ApiError, ErrorCode
from tradews.api.messages import Balance, BookUpdate, InstrumentMarketData, MarketData, Ticker
from tradews.codecs.push import Push
from tradews.domain.instrument import Instrument
from tradews.domain.ledger import format_atoms
from tradews.domain.market_stats import RollingStats, StatsSnapshot
from tradews.engine.events import BalanceChanged, BookChanged, OrderUpdated, TradeExecuted
from tradews.session.formats import fills_for, order_state, public_trade
from tradews.session.ports import InstrumentCatalog

C = TypeVar("C")

PUBLIC_KINDS = ("book", "trades", "ticker")
PRIVATE_CHANNELS = ("orders", "balances")
BUY, SELL = 1, 2


class _Book:
    __slots__ = ("asks", "bids", "seq")

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.seq = 0

    def sides(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        bids = sorted(self.bids.items(), key=lambda kv: -kv[0])
        asks = sorted(self.asks.items())
        return bids, asks

    def best(self) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        bid = max(self.bids.items(), default=None)
        ask = min(self.asks.items(), default=None)
        return bid, ask


class TradingView(Generic[C]):
    def __init__(self, catalog: InstrumentCatalog) -> None:
        self._catalog = catalog
        self._books: dict[str, _Book] = {}
        self._stats: dict[str, RollingStats] = {}
        self._balances: dict[int, dict[str, tuple[int, int]]] = {}
        self._open: dict[int, dict[int, OrderUpdated]] = {}
        self._subs: dict[str, dict[int, C]] = {}
        self._dirty_tickers: set[str] = set()
        self.seq = 0

    # Seeding (after replay, before serving) -----------------------------------------------

    def seed_book(self, symbol: str, bids: Iterable[tuple[int, int]],
                  asks: Iterable[tuple[int, int]], seq: int) -> None:  # fmt: skip
        book = self._book(symbol)
        book.bids = dict(bids)
        book.asks = dict(asks)
        book.seq = seq

    def seed_balance(self, account_id: int, asset: str, available: int, locked: int) -> None:
        self._balances.setdefault(account_id, {})[asset] = (available, locked)

    def seed_order(self, e: OrderUpdated) -> None:
        self._open.setdefault(e.account_id, {})[e.order_id] = e

    def seed_trade(self, symbol: str, price: int, quantity: int, at: int) -> None:
        self._stats_of(symbol).observe(price, quantity, at)

    # Reading ------------------------------------------------------------------------------

    def balances(self, account_id: int) -> list[Balance]:
        rows = self._balances.get(account_id, {})
        return [
            Balance(asset=a, available=format_atoms(v[0]), locked=format_atoms(v[1]))
            for a, v in sorted(rows.items())
        ]

    def available(self, account_id: int, asset: str) -> int:
        """An account's available (unlocked) balance of ``asset``, in atoms."""
        return self._balances.get(account_id, {}).get(asset, (0, 0))[0]

    def open_orders(self, account_id: int, symbol: str | None) -> list[OrderUpdated]:
        orders = self._open.get(account_id, {}).values()
        return sorted(
            (o for o in orders if symbol is None or o.symbol == symbol), key=lambda o: o.order_id
        )

    def open_order(self, account_id: int, order_id: int) -> OrderUpdated | None:
        return self._open.get(account_id, {}).get(order_id)

    def best(self, symbol: str) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        book = self._books.get(symbol)
        return (None, None) if book is None else book.best()

    def stats(self, symbol: str, now_ms: int) -> StatsSnapshot | None:
        stats = self._stats.get(symbol)
        return None if stats is None else stats.snapshot(now_ms)

    # Subscriptions ------------------------------------------------------------------------

    def channel_key(self, channel: str, account_id: int) -> str:
        """Validate ``channel`` and return the key it is filed under; raises ApiError."""
        if channel in PRIVATE_CHANNELS:
            return f"{channel}#{account_id}"
        kind, _, symbol = channel.partition(".")
        if kind not in PUBLIC_KINDS or not symbol:
            raise ApiError(
                ErrorCode.UNKNOWN_CHANNEL,
                f"unknown channel {channel!r}: use book.SYMBOL, trades.SYMBOL, ticker.SYMBOL, "
                "orders or balances",
            )
        if self._catalog.get(symbol) is None:
            raise ApiError(ErrorCode.UNKNOWN_SYMBOL, f"unknown symbol {symbol!r}")
        return channel

    def subscribe(self, key: str, sub_id: int, conn: C, now_ms: int) -> list[Push]:
        """Add a subscriber; return what it gets first (a book snapshot, current balances)."""
        self._subs.setdefault(key, {})[sub_id] = conn
        if key.startswith("book."):
            return [self._book_message(key[5:], snapshot=True, changes=None)]
        if key.startswith("ticker."):
            return [self._ticker(key[7:], now_ms)]
        if key.startswith("balances#"):
            account_id = int(key.partition("#")[2])
            return [Push("balances", b) for b in self.balances(account_id)]
        return []

    def unsubscribe(self, key: str, sub_id: int) -> bool:
        subs = self._subs.get(key)
        if subs is None or sub_id not in subs:
            return False
        del subs[sub_id]
        if not subs:
            del self._subs[key]
        return True

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subs.values())

    # Publishing ---------------------------------------------------------------------------

    def apply(self, events: Sequence[object], send: Callable[[C, Push], None]) -> None:
        """Move the view forward by one command's durable events and notify subscribers."""
        book_changes: dict[str, list[BookChanged]] = {}
        for e in events:
            if isinstance(e, BookChanged):
                book_changes.setdefault(e.symbol, []).append(e)
            elif isinstance(e, OrderUpdated):
                self._on_order(e, send)
            elif isinstance(e, TradeExecuted):
                self._on_trade(e, send)
            elif isinstance(e, BalanceChanged):
                self._balances.setdefault(e.account_id, {})[e.asset] = (e.available, e.locked)
                subs = self._subs.get(f"balances#{e.account_id}")
                if subs:
                    frame = Push(
                        "balances",
                        Balance(
                            asset=e.asset,
                            available=format_atoms(e.available),
                            locked=format_atoms(e.locked),
                        ),
                    )
                    for conn in subs.values():
                        send(conn, frame)
            seq = getattr(e, "seq", 0)
            if seq > self.seq:
                self.seq = seq
        for symbol, changes in book_changes.items():
            book = self._book(symbol)
            for c in changes:
                side = book.bids if c.side == BUY else book.asks
                if c.quantity:
                    side[c.price] = c.quantity
                else:
                    side.pop(c.price, None)
            prev = book.seq
            book.seq = changes[0].seq
            self._dirty_tickers.add(symbol)
            subs = self._subs.get(f"book.{symbol}")
            if subs:
                frame = self._book_message(symbol, snapshot=False, changes=changes, prev=prev)
                for conn in subs.values():
                    send(conn, frame)

    def _on_order(self, e: OrderUpdated, send: Callable[[C, Push], None]) -> None:
        mine = self._open.setdefault(e.account_id, {})
        if e.status in ("new", "partially_filled"):
            mine[e.order_id] = e
        else:
            mine.pop(e.order_id, None)
        subs = self._subs.get(f"orders#{e.account_id}")
        if subs:
            inst = self._catalog.get(e.symbol)
            assert inst is not None
            frame = Push("orders", order_state(e, inst))
            for conn in subs.values():
                send(conn, frame)

    def _on_trade(self, t: TradeExecuted, send: Callable[[C, Push], None]) -> None:
        inst = self._catalog.get(t.symbol)
        assert inst is not None
        self._stats_of(t.symbol).observe(t.price, t.quantity, t.at)
        self._dirty_tickers.add(t.symbol)
        subs = self._subs.get(f"trades.{t.symbol}")
        if subs:
            frame = Push("trades", public_trade(t, inst))
            for conn in subs.values():
                send(conn, frame)
        accounts = {t.maker_account_id, t.taker_account_id}
        for account_id in accounts:
            subs = self._subs.get(f"orders#{account_id}")
            if not subs:
                continue
            for fill in fills_for(account_id, t, inst):
                frame = Push("fills", fill)
                for conn in subs.values():
                    send(conn, frame)

    def publish_tickers(self, now_ms: int, send: Callable[[C, Push], None]) -> None:
        """Send ``ticker.SYMBOL`` to subscribers of the symbols that changed since last time."""
        dirty, self._dirty_tickers = self._dirty_tickers, set()
        for symbol in dirty:
            subs = self._subs.get(f"ticker.{symbol}")
            if subs:
                frame = self._ticker(symbol, now_ms)
                for conn in subs.values():
                    send(conn, frame)

    # Messages -----------------------------------------------------------------------------

    def _book(self, symbol: str) -> _Book:
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = _Book()
        return book

    def _stats_of(self, symbol: str) -> RollingStats:
        stats = self._stats.get(symbol)
        if stats is None:
            stats = self._stats[symbol] = RollingStats()
        return stats

    def _book_message(
        self,
        symbol: str,
        *,
        snapshot: bool,
        changes: list[BookChanged] | None,
        prev: int | None = None,
    ) -> Push:
        inst = self._catalog.get(symbol)
        assert inst is not None
        book = self._book(symbol)
        bids, asks = book.sides()
        fp, fq = inst.format_price, inst.format_quantity
        if snapshot or changes is None:
            out_bids = [[fp(p), fq(q)] for p, q in bids]
            out_asks = [[fp(p), fq(q)] for p, q in asks]
        else:
            out_bids = [[fp(c.price), fq(c.quantity)] for c in changes if c.side == BUY]
            out_asks = [[fp(c.price), fq(c.quantity)] for c in changes if c.side == SELL]
        message = BookUpdate(
            channel=f"book.{symbol}",
            type="snapshot" if snapshot else "delta",
            symbol=symbol,
            seq=book.seq,
            prev_seq=None if snapshot else prev,
            bids=out_bids,
            asks=out_asks,
            checksum=book_checksum(bids, asks),
        )
        return Push("book", message)

    def _ticker(self, symbol: str, now_ms: int) -> Push:
        inst = self._catalog.get(symbol)
        assert inst is not None
        return Push("ticker", self.ticker(inst, now_ms, f"ticker.{symbol}"))

    def ticker(self, inst: Instrument, now_ms: int, channel: str) -> Ticker:
        bid, ask = self.best(inst.symbol)
        snap = self.stats(inst.symbol, now_ms)
        fp, fq = inst.format_price, inst.format_quantity
        change, pct = _change(snap)
        return Ticker(
            channel=channel,
            symbol=inst.symbol,
            last=fp(snap.last) if snap else None,
            bid=fp(bid[0]) if bid else None,
            bid_size=fq(bid[1]) if bid else None,
            ask=fp(ask[0]) if ask else None,
            ask_size=fq(ask[1]) if ask else None,
            open24h=fp(snap.open) if snap else None,
            high24h=fp(snap.high) if snap else None,
            low24h=fp(snap.low) if snap else None,
            volume24h=fq(snap.volume if snap else 0),
            change24h=fp(change) if change is not None else None,
            change24h_pct=pct,
            timestamp=now_ms,
        )

    def market_row(self, inst: Instrument, now_ms: int) -> InstrumentMarketData:
        t = self.ticker(inst, now_ms, "")
        return InstrumentMarketData(
            symbol=t.symbol,
            last=t.last,
            bid=t.bid,
            ask=t.ask,
            open24h=t.open24h,
            high24h=t.high24h,
            low24h=t.low24h,
            volume24h=t.volume24h,
            change24h=t.change24h,
            change24h_pct=t.change24h_pct,
            timestamp=now_ms,
        )

    def market_data(self, instruments: Iterable[Instrument], seq: int, now_ms: int) -> MarketData:
        return MarketData(
            seq=seq,
            timestamp=now_ms,
            instruments=[self.market_row(i, now_ms) for i in instruments],
        )


def _change(snap: StatsSnapshot | None) -> tuple[int | None, str | None]:
    if snap is None:
        return None, None
    change = snap.last - snap.open
    pct = (Decimal(change) * 100 / Decimal(snap.open)).quantize(Decimal("0.01"))
    return change, f"{pct:f}"
