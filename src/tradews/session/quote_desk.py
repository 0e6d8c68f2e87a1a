"""RFQ quote streams: who asked for what, and when each one is owed a new firm quote.

Prices come from a :class:`Pricer` (a reference price, the order book without the requester's
own orders, the house's inventory: see ``domain/pricing.py`` and ``app/pricing.py``). Every quote
sent is remembered until it expires, so ``quote_accept`` can execute it at exactly its terms.
The record costs next to nothing per quote: a stream keeps what is the same for all its quotes
(account, symbol, size) once, and one reference per quote, by seq, to the (buy, sell, valid
until) that every stream quoted at that price in that pulse shares. No object is made per quote
besides its frame, so fan-out at thousands of quotes a second does not feed the collector.

A stream gets a new quote when its two-way price moves (after rounding on the tick), or when its
current quote is within ``refresh_ms`` of ``validUntil``: a client streaming quotes always holds
one that is still firm. While the desk cannot price or fill a stream's quantity it sends that
stream nothing, and resumes when it can. A stream whose connection cannot take more data right
now (a slow reader) is skipped rather than queued: quotes are perishable, so it gets the fresh
one once it drains. Either way its ``seq`` never skips a number.

Streams are kept per connection, and a pulse hands over all of one connection's quotes together
(:meth:`QuoteDesk.due_per_connection`): a client streaming three symbols gets its three quotes
in one write, one system call, rather than three.

Quote ids are ``<stream token>-<seq>``: the token is a keyed permutation of the desk's stream
counter (distinct for every stream, and meaningless without the key), the seq is what the client
already sees. So an id tells a client nothing about anyone else's activity.
"""

from __future__ import annotations

import hashlib
import itertools
from bisect import bisect_left
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from tradews.api.messages import Quote
from tradews.codecs import protobuf as pbwire
from tradews.codecs.base import Codec
from tradews.codecs.jsonrpc import JSON
from tradews.codecs.protobuf import PROTOBUF
from tradews.codecs.push import Push
from tradews.domain.instrument import Instrument
from tradews.domain.pricing import NoQuote, TwoWayPrice

C = TypeVar("C")

QUOTE_METHOD = "quote"
_HEAD = b'{"jsonrpc":"2.0","method":"' + QUOTE_METHOD.encode() + b'","params":{"subscription":"'
# How often (ms) the records of quotes expired for a lifetime are let go: a pass over the streams.
SWEEP_MS = 1_000
# A quote id's seq has at most this many digits (the ids a client sends back are not trusted).
MAX_SEQ_DIGITS = 18

# What a quote commits the desk to, besides its stream's account, symbol and size.
Terms = tuple[int, int, int]  # buy ticks, sell ticks, valid until (ms)


def _valid_until(terms: Terms) -> int:
    return terms[2]


class Pricer(Protocol):
    def price(
        self, instrument: Instrument, lots: int, exclude: int | None, now_ms: int
    ) -> TwoWayPrice | NoQuote:
        """The desk's firm price for ``lots`` at ``now_ms``, leaving the orders of account
        ``exclude`` out of the book, or why there is none."""
        ...

    def accounts_in(self, symbol: str) -> Container[int]:
        """The accounts that have orders in ``symbol``'s book: only their streams need a price
        of their own; every other stream of a (symbol, quantity) shares one."""
        ...


def stream_tokens(key: bytes) -> Callable[[], str]:
    """A source of stream tokens: 16 hex digits, distinct for each call, unguessable.

    Each token is the desk's stream counter put through a four-round Feistel network over 64
    bits whose round function is keyed BLAKE2b. A Feistel network is a permutation whatever its
    round function, so tokens never repeat (no bookkeeping of those handed out); with a secret
    key and a pseudo-random round function it is a pseudo-random permutation, so a token reveals
    nothing about the counter, i.e. about how many streams the desk has opened.
    """
    counter = itertools.count()
    rounds = [hashlib.blake2b(bytes([i]), key=key, digest_size=4) for i in range(4)]

    def round_value(i: int, half: int) -> int:
        h = rounds[i].copy()
        h.update(half.to_bytes(4, "big"))
        return int.from_bytes(h.digest(), "big")

    def token() -> str:
        n = next(counter)
        left, right = n >> 32, n & 0xFFFFFFFF
        for i in range(4):
            left, right = right, left ^ round_value(i, right)
        return f"{(left << 32) | right:016x}"

    return token


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
    last_price: tuple[int, int] | None = None  # (buy, sell) ticks of its latest quote
    valid_until: int = 0
    quantity_text: str = field(default="", init=False)
    subscription_bytes: bytes = field(default=b"", init=False)
    json_head: bytes = field(default=b"", init=False)  # a JSON quote up to the subscription
    subscription_field: bytes = field(default=b"", init=False)  # protobuf field 1
    key: tuple[str, int] = field(default=("", 0), init=False)  # its price, shared
    own_key: tuple[str, int, int] = field(default=("", 0, 0), init=False)  # its own price
    id_prefix: str = field(default="", init=False)  # "<token>-", set by QuoteDesk.open
    id_prefix_bytes: bytes = field(default=b"", init=False)
    # The terms of the quotes of seq ``issued_from`` onwards, not yet a lifetime past expiry.
    issued: list[Terms] = field(default_factory=list, init=False)
    issued_from: int = field(default=1, init=False)
    closed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.quantity_text = self.instrument.format_quantity(self.quantity_lots)
        self.subscription_bytes = self.subscription.encode()
        self.json_head = _HEAD + self.subscription_bytes
        self.subscription_field = pbwire.text_field(1, self.subscription)
        self.key = (self.instrument.symbol, self.quantity_lots)
        self.own_key = (self.instrument.symbol, self.quantity_lots, self.account_id)


