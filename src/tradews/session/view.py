"""What clients may see: trading state as of the last *durable* event, and who watches what.

The engine's own state runs ahead of the disk by up to one journal batch. Everything a client
reads (book snapshots, open orders, balances) and every stream message comes from this view
instead, which moves only when the engine host publishes a durable batch. So a snapshot and the
deltas that follow it always line up, and nothing unacknowledged leaks out.

Channels: ``book.SYMBOL``, ``trades.SYMBOL``, ``ticker.SYMBOL`` (public), ``orders`` and
``balances`` (private to the subscriber's account, numbered and resumable: ``session/streams.py``).
"""

from __future__ import annotations

import bisect
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
from tradews.session.formats import public_trade
from tradews.session.ports import InstrumentCatalog
from tradews.session.streams import PRIVATE_CHANNELS, PrivateStreams, StreamRecord, stream_key

C = TypeVar("C")

PUBLIC_KINDS = ("book", "trades", "ticker")
BUY, SELL = 1, 2
# The depths a book subscription may ask for; each (symbol, depth) is one group of subscribers
# whose messages are built once, whoever and however many they are.
BOOK_DEPTHS = (10, 25, 100, 500)
DEFAULT_BOOK_DEPTH = 100


class _Side:
    """One side of a book: quantity per price, and the prices kept sorted best first."""

    __slots__ = ("_keys", "_sign", "levels")

    def __init__(self, sign: int) -> None:
        self._sign = sign  # -1 for bids (highest first), 1 for asks (lowest first)
        self.levels: dict[int, int] = {}
        self._keys: list[int] = []  # sign * price, ascending

    def set(self, price: int, quantity: int) -> None:
        levels = self.levels
        if quantity:
            if price not in levels:
                bisect.insort(self._keys, self._sign * price)
            levels[price] = quantity
        elif price in levels:
            del levels[price]
            key = self._sign * price
            del self._keys[bisect.bisect_left(self._keys, key)]

    def replace(self, levels: Iterable[tuple[int, int]]) -> None:
        self.levels = {p: q for p, q in levels if q}
        self._keys = sorted(self._sign * p for p in self.levels)

    def top(self, depth: int | None = None) -> list[tuple[int, int]]:
        """The best ``depth`` levels (all without a depth), best first."""
        sign, levels = self._sign, self.levels
        keys = self._keys if depth is None else self._keys[:depth]
        return [(sign * k, levels[sign * k]) for k in keys]

    def best(self) -> tuple[int, int] | None:
        if not self._keys:
            return None
        price = self._sign * self._keys[0]
        return price, self.levels[price]

    def within(self, price: int, depth: int) -> bool:
        """Whether a level at ``price`` is (or would be) among the best ``depth``."""
        keys = self._keys
        return len(keys) <= depth or self._sign * price <= keys[depth - 1]


class _Book:
    __slots__ = ("asks", "bids", "groups", "seq")

    def __init__(self) -> None:
        self.bids = _Side(-1)
        self.asks = _Side(1)
        self.seq = 0
        self.groups: dict[int, _DepthGroup] = {}

    def side(self, side: int) -> _Side:
        return self.bids if side == BUY else self.asks


class _DepthGroup:
    """What the subscribers of one (symbol, depth) hold: the best ``depth`` levels as of their
    last message (``seq``), and that message's snapshot form for newcomers, built once."""

    __slots__ = ("asks", "bids", "depth", "seq", "snapshot")

    def __init__(self, book: _Book, depth: int) -> None:
        self.depth = depth
        self.bids = dict(book.bids.top(depth))
        self.asks = dict(book.asks.top(depth))
        self.seq = book.seq
        self.snapshot: Push | None = None


