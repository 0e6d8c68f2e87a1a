"""RFQ quote streams: who asked for what, and when each one is owed a new firm quote.

Prices come from a ``pricer`` (the order book's depth plus a markup, or the demo reference price
where the book is too thin: see ``domain/pricing.py``). Every quote sent is remembered until it
expires, so ``quote_accept`` can execute it at exactly its terms.

A stream gets a new quote when its two-way price moves (after rounding on the tick), or when its
current quote is within ``refresh_ms`` of ``validUntil``: a client streaming quotes always holds
one that is still firm. A stream whose connection cannot take more data right now (a slow reader)
is skipped rather than queued: quotes are perishable, so it gets the fresh one once it drains,
and its ``seq`` never skips a number.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tradews.api.messages import Quote
from tradews.codecs import protobuf as pbwire
from tradews.codecs.base import Codec
from tradews.codecs.jsonrpc import JSON
from tradews.codecs.protobuf import PROTOBUF
from tradews.codecs.push import Push
from tradews.domain.instrument import Instrument
from tradews.domain.pricing import TwoWayPrice

C = TypeVar("C")

QUOTE_METHOD = "quote"


Pricer = Callable[[Instrument, int], TwoWayPrice | None]


@dataclass(frozen=True, slots=True)
class IssuedQuote:
    quote_id: str
    account_id: int
    symbol: str
    quantity_lots: int
    buy_ticks: int
    sell_ticks: int
    valid_until: int


@dataclass(slots=True, eq=False)
class QuoteStream(Generic[C]):
    conn: C
    subscription: str
    account_id: int
    instrument: Instrument
    quantity_lots: int
    codec: Codec = JSON
    seq: int = 0
    last_price: TwoWayPrice | None = None
    valid_until: int = 0
    quantity_text: str = field(default="", init=False)
    subscription_bytes: bytes = field(default=b"", init=False)
    subscription_field: bytes = field(default=b"", init=False)  # protobuf field 1
    key: tuple[str, int] = field(default=("", 0), init=False)

    def __post_init__(self) -> None:
        self.quantity_text = self.instrument.format_quantity(self.quantity_lots)
        self.subscription_bytes = self.subscription.encode()
        self.subscription_field = pbwire.text_field(1, self.subscription)
        self.key = (self.instrument.symbol, self.quantity_lots)


class QuoteDesk(Generic[C]):
    """Holds reference prices and every open quote stream; prices and emits quotes."""

    def __init__(
        self,
        *,
        ttl_ms: int,
        refresh_ms: int,
        new_quote_id: Callable[[], str],
        pricer: Pricer,
    ) -> None:
        if not 0 < refresh_ms < ttl_ms:
            raise ValueError("refresh_ms must be between 0 and ttl_ms")
        self.ttl_ms = ttl_ms
        self.refresh_ms = refresh_ms
        self._new_quote_id = new_quote_id
        self._pricer = pricer
        # quote id -> (account, symbol, lots, buy, sell, valid until); expiry in issue order
        self._issued: dict[str, tuple[int, str, int, int, int, int]] = {}
        self._expiry: deque[tuple[int, str]] = deque()
        self._streams: dict[int, QuoteStream[C]] = {}
        self.quotes_made = 0
        self.skipped_slow = 0

    # Prices --------------------------------------------------------------------------------

    def price(self, instrument: Instrument, quantity_lots: int) -> TwoWayPrice | None:
        """The firm two-way price for ``quantity_lots``, or None if there is no price."""
        return self._pricer(instrument, quantity_lots)

    def lookup(self, quote_id: str, now_ms: int) -> IssuedQuote | None:
        """A quote sent earlier and not long expired (expired ones are kept for one more
        lifetime so that accepting them says "expired" rather than "unknown")."""
        self._forget_expired(now_ms)
        terms = self._issued.get(quote_id)
        return None if terms is None else IssuedQuote(quote_id, *terms)

    def _forget_expired(self, now_ms: int) -> None:
        # Kept one lifetime past expiry, no longer: at thousands of quotes a second every
        # second of retention is memory, and work for the garbage collector.
        horizon = now_ms - self.ttl_ms
        expiry = self._expiry
        issued = self._issued
        while expiry and expiry[0][0] < horizon:
            del issued[expiry.popleft()[1]]

    # Streams -------------------------------------------------------------------------------

    def open(self, stream: QuoteStream[C], now_ms: int) -> bytes | None:
        """Register ``stream`` and return its first quote (None if no price is known yet)."""
        self._streams[id(stream)] = stream
        price = self.price(stream.instrument, stream.quantity_lots)
        if price is None:
            return None
        return self._quote(stream, price, self._middle(stream, price), self._ends(now_ms), now_ms)

    def close(self, stream: QuoteStream[C]) -> None:
        self._streams.pop(id(stream), None)

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def due(self, now_ms: int, writable: Callable[[C], bool]) -> Iterable[tuple[C, bytes]]:
        """Yield ``(conn, frame)`` for every stream owed a new quote at ``now_ms``."""
        self._forget_expired(now_ms)
        # Everything that is the same for many streams is priced, formatted and encoded once
        # per pulse: the price per (symbol, quantity), and the frame's bytes around the parts
        # that differ per stream (subscription, quote id, seq).
        prices: dict[tuple[str, int], tuple[TwoWayPrice, tuple[bytes, bytes]] | None] = {}
        ends = self._ends(now_ms)
        refresh_at = self.refresh_ms
        for stream in list(self._streams.values()):
            key = stream.key
            if key in prices:
                priced = prices[key]
            else:
                price = self.price(stream.instrument, stream.quantity_lots)
                priced = prices[key] = (
                    None if price is None else (price, self._middle(stream, price))
                )
            if priced is None:
                continue
            price, middle = priced
            if price == stream.last_price and now_ms < stream.valid_until - refresh_at:
                continue
            if not writable(stream.conn):
                self.skipped_slow += 1
                continue
            yield stream.conn, self._quote(stream, price, middle, ends, now_ms)

    def _ends(self, now_ms: int) -> tuple[bytes, bytes, bytes, bytes]:
        """What every quote of a pulse shares after its id: JSON, then protobuf pieces."""
        valid_until = now_ms + self.ttl_ms
        return (
            b'","validUntil":%d,"seq":' % valid_until,
            b',"timestamp":%d}}' % now_ms,
            pbwire.int_field(7, valid_until),
            pbwire.int_field(9, now_ms),
        )

    @staticmethod
    def _middle(stream: QuoteStream[C], price: TwoWayPrice) -> tuple[bytes, bytes]:
        """What quotes of one symbol, size and price share, in JSON and in protobuf."""
        inst = stream.instrument
        buy = inst.format_price(price.buy_ticks)
        sell = inst.format_price(price.sell_ticks)
        json = (
            f'","symbol":"{inst.symbol}","buyPrice":"{buy}","sellPrice":"{sell}",'
            f'"quantity":"{stream.quantity_text}","quoteId":"'
        ).encode()
        proto = b"".join(
            (
                pbwire.text_field(2, inst.symbol),
                pbwire.text_field(3, buy),
                pbwire.text_field(4, sell),
                pbwire.text_field(5, stream.quantity_text),
            )
        )
        return json, proto

    def _quote(
        self,
        stream: QuoteStream[C],
        price: TwoWayPrice,
        middle: tuple[bytes, bytes],
        ends: tuple[bytes, bytes, bytes, bytes],
        now_ms: int,
    ) -> bytes:
        """Record a firm quote for ``stream`` and return its notification frame.

        The frame is the JSON encoding of :class:`~tradews.api.messages.Quote` (fields in its
        order) assembled from pre-encoded pieces; a test holds it equal to msgspec's encoding.
        All the text spliced in is ASCII without characters JSON escapes (symbols, decimal
        strings, and ids this server makes).
        """
        seq = stream.seq = stream.seq + 1
        self.quotes_made += 1
        stream.last_price = price
        valid_until = stream.valid_until = now_ms + self.ttl_ms
        quote_id = self._new_quote_id()
        self._issued[quote_id] = (
            stream.account_id,
            stream.key[0],
            stream.quantity_lots,
            price.buy_ticks,
            price.sell_ticks,
            valid_until,
        )
        self._expiry.append((valid_until, quote_id))
        if stream.codec is PROTOBUF:
            return pbwire.quote_frame(
                stream.subscription_field, middle[1], quote_id, ends[2], seq, ends[3]
            )
        if stream.codec is not JSON:  # any other codec: its generic encoding
            inst = stream.instrument
            quote = Quote(
                subscription=stream.subscription,
                symbol=inst.symbol,
                buy_price=inst.format_price(price.buy_ticks),
                sell_price=inst.format_price(price.sell_ticks),
                quantity=stream.quantity_text,
                quote_id=quote_id,
                valid_until=valid_until,
                seq=seq,
                timestamp=now_ms,
            )
            return stream.codec.push(Push(QUOTE_METHOD, quote))
        return b"".join(
            (_HEAD, stream.subscription_bytes, middle[0], quote_id.encode(), ends[0], b"%d" % seq,
             ends[1])
        )  # fmt: skip


_HEAD = b'{"jsonrpc":"2.0","method":"' + QUOTE_METHOD.encode() + b'","params":{"subscription":"'
