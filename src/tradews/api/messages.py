"""Typed request parameters, results and notifications of the API.

Field names on the wire are camelCase (``apiKey``, ``buyPrice``) as the published documents use;
Python attributes are snake_case. Prices and quantities are decimal strings, times are integer
milliseconds since the Unix epoch.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec


class _Params(msgspec.Struct, rename="camel", frozen=True):
    """Base of every params struct: unknown fields are ignored so clients can evolve."""


class NoParams(_Params, frozen=True):
    pass


class LoginParams(_Params, frozen=True):
    api_key: str
    api_secret: str


class QuoteRequestParams(_Params, frozen=True):
    symbol: str
    type: Literal["RFQ"]
    # A decimal string such as "0.5" (a JSON number is accepted and read exactly).
    quantity: Decimal | None = None


class SubscriptionParams(_Params, frozen=True):
    subscription: str


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


class SessionClosing(_Out, frozen=True):
    reason: str