class QuoteDesk(Generic[C]):
    """Holds every open quote stream and the quotes it sent; prices and emits quotes."""

    def __init__(
        self,
        *,
        ttl_ms: int,
        refresh_ms: int,
        new_stream_token: Callable[[], str],
        pricer: Pricer,
    ) -> None:
        if not 0 < refresh_ms < ttl_ms:
            raise ValueError("refresh_ms must be between 0 and ttl_ms")
        self.ttl_ms = ttl_ms
        self.refresh_ms = refresh_ms
        self._new_stream_token = new_stream_token
        self._pricer = pricer
        # stream token -> stream, open or closed, while it has quotes on record
        self._by_token: dict[str, QuoteStream[C]] = {}
        self._swept_at = 0
        # Per connection, in the order they were opened: a pulse's quotes for one connection are
        # made together, so they can go out in one write.
        self._streams: dict[C, list[QuoteStream[C]]] = {}
        self._stream_count = 0
        self.quotes_made = 0
        self.skipped_slow = 0

    # Prices --------------------------------------------------------------------------------

    def price(
        self, instrument: Instrument, quantity_lots: int, account_id: int, now_ms: int
    ) -> TwoWayPrice | NoQuote:
        """The firm two-way price of ``quantity_lots`` for ``account_id`` (never made from that
        account's own orders), or why there is none."""
        return self._pricer.price(instrument, quantity_lots, account_id, now_ms)

    def lookup(self, quote_id: str, now_ms: int) -> IssuedQuote | None:
        """A quote sent earlier and not long expired (expired ones are kept for one more
        lifetime so that accepting them says "expired" rather than "unknown"). An id is known
        only exactly as it was sent: ``<token>-<seq>``, the seq in decimal without a leading
        zero or sign."""
        token, dash, seq_text = quote_id.rpartition("-")
        stream = self._by_token.get(token) if dash else None
        if (
            stream is None
            or not 0 < len(seq_text) <= MAX_SEQ_DIGITS
            or not (seq_text.isascii() and seq_text.isdigit())
            or seq_text[0] == "0"
        ):
            return None
        index = int(seq_text) - stream.issued_from
        if not 0 <= index < len(stream.issued):
            return None
        buy, sell, valid_until = stream.issued[index]
        if valid_until < now_ms - self.ttl_ms:  # a lifetime past expiry: forgotten
            return None
        return IssuedQuote(
            quote_id, stream.account_id, stream.key[0], stream.quantity_lots, buy, sell, valid_until
        )

    def _sweep(self, now_ms: int) -> None:
        """Let go of the quotes a lifetime past expiry (no longer: at thousands of quotes a
        second every second of retention is memory), and of closed streams with none left."""
        if now_ms - self._swept_at < SWEEP_MS:
            return
        self._swept_at = now_ms
        horizon = now_ms - self.ttl_ms
        for token, stream in list(self._by_token.items()):
            issued = stream.issued
            cut = bisect_left(issued, horizon, key=_valid_until)
            if cut:
                del issued[:cut]
                stream.issued_from += cut
            if stream.closed and not issued:
                del self._by_token[token]

    # Streams -------------------------------------------------------------------------------

    def open(self, stream: QuoteStream[C], price: TwoWayPrice, now_ms: int) -> bytes:
        """Register ``stream`` and return its first quote, at ``price`` (from :meth:`price`)."""
        token = self._new_stream_token()
        stream.id_prefix = token + "-"
        stream.id_prefix_bytes = stream.id_prefix.encode()
        self._by_token[token] = stream
        self._streams.setdefault(stream.conn, []).append(stream)
        self._stream_count += 1
        terms = (price.buy_ticks, price.sell_ticks, now_ms + self.ttl_ms)
        middle = self._middle(stream, price)
        return self._quote(stream, price, middle, terms, self._ends(now_ms), now_ms)

    def close(self, stream: QuoteStream[C]) -> None:
        """Stop the stream; the quotes it sent stay acceptable until they expire."""
        streams = self._streams.get(stream.conn)
        if streams is None or stream not in streams:
            return
        stream.closed = True
        streams.remove(stream)
        self._stream_count -= 1
        if not streams:
            del self._streams[stream.conn]

    @property
    def stream_count(self) -> int:
        return self._stream_count

    def due(self, now_ms: int, writable: Callable[[C], bool]) -> Iterable[tuple[C, bytes]]:
        """Yield ``(conn, frame)`` for every stream owed a new quote at ``now_ms``."""
        for conn, frames in self.due_per_connection(now_ms, writable):
            for frame in frames:
                yield conn, frame

    def due_per_connection(
        self, now_ms: int, writable: Callable[[C], bool]
    ) -> Iterable[tuple[C, list[bytes]]]:
        """Yield ``(conn, frames)``: every quote owed at ``now_ms`` to the streams of ``conn``,
        in the order the streams were opened, for each connection owed at least one."""
        self._sweep(now_ms)
        # Everything that is the same for many streams is priced, formatted and encoded once
        # per pulse: the price per (symbol, quantity), and the frame's bytes around the parts
        # that differ per stream (subscription, quote id, seq). A stream whose account has
        # orders in the book gets a price of its own, made without them.
        # The JSON quote is assembled here rather than in _quote (the same bytes): this loop runs
        # for every quote, and a call per quote is a good part of its cost.
        prices: dict[tuple[str, int] | tuple[str, int, int],
                     tuple[TwoWayPrice, tuple[bytes, bytes], Terms, tuple[int, int]]
                     | None] = {}  # fmt: skip
        owners: dict[str, Container[int]] = {}
        pricer = self._pricer
        ends = self._ends(now_ms)
        valid_until_json, timestamp_json = ends[0], ends[1]
        valid_until = now_ms + self.ttl_ms
        refresh_at = self.refresh_ms
        json_codec = JSON
        for conn, streams in list(self._streams.items()):
            ready = writable(conn)
            frames: list[bytes] = []
            made = 0
            for stream in streams:
                key: tuple[str, int] | tuple[str, int, int] = stream.key
                symbol = key[0]
                accounts = owners.get(symbol)
                if accounts is None:
                    accounts = owners[symbol] = pricer.accounts_in(symbol)
                exclude = None
                if stream.account_id in accounts:
                    key = stream.own_key
                    exclude = stream.account_id
                if key in prices:
                    priced = prices[key]
                else:
                    price = pricer.price(stream.instrument, stream.quantity_lots, exclude, now_ms)
                    priced = prices[key] = (
                        None
                        if isinstance(price, NoQuote)
                        else (
                            price,
                            self._middle(stream, price),
                            (price.buy_ticks, price.sell_ticks, valid_until),
                            (price.buy_ticks, price.sell_ticks),
                        )
                    )
                if priced is None:
                    continue
                price, middle, terms, pair = priced
                if pair == stream.last_price and now_ms < stream.valid_until - refresh_at:
                    continue
                if not ready:
                    self.skipped_slow += 1
                    continue
                if stream.codec is not json_codec:
                    frames.append(self._quote(stream, price, middle, terms, ends, now_ms))
                    continue
                seq = stream.seq = stream.seq + 1
                stream.last_price = pair
                stream.valid_until = valid_until
                stream.issued.append(terms)  # at index seq - issued_from: one per seq, in order
                made += 1
                seq_bytes = b"%d" % seq
                frames.append(
                    b"".join(
                        (
                            stream.json_head,
                            middle[0],
                            stream.id_prefix_bytes,
                            seq_bytes,
                            valid_until_json,
                            seq_bytes,
                            timestamp_json,
                        )
                    )  # fmt: skip
                )
            if frames:
                self.quotes_made += made
                yield conn, frames

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
        terms: Terms,
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
        stream.last_price = terms[0], terms[1]
        valid_until = stream.valid_until = terms[2]
        stream.issued.append(terms)  # at index seq - issued_from: one per seq, in order
        seq_bytes = b"%d" % seq
        if stream.codec is PROTOBUF:
            return pbwire.quote_frame(
                stream.subscription_field, middle[1], stream.id_prefix_bytes, seq_bytes, ends[2],
                seq, ends[3],
            )  # fmt: skip
        if stream.codec is not JSON:  # any other codec: its generic encoding
            inst = stream.instrument
            quote = Quote(
                subscription=stream.subscription,
                symbol=inst.symbol,
                buy_price=inst.format_price(price.buy_ticks),
                sell_price=inst.format_price(price.sell_ticks),
                quantity=stream.quantity_text,
                quote_id=stream.id_prefix + str(seq),
                valid_until=valid_until,
                seq=seq,
                timestamp=now_ms,
            )
            return stream.codec.push(Push(QUOTE_METHOD, quote))
        return b"".join(
            (stream.json_head, middle[0], stream.id_prefix_bytes, seq_bytes, ends[0], seq_bytes,
             ends[1])
        )  # fmt: skip