class TradingView(Generic[C]):
    def __init__(
        self, catalog: InstrumentCatalog, streams: PrivateStreams[C] | None = None
    ) -> None:
        self._catalog = catalog
        # The private channels, orders and balances: numbered, buffered and resumable (without
        # storage, only as far back as the buffer reaches).
        self.streams: PrivateStreams[C] = streams or PrivateStreams(catalog)
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
        book.bids.replace(bids)
        book.asks.replace(asks)
        book.seq = seq

    def seed_balance(self, account_id: int, asset: str, available: int, locked: int) -> None:
        self._balances.setdefault(account_id, {})[asset] = (available, locked)

    def seed_order(self, e: OrderUpdated) -> None:
        self._open.setdefault(e.account_id, {})[e.order_id] = e

    def seed_trade(self, symbol: str, price: int, quantity: int, at: int) -> None:
        self._stats_of(symbol).observe(price, quantity, at)

    def seed_seq(self, seq: int) -> None:
        """The engine seq the view starts from: every record stored up to it is published."""
        self.seq = self.streams.seq = seq

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
        return (None, None) if book is None else (book.bids.best(), book.asks.best())

    def stats(self, symbol: str, now_ms: int) -> StatsSnapshot | None:
        stats = self._stats.get(symbol)
        return None if stats is None else stats.snapshot(now_ms)

    # Subscriptions ------------------------------------------------------------------------

    def channel_key(self, channel: str, account_id: int, depth: int | None = None) -> str:
        """Validate ``channel`` and return the key it is filed under; raises ApiError.

        ``depth`` is for book channels only (one of ``BOOK_DEPTHS``; default 100)."""
        if channel in PRIVATE_CHANNELS:
            key = stream_key(channel, account_id)
        else:
            kind, _, symbol = channel.partition(".")
            if kind not in PUBLIC_KINDS or not symbol:
                raise ApiError(
                    ErrorCode.UNKNOWN_CHANNEL,
                    f"unknown channel {channel!r}: use book.SYMBOL, trades.SYMBOL, "
                    "ticker.SYMBOL, orders or balances",
                )
            if self._catalog.get(symbol) is None:
                raise ApiError(ErrorCode.UNKNOWN_SYMBOL, self._catalog.unknown(symbol))
            if kind == "book":
                depth = DEFAULT_BOOK_DEPTH if depth is None else depth
                if depth not in BOOK_DEPTHS:
                    raise ApiError(
                        ErrorCode.INVALID_PARAMS,
                        data=f"depth must be one of {', '.join(map(str, BOOK_DEPTHS))}",
                    )
                return f"{channel}@{depth}"
            key = channel
        if depth is not None:
            raise ApiError(ErrorCode.INVALID_PARAMS, data="depth applies to book channels only")
        return key

    @staticmethod
    def private(key: str) -> tuple[str, int] | None:
        """``(channel, account_id)`` of a private channel's key; None for a public one."""
        channel, _, account = key.partition("#")
        return (channel, int(account)) if account else None

    def subscribe(self, key: str, sub_id: int, conn: C, now_ms: int) -> list[Push]:
        """Add a subscriber to a public channel; return what it gets first (a book snapshot,
        the current ticker). Private channels are subscribed to through :attr:`streams`."""
        self._subs.setdefault(key, {})[sub_id] = conn
        return self.current(key, now_ms)

    def current(self, key: str, now_ms: int) -> list[Push]:
        """What a subscriber of ``key`` gets to start with (or after falling behind)."""
        if key.startswith("book."):
            symbol, _, depth = key[5:].partition("@")
            return [self._book_snapshot(symbol, int(depth))]
        if key.startswith("ticker."):
            return [self._ticker(key[7:], now_ms)]
        if key.startswith("balances#"):
            account_id = int(key.partition("#")[2])
            return [Push("balances", b) for b in self.balances(account_id)]
        return []

    def unsubscribe(self, key: str, sub_id: int) -> bool:
        private = self.private(key)
        if private is not None:
            return self.streams.unsubscribe(*private, sub_id)
        subs = self._subs.get(key)
        if subs is None or sub_id not in subs:
            return False
        del subs[sub_id]
        if not subs:
            del self._subs[key]
            if key.startswith("book."):  # the last of its group: stop maintaining the group
                symbol, _, depth = key[5:].partition("@")
                self._book(symbol).groups.pop(int(depth), None)
        return True

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subs.values()) + self.streams.subscriber_count()

    # Publishing ---------------------------------------------------------------------------

    def apply(
        self,
        events: Sequence[object],
        send: Callable[[C, Push], None],
        records: Sequence[StreamRecord] = (),
    ) -> None:
        """Move the view forward by one command's durable events and notify subscribers.
        ``records`` are the command's private stream messages, numbered by the journal."""
        book_changes: dict[str, list[BookChanged]] = {}
        seq = self.seq
        for e in events:
            if isinstance(e, BookChanged):
                changes = book_changes.get(e.symbol)
                if changes is None:
                    book_changes[e.symbol] = [e]
                else:
                    changes.append(e)
            elif isinstance(e, OrderUpdated):
                self._on_order(e)
            elif isinstance(e, TradeExecuted):
                self._on_trade(e, send)
            elif isinstance(e, BalanceChanged):
                balances = self._balances.get(e.account_id)
                if balances is None:
                    balances = self._balances[e.account_id] = {}
                balances[e.asset] = (e.available, e.locked)
            e_seq = getattr(e, "seq", 0)
            if e_seq > seq:
                seq = e_seq
        self.seq = seq
        if records:
            publish = self.streams.publish
            for record in records:
                publish(record, send)
        for symbol, changes in book_changes.items():
            book = self._book(symbol)
            for c in changes:
                book.side(c.side).set(c.price, c.quantity)
            book.seq = changes[0].seq
            self._dirty_tickers.add(symbol)
            for group in list(book.groups.values()):
                delta = self._book_delta(symbol, book, group, changes)
                if delta is None:
                    continue
                subs = self._subs.get(f"book.{symbol}@{group.depth}")
                if subs:
                    for conn in subs.values():
                        send(conn, delta)

    def _on_order(self, e: OrderUpdated) -> None:
        mine = self._open.get(e.account_id)
        if mine is None:
            mine = self._open[e.account_id] = {}
        if e.status in ("new", "partially_filled"):
            mine[e.order_id] = e
        else:
            mine.pop(e.order_id, None)

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

    def _group(self, symbol: str, depth: int) -> _DepthGroup:
        book = self._book(symbol)
        group = book.groups.get(depth)
        if group is None:
            group = book.groups[depth] = _DepthGroup(book, depth)
        return group

    def _book_snapshot(self, symbol: str, depth: int) -> Push:
        """The snapshot a new subscriber of (symbol, depth) gets: built once per change of
        what that group holds, however many subscribe."""
        group = self._group(symbol, depth)
        if group.snapshot is None:
            bids = sorted(group.bids.items(), key=lambda kv: -kv[0])
            asks = sorted(group.asks.items())
            group.snapshot = self._book_push(symbol, group.seq, None, bids, asks, bids, asks)
        return group.snapshot

    def _book_delta(
        self, symbol: str, book: _Book, group: _DepthGroup, changes: list[BookChanged]
    ) -> Push | None:
        """The delta that takes a group from what it holds to the best ``depth`` levels now;
        None if the changes were all deeper than it looks."""
        depth = group.depth
        if not any(
            book.side(c.side).within(c.price, depth)
            or c.price in (group.bids if c.side == BUY else group.asks)
            for c in changes
        ):
            return None
        bids, asks = book.bids.top(depth), book.asks.top(depth)
        out_bids = _diff(group.bids, bids)
        out_asks = _diff(group.asks, asks)
        if not out_bids and not out_asks:
            return None
        prev = group.seq
        group.bids, group.asks, group.seq = dict(bids), dict(asks), book.seq
        group.snapshot = None
        return self._book_push(symbol, book.seq, prev, out_bids, out_asks, bids, asks)

    def _book_push(
        self,
        symbol: str,
        seq: int,
        prev: int | None,
        bids: list[tuple[int, int]],
        asks: list[tuple[int, int]],
        book_bids: list[tuple[int, int]],
        book_asks: list[tuple[int, int]],
    ) -> Push:
        """A ``book`` message: a snapshot when ``prev`` is None, else a delta from ``prev``;
        the checksum is over the book the subscriber holds after it."""
        inst = self._catalog.get(symbol)
        assert inst is not None
        fp, fq = inst.format_price, inst.format_quantity
        message = BookUpdate(
            channel=f"book.{symbol}",
            type="snapshot" if prev is None else "delta",
            symbol=symbol,
            seq=seq,
            prev_seq=prev,
            bids=[[fp(p), fq(q)] for p, q in bids],
            asks=[[fp(p), fq(q)] for p, q in asks],
            checksum=book_checksum(book_bids, book_asks),
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


def _diff(held: dict[int, int], now: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The levels that take ``held`` to ``now``: changed or new ones, and gone ones at 0."""
    out = [(p, q) for p, q in now if held.get(p) != q]
    current = {p for p, _ in now}
    out.extend((p, 0) for p in held if p not in current)
    return out


def _change(snap: StatsSnapshot | None) -> tuple[int | None, str | None]:
    if snap is None:
        return None, None
    change = snap.last - snap.open
    pct = (Decimal(change) * 100 / Decimal(snap.open)).quantize(Decimal("0.01"))
    return change, f"{pct:f}"
