"""Typed request parameters, results and notifications of the API.

Field names on the wire are camelCase (``apiKey``, ``buyPrice``) as the published documents use;
Python attributes are snake_case. Prices and quantities are decimal strings, times are integer
milliseconds since the Unix epoch.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from tradews.domain.instrument import MAX_DECIMAL_CHARS, InvalidDecimal, read_decimal


class DecimalText(Decimal):
    """A price or quantity in a request: a string in the documented decimal syntax
    (``"65000.10"``: ASCII digits, an optional fraction; see ``domain.instrument.read_decimal``)
    or a JSON number, read exactly from its text. Decoded by :func:`decode_hook`."""

    __slots__ = ()  # immutable like a Decimal: decode_hook hands the same one out again


# Decimal strings already read: prices and quantities repeat (a client's few sizes, the prices
# near the market), and a Decimal is immutable. Only valid text is kept, up to DECIMALS_KEPT
# strings at a time, so the cache stays small whatever clients send.
_decimals: dict[str, DecimalText] = {}
DECIMALS_KEPT = 4096


def decode_hook(type_: type, value: Any) -> Any:
    """msgspec's hook for the API's own types. Decoders must also pass ``float_hook=Decimal``
    so that a JSON number arrives here as an exact Decimal of its text, never a binary float."""
    if type_ is DecimalText:
        if isinstance(value, str):
            known = _decimals.get(value)
            if known is not None:
                return known
            try:
                text = DecimalText(read_decimal(value))
            except InvalidDecimal as exc:
                raise ValueError(str(exc).replace("value ", "", 1)) from None
            if len(_decimals) >= DECIMALS_KEPT:
                _decimals.clear()
            _decimals[value] = text
            return text
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise TypeError('expected a decimal string like "65000.10"')
        number = Decimal(value)
        if len(number.as_tuple().digits) > MAX_DECIMAL_CHARS:
            raise ValueError(f"more than {MAX_DECIMAL_CHARS} digits")
        return DecimalText(number)
    raise NotImplementedError(f"no decoder for {type_!r}")


def schema_hook(type_: type) -> dict[str, Any]:
    """JSON Schema of the API's own types (for ``rpc.discover``)."""
    if type_ is DecimalText:
        return {
            "type": "string",
            "pattern": r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$",
            "maxLength": MAX_DECIMAL_CHARS,
        }
    raise NotImplementedError(f"no schema for {type_!r}")


# Strings a client names things with. Bounded so that no error reply can echo much of them.
Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
SubscriptionId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
QuoteId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Channel = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class _Params(msgspec.Struct, rename="camel", frozen=True):
    """Base of every params struct: unknown fields are ignored so clients can evolve."""


class NoParams(_Params, frozen=True):
    pass


class LoginParams(_Params, frozen=True):
    """Plain login: ``apiKey`` and ``apiSecret``. Signed login: ``apiKey``, ``timestamp`` (ms
    since the epoch), ``nonce`` and ``signature`` (see ``tradews.api.signing``)."""

    api_key: Annotated[str, msgspec.Meta(max_length=64)]
    api_secret: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    timestamp: int | None = None
    nonce: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    signature: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class QuoteRequestParams(_Params, frozen=True):
    symbol: Symbol
    type: Literal["RFQ"]
    # A decimal string such as "0.5" (a JSON number is accepted and read exactly).
    quantity: DecimalText | None = None


class SubscriptionParams(_Params, frozen=True):
    subscription: SubscriptionId


# Results ------------------------------------------------------------------------------------


class _Out(msgspec.Struct, rename="camel", frozen=True, omit_defaults=True):
    pass


class QuoteSubscription(_Out, frozen=True):
    subscription: str
    symbol: str
    quantity: str
    valid_for_ms: int


class MarketDataSubscription(_Out, frozen=True):
    subscription: str
    symbols: list[str]
    interval_ms: int


class TimeResult(_Out, frozen=True):
    time: int


class RateBudget(_Out, frozen=True):
    """What is left of the caller's tightest rate-limit bucket: ``remaining`` of ``limit``
    units, full again in ``reset_ms`` if nothing more is spent."""

    remaining: int
    limit: int
    reset_ms: int


# Notifications (server pushes) -------------------------------------------------------------


class Quote(_Out, frozen=True):
    """A firm quote: the desk buys ``quantity`` at ``buy_price`` and sells it at ``sell_price``
    until ``valid_until``. ``seq`` counts the quotes of one subscription from 1 without gaps."""

    subscription: str
    symbol: str
    buy_price: str
    sell_price: str
    quantity: str
    quote_id: str
    valid_until: int
    seq: int
    timestamp: int


class InstrumentMarketData(_Out, frozen=True):
    symbol: str
    last: str | None
    bid: str | None
    ask: str | None
    open24h: str | None
    high24h: str | None
    low24h: str | None
    volume24h: str
    change24h: str | None
    change24h_pct: str | None
    timestamp: int


class MarketData(_Out, frozen=True):
    seq: int
    timestamp: int
    instruments: list[InstrumentMarketData]


# Trading ------------------------------------------------------------------------------------

# Letters, digits and - _ . : (UUIDs fit); no spaces, controls or anything that needs escaping.
ClientOrderId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
# Ids are positive and fit the signed 64-bit integers the journal and database store.
Id64 = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
StreamSeq = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class OrderPlaceParams(_Params, frozen=True):
    symbol: Symbol
    side: Literal["buy", "sell"]
    type: Literal["limit", "market"]
    quantity: DecimalText
    price: DecimalText | None = None
    time_in_force: Literal["GTC", "IOC", "FOK"] = "GTC"
    post_only: bool = False
    client_order_id: ClientOrderId | None = None


class OrderRefParams(_Params, frozen=True):
    order_id: Id64 | None = None
    client_order_id: ClientOrderId | None = None


class OrderAmendParams(_Params, frozen=True):
    order_id: Id64 | None = None
    client_order_id: ClientOrderId | None = None
    price: DecimalText | None = None
    quantity: DecimalText | None = None


class SymbolFilterParams(_Params, frozen=True):
    symbol: Symbol | None = None


class TradesParams(_Params, frozen=True):
    symbol: Symbol | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    before: Id64 | None = None  # a trade id: return older trades (pagination cursor)


class ChannelParams(_Params, frozen=True):
    channel: Channel
    depth: int | None = None  # book channels: 10, 25, 100 (the default) or 500 levels a side


class SubscribeParams(ChannelParams, frozen=True):
    # orders and balances: replay every message with a greater streamSeq, then go on live
    since: StreamSeq | None = None


class QuoteAcceptParams(_Params, frozen=True):
    quote_id: QuoteId
    side: Literal["buy", "sell"]  # the client's side: "buy" pays sellPrice, "sell" gets buyPrice


# The dead-man's switch: a timeout of 0 disarms it; otherwise it must lie within these bounds.
CANCEL_ALL_AFTER_MIN_MS = 1_000
CANCEL_ALL_AFTER_MAX_MS = 600_000


class CancelOnDisconnectParams(_Params, frozen=True):
    enabled: bool


class CancelAllAfterParams(_Params, frozen=True):
    # 0 disarms; else CANCEL_ALL_AFTER_MIN_MS..CANCEL_ALL_AFTER_MAX_MS (the session says so).
    timeout_ms: Annotated[int, msgspec.Meta(ge=0, le=CANCEL_ALL_AFTER_MAX_MS)]


class CancelOnDisconnectResult(_Out, frozen=True):
    enabled: bool


class CancelAllAfterResult(_Out, frozen=True):
    deadline: int | None  # ms since the epoch; None when disarmed


class OrderState(_Out, frozen=True):
    order_id: int
    client_order_id: str | None
    symbol: str
    side: str
    type: str
    price: str | None
    quantity: str
    filled_quantity: str
    remaining_quantity: str
    time_in_force: str
    post_only: bool
    status: str
    reason: str | None
    created_at: int
    updated_at: int
    seq: int
    stream_seq: int | None = None  # on the ``orders`` stream only (not on replies)


class Fill(_Out, frozen=True):
    """A trade confirmation for one side of a trade."""

    trade_id: int
    order_id: int | None  # None for an RFQ execution
    symbol: str
    side: str
    price: str
    quantity: str
    fee: str
    fee_asset: str
    liquidity: str  # "maker", "taker" or "rfq"
    quote_id: str | None
    timestamp: int
    seq: int
    stream_seq: int | None = None  # on the ``orders`` stream only (not on replies)


class Balance(_Out, frozen=True):
    asset: str
    available: str
    locked: str
    stream_seq: int | None = None  # on the ``balances`` stream's updates (not on snapshots)


class PublicTrade(_Out, frozen=True):
    trade_id: int
    symbol: str
    price: str
    quantity: str
    taker_side: str
    timestamp: int
    seq: int


class BookUpdate(_Out, frozen=True):
    """A ``book.SYMBOL`` message: ``type`` is "snapshot" or "delta". A delta lists changed
    levels as [price, quantity] with quantity "0" for a level that is gone."""

    channel: str
    type: str
    symbol: str
    seq: int
    prev_seq: int | None
    bids: list[list[str]]
    asks: list[list[str]]
    checksum: int


class Ticker(_Out, frozen=True):
    channel: str
    symbol: str
    last: str | None
    bid: str | None
    bid_size: str | None
    ask: str | None
    ask_size: str | None
    open24h: str | None
    high24h: str | None
    low24h: str | None
    volume24h: str
    change24h: str | None
    change24h_pct: str | None
    timestamp: int


class Subscribed(_Out, frozen=True):
    channel: str
    # orders and balances: the stream's last streamSeq as of the reply; a replay (``since``)
    # runs up to at least there, and live messages follow it
    stream_seq: int | None = None


class ConnectionWarning(_Out, frozen=True):
    """A ``warning`` notification: the server is about to act against this connection.
    ``code`` is stable (``slow_consumer``); ``message`` is for people."""

    code: str
    message: str
    buffered_bytes: int
    limit_bytes: int


class InstrumentInfo(_Out, frozen=True):
    symbol: str
    base: str
    quote: str
    tick: str
    lot: str
    min_size: str
    max_size: str | None
    quote_size: str
